-- One row per Stripe customer: the latest version from the customers list and customer.* events.
with landed as (
    select * from {{ source('stripe', 'stripe__customers') }}
),

from_events as (
    select * from {{ source('stripe', 'stripe__events') }}
    where type like 'customer.%'
),

versions as (
    select
        id as stripe_customer_id,
        email,
        name as full_name,
        phone,
        upper(address__country) as country_code,
        {{ to_utc('created') }} as created_at,
        _interval_end as observed_at,
        _loaded_at,
        1 as source_rank
    from landed
    union all
    select
        data__object__id,
        data__object__email,
        data__object__name,
        data__object__phone,
        upper(data__object__address__country),
        {{ to_utc('data__object__created') }},
        created,
        _loaded_at,
        0
    from from_events
    where type <> 'customer.deleted'
),

ranked as (
    select
        *,
        row_number() over (
            partition by stripe_customer_id
            order by observed_at desc, source_rank desc, _loaded_at desc
        ) as version_rank
    from versions
    where stripe_customer_id is not null
)

select
    stripe_customer_id,
    email,
    full_name,
    phone,
    country_code,
    created_at
from ranked
where version_rank = 1
