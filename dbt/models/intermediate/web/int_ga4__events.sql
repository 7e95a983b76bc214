-- GA4 events with their session: session_id = hash(user_pseudo_id, ga_session_id). Events
-- without ga_session_id are sessionised per device by inactivity (var session_timeout_minutes):
-- their session key is the start of the inactivity group (in seconds), flagged inferred.
--
-- Incremental: each run re-processes the export days from (last processed day - var
-- ga4_lookback_days - var ga4_extra_lookback_days), which covers GA4's late events (up to
-- 3 days), and upserts by event_key; devices with session-less events in the window are
-- re-sessionised over their whole history, so daily runs equal a full refresh. Incremental runs
-- stage only the landed rows they need (the window's export days, the session-less events of
-- those devices) with ga4_staged_events, the staging view's own select: reading the view
-- would deduplicate every landed event first.
-- depends_on: {{ source('ga4', 'ga4__events') }}
{{
    config(
        materialized='incremental',
        unique_key='event_key',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns'
    )
}}

{% set lookback = var('ga4_lookback_days') | int + var('ga4_extra_lookback_days') | int %}

{% if is_incremental() %}
{% set cutoff_day = incremental_cutoff_day('event_date', lookback) %}

with window_landed as (
    -- bronze event_date is the export day as YYYYMMDD text
    select * from {{ source('ga4', 'ga4__events') }}
    where event_date >= '{{ cutoff_day | replace("-", "") }}'
),

window_events as (
    select * from ({{ ga4_staged_events('window_landed') }}) as staged
    where event_date >= cast('{{ cutoff_day }}' as date)
),
{% else %}
-- stg_ga4__events is read twice below, each time directly: a CTE read twice is materialised in
-- full by DuckDB (every event, all columns), which hides the date and device filters from the scan.
with window_events as (
    select * from {{ ref('stg_ga4__events') }}
),
{% endif %}

with_session_id as (
    select *, cast(ga_session_id as {{ dbt.type_string() }}) as session_key, false as is_session_id_inferred
    from window_events
    where ga_session_id is not null
),

fallback_devices as (
    select distinct user_pseudo_id from window_events where ga_session_id is null
),

{% if is_incremental() %}
-- every session-less event of those devices, whole history (ga_session_id is part of event_key:
-- all copies of such an event are session-less)
fallback_landed as (
    select * from {{ source('ga4', 'ga4__events') }}
    where param__ga_session_id is null
        and user_pseudo_id in (select user_pseudo_id from fallback_devices)
),

device_events as (
    {{ ga4_staged_events('fallback_landed') }}
),
{% endif %}

fallback_events as (
    select
        all_events.*,
        lag(all_events.event_at) over (
            partition by all_events.user_pseudo_id order by all_events.event_at, all_events.event_key
        ) as previous_event_at
    from {% if is_incremental() %}device_events{% else %}{{ ref('stg_ga4__events') }}{% endif %} as all_events
    where all_events.ga_session_id is null
        and all_events.user_pseudo_id in (select user_pseudo_id from fallback_devices)
),

fallback_groups as (
    select
        *,
        sum(
            case
                when previous_event_at is null
                    or {{ dbt.datediff('previous_event_at', 'event_at', 'second') }}
                        > {{ var('session_timeout_minutes') | int * 60 }}
                then 1 else 0
            end
        ) over (
            partition by user_pseudo_id order by event_at, event_key rows between unbounded preceding and current row
        ) as inferred_group
    from fallback_events
),

fallback_sessionised as (
    select
        *,
        min(event_at) over (partition by user_pseudo_id, inferred_group) as inferred_started_at
    from fallback_groups
),

sessionised as (
    select
        event_key, event_date, event_at, event_name, user_pseudo_id, user_id, platform,
        ga_session_id, ga_session_number, page_location, page_title, page_referrer, engagement_time_msec,
        source, medium, campaign, gclid, has_fbclid, device_category, device_os, country,
        first_user_source, first_user_medium, first_user_campaign,
        transaction_id, purchase_revenue, item_quantity, session_key, is_session_id_inferred
    from with_session_id
    union all
    select
        event_key, event_date, event_at, event_name, user_pseudo_id, user_id, platform,
        ga_session_id, ga_session_number, page_location, page_title, page_referrer, engagement_time_msec,
        source, medium, campaign, gclid, has_fbclid, device_category, device_os, country,
        first_user_source, first_user_medium, first_user_campaign,
        transaction_id, purchase_revenue, item_quantity,
        'i' || cast({{ epoch_seconds('inferred_started_at') }} as {{ dbt.type_string() }}),
        true
    from fallback_sessionised
)

select
    {{ dbt.hash(dbt.concat(['user_pseudo_id', "'|'", 'session_key'])) }} as session_id,
    sessionised.*,
    -- the run that (re)wrote the row: the test unique_in_last_write checks its rows only
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }}) as processed_at
from sessionised
