-- Under every model, channel_performance_daily's attributed conversions add up to the number of
-- converting orders that model credits, and attributed revenue to their net revenue. The SQL
-- models credit every converting order; the ML models (markov, shapley) are written by the
-- ml_score task after dbt, so between runs they cover the orders of the previous run only.
with performance as (
    select model, sum(attributed_conversions) as conversions, sum(attributed_revenue) as revenue
    from {{ ref('channel_performance_daily') }}
    group by model
),

credited_orders as (
    select distinct model, order_id from {{ ref('fct_attribution') }}
),

paths as (
    select
        credited_orders.model,
        count(*) as conversions,
        sum(fct_conversion_paths.net_revenue) as revenue
    from credited_orders
    inner join {{ ref('fct_conversion_paths') }} as fct_conversion_paths
        on credited_orders.order_id = fct_conversion_paths.order_id
    group by credited_orders.model
),

all_paths as (
    select count(*) as conversions from {{ ref('fct_conversion_paths') }}
)

select performance.*, paths.conversions as path_conversions, paths.revenue as path_revenue
from performance
left join paths on performance.model = paths.model
cross join all_paths
where abs(performance.conversions - coalesce(paths.conversions, 0)) > 0.001
    or abs(performance.revenue - coalesce(paths.revenue, 0)) > 0.01
    or (performance.model not in ('markov', 'shapley') and coalesce(paths.conversions, 0) <> all_paths.conversions)
