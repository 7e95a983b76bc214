-- One row per converting order (paid and seen by GA4): its ordered touchpoints within
-- var attribution_lookback_days, as a channel path string and a touch count, and the days
-- from the first touch to the order.
with touchpoints as (
    select * from {{ ref('int_attribution__touchpoints') }}
)

select
    order_id,
    max(customer_id) as customer_id,
    max(converting_session_id) as converting_session_id,
    max(ordered_at) as ordered_at,
    cast(max(ordered_at) as date) as order_date,
    max(touch_count) as touch_count,
    {{ dbt.listagg('channel_group', "' > '", 'order by touchpoint_index') }} as channel_path,
    {{ dbt.listagg(dbt.concat(["coalesce(source, '(direct)')", "' / '", "coalesce(medium, '(none)')"]), "' > '",
                   'order by touchpoint_index') }} as source_medium_path,
    max(case when touchpoint_index = 1 then channel_group end) as first_touch_channel_group,
    max(case when touchpoint_index = touch_count then channel_group end) as last_touch_channel_group,
    min(touched_at) as first_touch_at,
    max(touched_at) as last_touch_at,
    {{ days_between('min(touched_at)', 'max(ordered_at)') }} as days_to_convert,
    count(distinct channel_group) as distinct_channels,
    max(net_revenue) as net_revenue,
    max(case when is_first_order then 1 else 0 end) = 1 as is_first_order,
    {{ var('attribution_lookback_days') }} as lookback_days
from touchpoints
group by order_id
