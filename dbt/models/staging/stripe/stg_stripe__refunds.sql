-- One row per Stripe refund, latest version from the refunds list and the refund.* events.
with landed as (
    select * from {{ source('stripe', 'stripe__refunds') }}
),

from_events as (
    select * from {{ source('stripe', 'stripe__events') }}
    where type like 'refund.%'
),

versions as (
    select
        id as refund_id,
        charge as charge_id,
        amount as amount_minor,
        upper(currency) as currency,
        reason,
        status,
        {{ to_utc('created') }} as created_at,
        _interval_end as observed_at,
        _loaded_at,
        1 as source_rank
    from landed
    union all
    select
        data__object__id,
        data__object__charge,
        data__object__amount,
        upper(data__object__currency),
        data__object__reason,
        data__object__status,
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
            partition by refund_id order by observed_at desc, source_rank desc, _loaded_at desc
        ) as version_rank
    from versions
    where refund_id is not null
)

select refund_id, charge_id, amount_minor, currency, reason, status, created_at
from ranked
where version_rank = 1
