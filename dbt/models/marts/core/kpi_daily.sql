-- One row per day: revenue, orders, average order value, new vs returning and active
-- customers, sessions and conversion, in the reporting currency (by order date, UTC).
with orders as (
    select * from {{ ref('int_orders') }}
),

sessions as (
    select session_date, is_converted from {{ ref('int_ga4__sessions') }}
),

bounds as (
    select min(d) as first_day, max(d) as last_day
    from (
        select cast(ordered_at as date) as d from orders
        union all
        select session_date from sessions
    ) as days
),

spine as (
    {{ day_spine('(select first_day from bounds)', '(select last_day from bounds)') }}
),

paid as (
    select
        cast(ordered_at as date) as order_date,
        customer_id,
        is_first_order,
        gross_revenue,
        refunded_revenue,
        net_revenue
    from orders
    where is_paid
),

revenue_lines as (
    -- paid orders and imported returns (negative) move revenue
    select cast(ordered_at as date) as order_date, gross_revenue, refunded_revenue, net_revenue
    from orders
    where is_paid or is_return
),

daily_revenue as (
    select
        order_date,
        sum(gross_revenue) as gross_revenue,
        sum(refunded_revenue) as refunded_revenue,
        sum(net_revenue) as net_revenue
    from revenue_lines
    group by order_date
),

daily_orders as (
    select
        order_date,
        count(*) as orders,
        sum(net_revenue) as paid_order_net_revenue,
        count(distinct customer_id) as active_customers,
        count(distinct case when is_first_order then customer_id end) as new_customers,
        count(distinct case when not is_first_order then customer_id end) as returning_customers,
        sum(case when is_first_order then net_revenue else 0 end) as new_customer_revenue
    from paid
    group by order_date
),

daily_failed as (
    select cast(ordered_at as date) as order_date, count(*) as failed_orders
    from orders
    where not is_paid
    group by cast(ordered_at as date)
),

daily_sessions as (
    select
        session_date,
        count(*) as sessions,
        sum(case when is_converted then 1 else 0 end) as converted_sessions
    from sessions
    group by session_date
),

-- a customer is active on the 30 days from each paid order's day (the day and the 29 after).
-- Per customer and order day: +1 from the first day that order adds (its day, or the day after
-- the previous order's 30 days when those still run) and -1 from the day its own 30 days end;
-- the running sum over the days counts the active customers without joining every day with
-- every order of the 30 days before it.
customer_order_days as (
    select
        customer_id,
        order_date,
        lag(order_date) over (partition by customer_id order by order_date) as previous_order_date
    -- (orders without a resolved customer count for no one, as count(distinct customer_id) did)
    from (select distinct customer_id, order_date from paid where customer_id is not null) as distinct_days
),

active_changes as (
    select
        case
            when previous_order_date is null then order_date
            else greatest(order_date, {{ dbt.dateadd('day', 30, 'previous_order_date') }})
        end as change_day,
        1 as delta
    from customer_order_days
    union all
    select {{ dbt.dateadd('day', 30, 'order_date') }}, -1
    from customer_order_days
),

daily_active_changes as (
    select cast(change_day as date) as change_day, sum(delta) as delta
    from active_changes
    group by cast(change_day as date)
),

active_30d as (
    select
        spine.date_day,
        sum(coalesce(daily_active_changes.delta, 0)) over (
            order by spine.date_day rows between unbounded preceding and current row
        ) as active_customers_30d
    from spine
    left join daily_active_changes on daily_active_changes.change_day = spine.date_day
)

select
    spine.date_day,
    coalesce(daily_orders.orders, 0) as orders,
    coalesce(daily_failed.failed_orders, 0) as failed_orders,
    coalesce(daily_revenue.gross_revenue, 0) as gross_revenue,
    coalesce(daily_revenue.refunded_revenue, 0) as refunded_revenue,
    coalesce(daily_revenue.net_revenue, 0) as net_revenue,
    daily_orders.paid_order_net_revenue / nullif(daily_orders.orders, 0) as average_order_value,
    coalesce(daily_orders.new_customers, 0) as new_customers,
    coalesce(daily_orders.returning_customers, 0) as returning_customers,
    coalesce(daily_orders.active_customers, 0) as active_customers,
    coalesce(active_30d.active_customers_30d, 0) as active_customers_30d,
    coalesce(daily_orders.new_customer_revenue, 0) as new_customer_revenue,
    coalesce(daily_sessions.sessions, 0) as sessions,
    coalesce(daily_sessions.converted_sessions, 0) as converted_sessions,
    cast(daily_sessions.converted_sessions as {{ type_double() }}) / nullif(daily_sessions.sessions, 0)
        as session_conversion_rate,
    '{{ var("reporting_currency") }}' as reporting_currency
from spine
left join daily_orders on spine.date_day = daily_orders.order_date
left join daily_revenue on spine.date_day = daily_revenue.order_date
left join daily_failed on spine.date_day = daily_failed.order_date
left join daily_sessions on spine.date_day = daily_sessions.session_date
left join active_30d on spine.date_day = active_30d.date_day
