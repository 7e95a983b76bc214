-- The shopping funnel by day, platform and channel group: sessions, then sessions that viewed
-- a product, added to cart, began checkout and purchased, with step conversion rates.
with sessions as (
    select * from {{ ref('int_ga4__sessions') }}
),

daily as (
    select
        session_date as date_day,
        coalesce(platform, '(not set)') as platform,
        channel_group,
        count(*) as sessions,
        sum(case when is_engaged then 1 else 0 end) as engaged_sessions,
        sum(case when has_view_item then 1 else 0 end) as view_item_sessions,
        sum(case when has_add_to_cart then 1 else 0 end) as add_to_cart_sessions,
        sum(case when has_begin_checkout then 1 else 0 end) as begin_checkout_sessions,
        sum(case when has_purchase then 1 else 0 end) as purchase_sessions
    from sessions
    group by session_date, coalesce(platform, '(not set)'), channel_group
)

select
    {{ dbt.hash(dbt.concat(["cast(date_day as " ~ dbt.type_string() ~ ")", "'|'", 'platform', "'|'", 'channel_group'])) }}
        as funnel_day_id,
    daily.*,
    cast(view_item_sessions as {{ type_double() }}) / nullif(sessions, 0) as view_item_rate,
    cast(add_to_cart_sessions as {{ type_double() }}) / nullif(view_item_sessions, 0) as add_to_cart_rate,
    cast(begin_checkout_sessions as {{ type_double() }}) / nullif(add_to_cart_sessions, 0) as begin_checkout_rate,
    cast(purchase_sessions as {{ type_double() }}) / nullif(begin_checkout_sessions, 0) as purchase_rate,
    cast(purchase_sessions as {{ type_double() }}) / nullif(sessions, 0) as session_conversion_rate
from daily
