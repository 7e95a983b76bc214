-- One row per GA4 session, stitched to the resolved customer where known (including the
-- anonymous sessions of a device before its first login): source, medium, campaign, channel
-- group, device, pages, duration, conversion.
--
-- A view: it renames and selects columns of silver.int_sessions__stitched (a table), so a daily
-- run does not write a million wide rows twice. The published serving copy and Parquet hold it
-- as a table, like every gold relation.
{{ config(materialized='view') }}

with sessions as (
    select * from {{ ref('int_sessions__stitched') }}
)

select
    session_id,
    customer_id,
    stitched_by,
    user_pseudo_id,
    user_id,
    ga_session_id,
    ga_session_number,
    is_session_id_inferred,
    started_at,
    ended_at,
    session_date,
    source,
    medium,
    campaign,
    campaign_key,
    channel_group,
    has_gclid,
    has_fbclid,
    landing_page,
    device_category,
    device_os,
    platform,
    country_code as country,
    events,
    page_views,
    duration_seconds,
    engagement_seconds,
    is_engaged,
    is_first_visit,
    has_login,
    has_view_item,
    has_add_to_cart,
    has_begin_checkout,
    has_purchase,
    is_converted,
    order_id
from sessions
