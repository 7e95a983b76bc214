-- Acquisition cohorts (month of the first paid order) x months since then: active customers
-- (at least one paid order in the month), retention rate (active / cohort size) and net
-- revenue. Every cohort has a row for every month up to the last month in the data.
with orders as (
    select
        customer_id,
        {{ month_start('ordered_at') }} as order_month,
        net_revenue,
        is_paid
    from {{ ref('int_orders') }}
    where (is_paid or is_return) and customer_id is not null
),

first_orders as (
    select customer_id, min(order_month) as cohort_month
    from orders
    where is_paid
    group by customer_id
),

cohorts as (
    select cohort_month, count(*) as cohort_size
    from first_orders
    group by cohort_month
),

months as (
    select distinct order_month as activity_month from orders where is_paid
),

grid as (
    select
        cohorts.cohort_month,
        cohorts.cohort_size,
        months.activity_month,
        {{ dbt.datediff('cohorts.cohort_month', 'months.activity_month', 'month') }} as months_since_first_order
    from cohorts
    inner join months on months.activity_month >= cohorts.cohort_month
),

activity as (
    select
        first_orders.cohort_month,
        orders.order_month as activity_month,
        count(distinct case when orders.is_paid then orders.customer_id end) as active_customers,
        sum(orders.net_revenue) as net_revenue,
        sum(case when orders.is_paid then 1 else 0 end) as orders
    from orders
    inner join first_orders on orders.customer_id = first_orders.customer_id
    group by first_orders.cohort_month, orders.order_month
)

select
    {{ dbt.hash(dbt.concat(["cast(grid.cohort_month as " ~ dbt.type_string() ~ ")", "'|'",
                            "cast(grid.months_since_first_order as " ~ dbt.type_string() ~ ")"])) }} as cohort_month_id,
    grid.cohort_month,
    grid.activity_month,
    grid.months_since_first_order,
    grid.cohort_size,
    coalesce(activity.active_customers, 0) as active_customers,
    cast(coalesce(activity.active_customers, 0) as {{ type_double() }}) / grid.cohort_size as retention_rate,
    coalesce(activity.orders, 0) as orders,
    coalesce(activity.net_revenue, 0) as net_revenue,
    '{{ var("reporting_currency") }}' as reporting_currency
from grid
left join activity
    on grid.cohort_month = activity.cohort_month and grid.activity_month = activity.activity_month
