{#- The staging of GA4 events (stg_ga4__events): one row per event (event_key), the latest landed
    copy, renamed and cast. ``landed``: a relation or CTE name in the bronze shape of
    ga4__events (the source, or a filtered part of it).

    A macro so that int_ga4__events' incremental runs can stage only the landed rows of their
    window: every copy of an event carries the same user_pseudo_id, event_timestamp (so export
    day) and ga_session_id (they are part of event_key), so filtering bronze on them before the
    deduplication gives the rows the view gives with the same filter -- without deduplicating
    all history first, which took most of an incremental run's time in that model. -#}
{% macro ga4_staged_events(landed) -%}
select
    event_key,
    cast(
        substr(event_date, 1, 4) || '-' || substr(event_date, 5, 2) || '-' || substr(event_date, 7, 2)
        as date
    ) as event_date,
    {{ to_utc('event_timestamp') }} as event_at,
    event_name,
    user_pseudo_id,
    nullif(trim(user_id), '') as user_id,
    upper(platform) as platform,
    param__ga_session_id as ga_session_id,
    param__ga_session_number as ga_session_number,
    param__page_location as page_location,
    param__page_title as page_title,
    param__page_referrer as page_referrer,
    param__engagement_time_msec as engagement_time_msec,
    nullif(coalesce(collected_traffic_source__manual_source, param__source), '') as source,
    nullif(coalesce(collected_traffic_source__manual_medium, param__medium), '') as medium,
    nullif(coalesce(collected_traffic_source__manual_campaign_name, param__campaign), '') as campaign,
    nullif(coalesce(collected_traffic_source__gclid, param__gclid), '') as gclid,
    coalesce(param__page_location like '%fbclid=%', false) as has_fbclid,
    lower(device__category) as device_category,
    device__operating_system as device_os,
    geo__country as country,
    traffic_source__source as first_user_source,
    traffic_source__medium as first_user_medium,
    traffic_source__name as first_user_campaign,
    nullif(trim(coalesce(ecommerce__transaction_id, param__transaction_id)), '') as transaction_id,
    coalesce(ecommerce__purchase_revenue, param__value) as purchase_revenue,
    upper(param__currency) as purchase_currency,
    ecommerce__total_item_quantity as item_quantity,
    items as items_json
from ({{ latest_version(landed, 'event_key') }}) as latest
where user_pseudo_id is not null
{%- endmacro %}
