-- The data-driven attribution rows (markov, shapley) of gold.fct_attribution: the credits the ML
-- stage writes to gold.fct_attribution_ml, joined to the current touchpoints of each order (the
-- linear rows of int_attribution__credits). Only orders whose touch count is unchanged keep
-- their data-driven credits, with customer, session and revenue taken from the current data, so
-- identity merges, refunds and late GA4 events between runs never leave stale rows behind.
-- Built after the ML stage (it reads the ml source), with the rest of source:ml+.
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

ml_rows as (
    select
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        cast(model as {{ dbt.type_string() }}) as model,
        cast(touchpoint_index as {{ dbt.type_bigint() }}) as touchpoint_index,
        cast(credit as {{ type_double() }}) as credit,
        count(*) over (partition by order_id, model) as ml_touch_count
    from {{ source('ml', 'fct_attribution_ml') }}
    where model not in (select model from rule_based_models)
)

select
    {{ dbt.hash(dbt.concat(['ml_rows.order_id', "'|'", 'ml_rows.model', "'|'",
                            'cast(ml_rows.touchpoint_index as ' ~ dbt.type_string() ~ ')'])) }} as attribution_id,
    ml_rows.order_id,
    current_touches.customer_id,
    ml_rows.model,
    ml_rows.touchpoint_index,
    current_touches.session_id,
    current_touches.channel_group,
    current_touches.source,
    current_touches.medium,
    current_touches.campaign,
    current_touches.campaign_key,
    current_touches.touched_at,
    ml_rows.credit,
    cast(ml_rows.credit * current_touches.order_revenue as {{ type_double() }}) as attributed_revenue
from ml_rows
inner join current_touches
    on ml_rows.order_id = current_touches.order_id
    and ml_rows.touchpoint_index = current_touches.touchpoint_index
where ml_rows.ml_touch_count = current_touches.touch_count
