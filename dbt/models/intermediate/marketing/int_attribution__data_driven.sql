-- The data-driven attribution rows (markov, shapley) of gold.fct_attribution: every converting
-- order's current touchpoints (the linear rows of int_attribution__credits) share the order in
-- proportion to the weight of their channel group under the model (Markov removal effect, Shapley
-- value), the channel weights the ML stage writes to gold.attribution_channel_weights; an order
-- whose touchpoints all weigh 0 (channels the model does not know) is split equally, so every
-- order's credits sum to 1 (the SQL of ml.attribution.order_credits). Customer, session and
-- revenue come from the current data, so identity merges, refunds and late GA4 events are never
-- stale. Built after the ML stage (it reads the ml source), with the rest of source:ml+.
{{ config(materialized='table') }}

with rule_based_models as (
    {{ rule_based_attribution_models() }}
),

current_touches as (
    -- one row per touchpoint (linear credits are 1 / touch_count, never 0)
    select
        order_id, touchpoint_index, touch_count, customer_id, session_id, channel_group, source, medium, campaign,
        campaign_key, touched_at, attributed_revenue / credit as order_revenue
    from {{ ref('int_attribution__credits') }}
    where model = 'linear'
),

channel_weights as (
    select
        cast(model as {{ dbt.type_string() }}) as model,
        cast(channel_group as {{ dbt.type_string() }}) as channel_group,
        case when weight > 0 then cast(weight as {{ type_double() }}) else 0 end as weight
    from {{ source('ml', 'attribution_channel_weights') }}
    where model not in (select model from rule_based_models)
),

data_driven_models as (
    select distinct model from channel_weights
),

weighted_touches as (
    select
        current_touches.order_id,
        data_driven_models.model,
        current_touches.touchpoint_index,
        current_touches.touch_count,
        current_touches.customer_id,
        current_touches.session_id,
        current_touches.channel_group,
        current_touches.source,
        current_touches.medium,
        current_touches.campaign,
        current_touches.campaign_key,
        current_touches.touched_at,
        current_touches.order_revenue,
        coalesce(channel_weights.weight, 0) as weight
    from current_touches
    cross join data_driven_models
    left join channel_weights
        on channel_weights.model = data_driven_models.model
        and channel_weights.channel_group = coalesce(current_touches.channel_group, 'Unassigned')
),

order_weights as (
    select
        weighted_touches.*,
        sum(weight) over (partition by order_id, model) as order_weight
    from weighted_touches
),

credited as (
    select
        order_weights.*,
        case when order_weight > 0 then weight / order_weight else 1.0 / touch_count end as credit
    from order_weights
)

select
    {{ attribution_id() }} as attribution_id,
    order_id,
    customer_id,
    model,
    touchpoint_index,
    session_id,
    channel_group,
    source,
    medium,
    campaign,
    campaign_key,
    touched_at,
    cast(credit as {{ type_double() }}) as credit,
    cast(credit * order_revenue as {{ type_double() }}) as attributed_revenue
from credited
