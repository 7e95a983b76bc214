-- Every order in one shape: Stripe orders (by metadata.order_id) and imported transactions,
-- amounts in the original currency (major units) and the reporting currency, with the
-- resolved customer and the first-order flag by resolved customer.
{{ config(materialized='table') }}

with payments as (
    select * from {{ ref('int_orders__payments') }}
),

imported as (
    select * from {{ ref('stg_transactions__imported_transactions') }}
),

fx as (
    select * from {{ ref('int_fx_rates') }}
),

identity as (
    select node_id, customer_id from {{ ref('int_identity__resolved') }}
),

unioned as (
    select
        order_id,
        'stripe' as order_source,
        'stripe_customer:' || stripe_customer_id as customer_node_id,
        stripe_customer_id,
        ordered_at,
        paid_at,
        currency,
        charge_attempts,
        charge_id,
        cast(gross_minor as {{ dbt.type_numeric() }}) / 100.0 as gross_amount_original,
        cast(refunded_minor as {{ dbt.type_numeric() }}) / 100.0 as refunded_amount_original,
        last_refunded_at,
        succeeded_charges > 0 as is_paid,
        false as is_return
    from payments
    union all
    select
        imported.order_id,
        'import',
        case
            when imported.customer_ref like '%_@_%._%' then 'email:' || lower(trim(imported.customer_ref))
            else 'imported_customer:' || imported.customer_ref
        end,
        null,
        imported.ordered_at,
        imported.ordered_at,
        imported.currency,
        1,
        null,
        -- a return is not a purchase: no gross, its amount refunded (net = the negative amount)
        cast(case when imported.is_return then 0 else imported.amount end as {{ dbt.type_numeric() }}),
        cast(case when imported.is_return then -imported.amount else 0 end as {{ dbt.type_numeric() }}),
        case when imported.is_return then imported.ordered_at end,
        not imported.is_return,
        imported.is_return
    from imported
    -- a Stripe order with the same id wins over its copy in an imported file
    where not exists (select 1 from payments where payments.order_id = imported.order_id)
),

converted as (
    select
        unioned.*,
        identity.customer_id,
        unioned.gross_amount_original * fx.rate_to_reporting as gross_revenue,
        unioned.refunded_amount_original * fx.rate_to_reporting as refunded_revenue,
        (unioned.gross_amount_original - unioned.refunded_amount_original) * fx.rate_to_reporting as net_revenue,
        fx.rate_to_reporting is not null as has_fx_rate
    from unioned
    left join fx on unioned.currency = fx.currency
    left join identity on unioned.customer_node_id = identity.node_id
)

select
    converted.*,
    case
        when is_return then 'returned'
        when not is_paid then 'failed'
        when refunded_amount_original >= gross_amount_original and gross_amount_original > 0 then 'refunded'
        when refunded_amount_original > 0 then 'partially_refunded'
        else 'paid'
    end as status,
    case
        when is_paid and customer_id is not null
            and row_number() over (
                partition by customer_id, is_paid order by ordered_at, order_id
            ) = 1
        then true
        else false
    end as is_first_order,
    case
        when is_paid and customer_id is not null
        then row_number() over (partition by customer_id, is_paid order by ordered_at, order_id)
    end as customer_order_number
from converted
