-- Each converting order gets all six rule-based models, and only converting orders get credit.
with per_order as (
    select order_id, count(distinct model) as models
    from {{ ref('fct_attribution') }}
    where not is_data_driven
    group by order_id
)

select paths.order_id, per_order.models
from {{ ref('fct_conversion_paths') }} as paths
full outer join per_order on paths.order_id = per_order.order_id
where paths.order_id is null or per_order.order_id is null or per_order.models <> 6
