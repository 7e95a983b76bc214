-- Per order (Stripe metadata.order_id): its charges, the successful one, and refunds, in
-- the original currency's minor units.
with charges as (
    select * from {{ ref('stg_stripe__charges') }}
    where order_id is not null
),

refunds as (
    select
        charge_id,
        sum(amount_minor) as refunded_minor,
        max(created_at) as last_refunded_at
    from {{ ref('stg_stripe__refunds') }}
    where status is null or status not in ('failed', 'canceled')
    group by charge_id
),

charge_facts as (
    select
        charges.*,
        -- the refunds list, else what the charge itself says was refunded
        greatest(coalesce(refunds.refunded_minor, 0), coalesce(charges.amount_refunded_minor, 0)) as refunded_minor,
        refunds.last_refunded_at,
        case when charges.status = 'succeeded' then 1 else 0 end as is_succeeded_int
    from charges
    left join refunds on charges.charge_id = refunds.charge_id
)

select
    order_id,
    min(created_at) as ordered_at,
    max(case when is_succeeded_int = 1 then created_at end) as paid_at,
    -- the customer on the successful charge, else on the latest attempt
    coalesce(
        max(case when is_succeeded_int = 1 then stripe_customer_id end),
        max(stripe_customer_id)
    ) as stripe_customer_id,
    coalesce(max(case when is_succeeded_int = 1 then currency end), max(currency)) as currency,
    count(*) as charge_attempts,
    sum(is_succeeded_int) as succeeded_charges,
    sum(case when is_succeeded_int = 1 then amount_minor else 0 end) as gross_minor,
    sum(case when is_succeeded_int = 1 then refunded_minor else 0 end) as refunded_minor,
    max(last_refunded_at) as last_refunded_at,
    max(case when is_succeeded_int = 1 then charge_id end) as charge_id
from charge_facts
group by order_id
