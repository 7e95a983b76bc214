-- One row per GA4 device (user_pseudo_id): when it was seen, the login ids it sent and the
-- orders it purchased. A device that sent more than one user_id is shared and never links.
--
-- Incremental: a run recomputes, from all their events, the devices with events that
-- int_ga4__events wrote since this model's last run (processed_at after events_processed_at)
-- and the devices whose login id is among those events' user_ids (its first-seen time may move
-- earlier); every other device's events, and so its row, are unchanged. Equal to a full refresh.
-- (A table written by an older version, without the high-water mark, is recomputed in full once.)
{{
    config(
        materialized='incremental',
        unique_key='user_pseudo_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns'
    )
}}

with
{% if is_incremental() and relation_has_column(this, 'events_processed_at') %}
new_events as (
    select user_pseudo_id, user_id
    from {{ ref('int_ga4__events') }}
    where processed_at > (
        select coalesce(max(events_processed_at), cast('1900-01-01' as {{ dbt.type_timestamp() }})) from {{ this }}
    )
),

new_user_ids as (
    select distinct user_id from new_events where user_id is not null
),

changed_devices as (
    select user_pseudo_id from new_events
    union
    select user_pseudo_id from {{ this }}
    where login_user_id in (select user_id from new_user_ids)
),

events as (
    select user_pseudo_id, user_id, event_at
    from {{ ref('int_ga4__events') }}
    where user_pseudo_id in (select user_pseudo_id from changed_devices)
),

-- a user id's first event on any device
user_id_events as (
    select user_id, event_at
    from {{ ref('int_ga4__events') }}
    where user_id in (select user_id from events where user_id is not null)
),
{% else %}
events as (
    select user_pseudo_id, user_id, event_at
    from {{ ref('int_ga4__events') }}
),

user_id_events as (
    select user_id, event_at from events where user_id is not null
),
{% endif %}

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
    from user_id_events
    group by user_id
)

select
    devices.user_pseudo_id,
    devices.first_seen_at,
    devices.last_seen_at,
    devices.user_id_count,
    case when devices.user_id_count = 1 then devices.user_id end as login_user_id,
    user_ids.first_seen_at as user_id_first_seen_at,
    -- the newest int_ga4__events write this row has seen (the next run starts after it)
    (select max(processed_at) from {{ ref('int_ga4__events') }}) as events_processed_at
from devices
left join user_ids on devices.user_id = user_ids.user_id and devices.user_id_count = 1
