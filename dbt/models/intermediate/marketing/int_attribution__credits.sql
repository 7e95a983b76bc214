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
with touchpoints as (
    select * from {{ ref('int_attribution__touchpoints') }}
),

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
    select 'first_touch' as model union all
    select 'last_touch' union all
    select 'last_non_direct' union all
    select 'linear' union all
    select 'time_decay' union all
    select 'position_based'
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
    cast(credit * net_revenue as {{ type_double() }}) as attributed_revenue
from credits
