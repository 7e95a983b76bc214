-- Gold net revenue (fct_orders from Stripe) equals Stripe's successful charges minus refunds,
-- per month of the order, computed independently from silver and the fx_rates seed.
{{ config(severity='error') }}

with fx as (
    select
        upper(rates.currency) as currency,
        cast(rates.rate_to_usd as {{ type_double() }}) / cast(reporting.rate_to_usd as {{ type_double() }}) as rate
    from {{ ref('fx_rates') }} as rates
    cross join (
        select rate_to_usd from {{ ref('fx_rates') }} where upper(currency) = upper('{{ var("reporting_currency") }}')
    ) as reporting
),

charges as (
    select charge_id, order_id, amount_minor, currency
    from {{ ref('stg_stripe__charges') }}
    where status = 'succeeded' and order_id is not null
),

order_months as (
    select order_id, {{ month_start('min(created_at)') }} as order_month
    from {{ ref('stg_stripe__charges') }}
    where order_id is not null
    group by order_id
),

refunds as (
    select charge_id, sum(amount_minor) as refunded_minor
    from {{ ref('stg_stripe__refunds') }}
    where status is null or status not in ('failed', 'canceled')
    group by charge_id
),

stripe_side as (
    select
        order_months.order_month,
        sum((charges.amount_minor - coalesce(refunds.refunded_minor, 0)) / 100.0 * fx.rate) as net_revenue
    from charges
    inner join order_months on charges.order_id = order_months.order_id
    inner join fx on charges.currency = fx.currency
    left join refunds on charges.charge_id = refunds.charge_id
    group by order_months.order_month
),

gold_side as (
    select {{ month_start('order_date') }} as order_month, sum(net_revenue) as net_revenue
    from {{ ref('fct_orders') }}
    where order_source = 'stripe'
    group by {{ month_start('order_date') }}
)

select
    coalesce(stripe_side.order_month, gold_side.order_month) as order_month,
    stripe_side.net_revenue as stripe_net_revenue,
    gold_side.net_revenue as gold_net_revenue
from stripe_side
full outer join gold_side on stripe_side.order_month = gold_side.order_month
where abs(coalesce(stripe_side.net_revenue, 0) - coalesce(gold_side.net_revenue, 0)) > 0.01
