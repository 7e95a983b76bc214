-- Order x touchpoint credit under each attribution model: the rule-based models computed here
-- (first_touch, last_touch, last_non_direct, linear, time_decay, position_based) plus the
-- data-driven ones (markov, shapley) that the ML stage writes to gold.fct_attribution_ml after
-- dbt; they appear here from the next dbt run on (channel_performance_daily likewise).
with rule_based as (
    select
        order_id, customer_id, model, touchpoint_index, session_id, channel_group, source, medium, campaign,
        touched_at, credit, attributed_revenue
    from {{ ref('int_attribution__credits') }}
),

data_driven as (
    select
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        cast(model as {{ dbt.type_string() }}) as model,
        cast(touchpoint_index as {{ dbt.type_bigint() }}) as touchpoint_index,
        cast(session_id as {{ dbt.type_string() }}) as session_id,
        cast(channel_group as {{ dbt.type_string() }}) as channel_group,
        cast(source as {{ dbt.type_string() }}) as source,
        cast(medium as {{ dbt.type_string() }}) as medium,
        cast(campaign as {{ dbt.type_string() }}) as campaign,
        cast(touched_at as timestamp) as touched_at,
        cast(credit as {{ type_double() }}) as credit,
        cast(attributed_revenue as {{ type_double() }}) as attributed_revenue
    from {{ source('ml', 'fct_attribution_ml') }}
    where model not in (select distinct model from rule_based)
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
