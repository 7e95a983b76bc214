-- Order x touchpoint credit under each attribution model: the rule-based models computed here
-- (first_touch, last_touch, last_non_direct, linear, time_decay, position_based) plus the
-- data-driven ones (markov, shapley) that the ML stage writes to gold.fct_attribution_ml; the
-- daily run builds this model (and channel_performance_daily) after ML, so they appear the same run.
with rule_based as (
    select
        order_id, customer_id, model, touchpoint_index, session_id, channel_group, source, medium, campaign,
        campaign_key, touched_at, credit, attributed_revenue
    from {{ ref('int_attribution__credits') }}
),

-- The ML rows are joined to the current touchpoints of each order (the linear model's rows):
-- only orders whose touch count is unchanged keep their data-driven credits, with customer,
-- session and revenue taken from the current data, so identity merges, refunds and late GA4
-- events between runs never leave stale rows behind.
current_touches as (
    select
        order_id, touchpoint_index, customer_id, session_id, channel_group, source, medium, campaign, campaign_key,
        touched_at, attributed_revenue / credit as order_revenue,
        count(*) over (partition by order_id) as touch_count
    from rule_based
    where model = 'linear' and credit > 0
),

ml_rows as (
    select
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        cast(model as {{ dbt.type_string() }}) as model,
        cast(touchpoint_index as {{ dbt.type_bigint() }}) as touchpoint_index,
        cast(credit as {{ type_double() }}) as credit,
        count(*) over (partition by order_id, model) as ml_touch_count
    from {{ source('ml', 'fct_attribution_ml') }}
    where model not in (select distinct model from rule_based)
),

data_driven as (
    select
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
        ml_rows.credit * current_touches.order_revenue as attributed_revenue
    from ml_rows
    inner join current_touches
        on ml_rows.order_id = current_touches.order_id
        and ml_rows.touchpoint_index = current_touches.touchpoint_index
    where ml_rows.ml_touch_count = current_touches.touch_count
),

unioned as (
    select * from rule_based
    union all
    select * from data_driven
)

select
    {{ dbt.hash(dbt.concat(['order_id', "'|'", 'model', "'|'", 'cast(touchpoint_index as ' ~ dbt.type_string() ~ ')'])) }}
        as attribution_id,
    unioned.*,
    model in ('markov', 'shapley') as is_data_driven
from unioned
