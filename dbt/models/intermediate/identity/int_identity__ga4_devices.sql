-- One row per GA4 device (user_pseudo_id): when it was seen, the login ids it sent and the
-- orders it purchased. A device that sent more than one user_id is shared and never links.
{{ config(materialized='table') }}

with events as (
    select user_pseudo_id, user_id, event_at, transaction_id
    from {{ ref('int_ga4__events') }}
),

devices as (
    select
        user_pseudo_id,
        min(event_at) as first_seen_at,
        max(event_at) as last_seen_at,
        count(distinct user_id) as user_id_count,
        min(user_id) as user_id
    from events
    group by user_pseudo_id
),

user_ids as (
    select user_id, min(event_at) as first_seen_at, max(event_at) as last_seen_at
    from events
    where user_id is not null
    group by user_id
)

select
    devices.user_pseudo_id,
    devices.first_seen_at,
    devices.last_seen_at,
    devices.user_id_count,
    case when devices.user_id_count = 1 then devices.user_id end as login_user_id,
    user_ids.first_seen_at as user_id_first_seen_at
from devices
left join user_ids on devices.user_id = user_ids.user_id and devices.user_id_count = 1
