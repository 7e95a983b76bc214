-- One row per GA4 session: time, traffic source (the first one collected in the session),
-- GA4 default channel group, device, engagement and the funnel steps reached.
--
-- Incremental: sessions with an event in the re-processed window (see int_ga4__events) are
-- rebuilt from all their events, so a session spanning midnight or receiving late events is
-- complete and equal to a full refresh.
{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns'
    )
}}

{% set lookback = var('ga4_lookback_days') | int + var('ga4_extra_lookback_days') | int %}
{#- the session's "first" values (source, landing page, order): by event time, then event_key -#}
{% set order = ['event_at', 'event_key'] %}

with events as (
    select * from {{ ref('int_ga4__events') }}
    {% if is_incremental() %}
    where session_id in (
        select session_id from {{ ref('int_ga4__events') }}
        where event_date >= {{ incremental_cutoff_date('last_event_date', lookback) }}
    )
    {% endif %}
),

sessions as (
    select
        session_id,
        min(user_pseudo_id) as user_pseudo_id,
        max(user_id) as user_id,
        min(session_key) as session_key,
        max(ga_session_id) as ga_session_id,
        max(ga_session_number) as ga_session_number,
        max(case when is_session_id_inferred then 1 else 0 end) = 1 as is_session_id_inferred,
        min(event_at) as started_at,
        max(event_at) as ended_at,
        max(event_date) as last_event_date,
        {{ first_by('source', order) }} as source,
        {{ first_by('medium', order) }} as medium,
        {{ first_by('campaign', order) }} as campaign,
        {{ first_by('gclid', order) }} as gclid,
        max(case when has_fbclid then 1 else 0 end) = 1 as has_fbclid,
        {{ first_by('page_location', order, "event_name in ('page_view', 'screen_view')") }} as landing_page_location,
        min(device_category) as device_category,
        min(device_os) as device_os,
        min(platform) as platform,
        min(country) as country,
        count(*) as events,
        sum(case when event_name in ('page_view', 'screen_view') then 1 else 0 end) as page_views,
        coalesce(sum(engagement_time_msec), 0) / 1000.0 as engagement_seconds,
        max(case when event_name = 'first_visit' then 1 else 0 end) = 1 as is_first_visit,
        max(case when event_name = 'login' then 1 else 0 end) = 1 as has_login,
        max(case when event_name = 'view_item' then 1 else 0 end) = 1 as has_view_item,
        max(case when event_name = 'add_to_cart' then 1 else 0 end) = 1 as has_add_to_cart,
        max(case when event_name = 'begin_checkout' then 1 else 0 end) = 1 as has_begin_checkout,
        max(case when event_name = 'purchase' then 1 else 0 end) = 1 as has_purchase,
        coalesce(
            {{ first_by('transaction_id', order, "event_name = 'purchase'") }},
            {{ first_by('transaction_id', order, skip_nulls=false) }}
        ) as order_id,
        count(distinct transaction_id) as purchases
    from events
    group by session_id
)

select
    session_id,
    user_pseudo_id,
    user_id,
    ga_session_id,
    ga_session_number,
    is_session_id_inferred,
    started_at,
    ended_at,
    cast(started_at as date) as session_date,
    last_event_date,
    source,
    medium,
    campaign,
    {{ campaign_key('campaign') }} as campaign_key,
    gclid is not null as has_gclid,
    has_fbclid,
    {{ default_channel_group('source', 'medium', 'campaign', 'gclid', 'has_fbclid') }} as channel_group,
    {{ dbt.split_part('landing_page_location', "'?'", 1) }} as landing_page,
    device_category,
    device_os,
    platform,
    country,
    events,
    page_views,
    {{ dbt.datediff('started_at', 'ended_at', 'second') }} as duration_seconds,
    engagement_seconds,
    is_first_visit,
    has_login,
    has_view_item,
    has_add_to_cart,
    has_begin_checkout,
    has_purchase,
    order_id,
    purchases,
    order_id is not null as is_converted,
    ({{ dbt.datediff('started_at', 'ended_at', 'second') }} >= 10 or page_views >= 2 or order_id is not null)
        as is_engaged,
    -- the run that (re)wrote the session: int_sessions__stitched re-stitches the sessions written
    -- since its own last run
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }}) as processed_at
from sessions
