-- Under every model, channel_performance_daily's attributed conversions add up to the number of
-- converting orders, and attributed revenue to their net revenue.
with performance as (
    select model, sum(attributed_conversions) as conversions, sum(attributed_revenue) as revenue
    from {{ ref('channel_performance_daily') }}
    group by model
),

paths as (
    select count(*) as conversions, sum(net_revenue) as revenue from {{ ref('fct_conversion_paths') }}
)

select performance.*, paths.conversions as path_conversions, paths.revenue as path_revenue
from performance
cross join paths
where abs(performance.conversions - paths.conversions) > 0.001
    or abs(performance.revenue - paths.revenue) > 0.01
