-- One row per Stripe customer (latest landed version).
with landed as (
    select * from {{ source('stripe', 'stripe__customers') }}
),

from_events as (
    select * from {{ source('stripe', 'stripe__events') }}
    where type like 'customer.%'
),

versions as (
    select
        id as stripe_customer_id, email, name as full_name, phone, address__country as country,
        created as created_at, _interval_end as observed_at, 1 as source_rank
    from landed
    union all
    select
        data__object__id, data__object__email, data__object__name, data__object__phone,
        data__object__address__country, data__object__created, created, 0
    from from_events
),

ranked as (
    select
        *,
        row_number() over (partition by stripe_customer_id order by observed_at desc, source_rank desc) as version_rank
    from versions
)

select stripe_customer_id, email, full_name, phone, country, created_at
from ranked
where version_rank = 1
