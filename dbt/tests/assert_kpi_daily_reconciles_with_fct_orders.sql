-- kpi_daily's revenue and orders add up to fct_orders' paid orders.
with kpi as (
    select sum(net_revenue) as net_revenue, sum(orders) as orders from {{ ref('kpi_daily') }}
),

orders as (
    select
        sum(case when is_paid or is_return then net_revenue else 0 end) as net_revenue,
        sum(case when is_paid then 1 else 0 end) as orders
    from {{ ref('fct_orders') }}
)

select kpi.*, orders.net_revenue as orders_net_revenue, orders.orders as orders_orders
from kpi
cross join orders
where abs(coalesce(kpi.net_revenue, 0) - coalesce(orders.net_revenue, 0)) > 0.01
    or coalesce(kpi.orders, 0) <> coalesce(orders.orders, 0)
