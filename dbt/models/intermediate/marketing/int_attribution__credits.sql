-- Rule-based attribution: the credit of every touchpoint of every converting order under each
-- model. Credits of an order sum to 1 under every model.
--   first_touch      all credit to the first touchpoint
--   last_touch       all credit to the last touchpoint (the converting session)
--   last_non_direct  all credit to the last touchpoint whose channel is not Direct (the last
--                    touchpoint when every touch is Direct)
--   linear           1 / touch_count each
--   time_decay       weight 2^(-days before conversion / var attribution_half_life_days),
--                    normalised per order
--   position_based   40% first, 40% last, 20% shared by the middle ones; one touch 100%,
--                    two touches 50/50
--
-- Incremental by order: an order's rows depend only on its own touchpoints (every column of
-- int_attribution__touchpoints) and the half-life, so each row keeps a fingerprint of them
-- (inputs_fingerprint: the touch count, the sum of 64-bit hashes of the touchpoint rows and the
-- half-life). A run recomputes the orders whose fingerprint changed or that are new; orders that
-- no longer have touchpoints are deleted (post-hook). Equal to a full refresh (test
-- test_daily_runs_equal_a_full_refresh). A change of this file's rules rebuilds it in full at
-- the next run, as for every incremental model (retailpulse/dbt_logic.py).
{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_rows_missing_from(ref('int_attribution__touchpoints'), 'order_id') }}"]
    )
}}

{% set touchpoint_columns = ['order_id', 'customer_id', 'ordered_at', 'net_revenue', 'is_first_order',
    'converting_session_id', 'session_id', 'touchpoint_index', 'touch_count', 'touched_at',
    'days_before_conversion', 'channel_group', 'source', 'medium', 'campaign', 'campaign_key'] %}

with all_touchpoints as (
    select * from {{ ref('int_attribution__touchpoints') }}
),

order_inputs as (
    select
        order_id,
        cast(count(*) as {{ dbt.type_string() }}) || ':'
            || cast(sum({{ row_hash64(touchpoint_columns) }}) as {{ dbt.type_string() }})
            || ':' || '{{ var("attribution_half_life_days") }}' as inputs_fingerprint
    from all_touchpoints
    group by order_id
),

{% if is_incremental() and relation_has_column(this, 'inputs_fingerprint') %}
previous as (
    -- one row per order: its first touchpoint under first_touch
    select order_id, inputs_fingerprint from {{ this }}
    where model = 'first_touch' and touchpoint_index = 1
),

changed_orders as (
    select order_inputs.order_id, order_inputs.inputs_fingerprint
    from order_inputs
    left join previous on previous.order_id = order_inputs.order_id
    where previous.order_id is null
        or previous.inputs_fingerprint is distinct from order_inputs.inputs_fingerprint
),

touchpoints as (
    select all_touchpoints.*, changed_orders.inputs_fingerprint
    from all_touchpoints
    inner join changed_orders on changed_orders.order_id = all_touchpoints.order_id
),
{% else %}
touchpoints as (
    select all_touchpoints.*, order_inputs.inputs_fingerprint
    from all_touchpoints
    inner join order_inputs on order_inputs.order_id = all_touchpoints.order_id
),
{% endif %}

flags as (
    select
        touchpoints.*,
        max(case when channel_group <> 'Direct' then touchpoint_index end) over (partition by order_id)
            as last_non_direct_index,
        power(
            cast(2.0 as {{ type_double() }}),
            -1.0 * days_before_conversion / {{ var('attribution_half_life_days') }}
        ) as decay_weight
    from touchpoints
),

weighted as (
    select
        flags.*,
        sum(decay_weight) over (partition by order_id) as decay_weight_total
    from flags
),

models as (
    {{ rule_based_attribution_models() }}
),

credits as (
    select
        weighted.*,
        models.model,
        case models.model
            when 'first_touch' then case when touchpoint_index = 1 then 1.0 else 0.0 end
            when 'last_touch' then case when touchpoint_index = touch_count then 1.0 else 0.0 end
            when 'last_non_direct' then
                case when touchpoint_index = coalesce(last_non_direct_index, touch_count) then 1.0 else 0.0 end
            when 'linear' then 1.0 / touch_count
            when 'time_decay' then decay_weight / decay_weight_total
            when 'position_based' then
                case
                    when touch_count = 1 then 1.0
                    when touch_count = 2 then 0.5
                    when touchpoint_index = 1 or touchpoint_index = touch_count then 0.4
                    else 0.2 / (touch_count - 2)
                end
        end as credit
    from weighted
    cross join models
)

select
    {{ attribution_id() }} as attribution_id,
    order_id,
    customer_id,
    model,
    touchpoint_index,
    touch_count,
    session_id,
    channel_group,
    source,
    medium,
    campaign,
    campaign_key,
    touched_at,
    ordered_at,
    is_first_order,
    cast(credit as {{ type_double() }}) as credit,
    cast(credit * net_revenue as {{ type_double() }}) as attributed_revenue,
    inputs_fingerprint,
    -- the run that (re)computed the order
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }}) as processed_at
from credits
