-- One row per order: customer, time, gross / refunded / net revenue in the reporting
-- currency, original currency, status and first-order flag.
with payments as (
    select * from {{ ref('int_orders__payments') }}
),

fx as (
    select * from {{ ref('int_fx_rates') }}
),

orders as (
    select
        payments.order_id,
        payments.stripe_customer_id as customer_id,
        payments.stripe_customer_id,
        payments.ordered_at,
        payments.paid_at,
        {{ utc_date('payments.ordered_at') }} as order_date,
        payments.currency as original_currency,
        payments.charge_attempts,
        payments.charge_id,
        cast(payments.gross_minor as {{ dbt.type_numeric() }}) / 100.0 as gross_amount_original,
        cast(payments.gross_minor as {{ dbt.type_numeric() }}) / 100.0 * fx.rate_to_reporting as gross_revenue,
        cast(payments.refunded_minor as {{ dbt.type_numeric() }}) / 100.0 * fx.rate_to_reporting as refunded_revenue,
        cast(payments.gross_minor - payments.refunded_minor as {{ dbt.type_numeric() }}) / 100.0
            * fx.rate_to_reporting as net_revenue,
        payments.last_refunded_at,
        case
            when payments.succeeded_charges = 0 then 'failed'
            when payments.refunded_minor >= payments.gross_minor then 'refunded'
            when payments.refunded_minor > 0 then 'partially_refunded'
            else 'paid'
        end as status,
        payments.succeeded_charges > 0 as is_paid
    from payments
    left join fx on payments.currency = fx.currency
)

select
    orders.*,
    case
        when is_paid
            and row_number() over (
                partition by customer_id, is_paid order by ordered_at, order_id
            ) = 1
        then true else false
    end as is_first_order,
    '{{ var("reporting_currency") }}' as reporting_currency
from orders
