-- One row per Stripe charge: the latest landed version (by the source time it was observed),
-- from the charges list and the charge.* events.
with landed as (
    select * from {{ source('stripe', 'stripe__charges') }}
),

from_events as (
    select * from {{ source('stripe', 'stripe__events') }}
    where type like 'charge.%'
),

versions as (
    select
        id as charge_id,
        customer as stripe_customer_id,
        metadata__order_id as order_id,
        amount as amount_minor,
        amount_refunded as amount_refunded_minor,
        upper(currency) as currency,
        status,
        paid as is_paid,
        failure_code,
        receipt_email,
        {{ to_utc('created') }} as created_at,
        _interval_end as observed_at,
        _loaded_at,
        1 as source_rank
    from landed
    union all
    select
        data__object__id,
        data__object__customer,
        data__object__metadata__order_id,
        data__object__amount,
        data__object__amount_refunded,
        upper(data__object__currency),
        data__object__status,
        data__object__paid,
        data__object__failure_code,
        data__object__receipt_email,
        {{ to_utc('data__object__created') }},
        created,
        _loaded_at,
        0
    from from_events
),

ranked as (
    select
        *,
        row_number() over (
            partition by charge_id order by observed_at desc, source_rank desc, _loaded_at desc
        ) as version_rank
    from versions
    where charge_id is not null
)

select
    charge_id,
    stripe_customer_id,
    order_id,
    amount_minor,
    coalesce(amount_refunded_minor, 0) as amount_refunded_minor,
    currency,
    status,
    coalesce(is_paid, status = 'succeeded') as is_paid,
    failure_code,
    receipt_email,
    created_at
from ranked
where version_rank = 1
