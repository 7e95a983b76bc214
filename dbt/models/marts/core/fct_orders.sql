-- One row per order: resolved customer, time, gross / refunded / net revenue in the reporting
-- currency, original currency, status and first-order flag (by resolved customer).
with orders as (
    select * from {{ ref('int_orders') }}
)

select
    order_id,
    customer_id,
    order_source,
    stripe_customer_id,
    ordered_at,
    paid_at,
    cast(ordered_at as date) as order_date,
    currency as original_currency,
    charge_attempts,
    charge_id,
    gross_amount_original,
    gross_revenue,
    refunded_revenue,
    net_revenue,
    last_refunded_at,
    status,
    is_paid,
    is_return,
    is_first_order,
    customer_order_number,
    '{{ var("reporting_currency") }}' as reporting_currency
from orders
