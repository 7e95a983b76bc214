-- The touchpoints of every converting order: paid orders that GA4 saw (a purchase event with
-- the order id) and the sessions of the same customer (or the converting device) that started
-- within var attribution_lookback_days before the order, up to and including the converting
-- session. Orders GA4 never saw have no touchpoints.
{{ config(materialized='table') }}

{#- a session is a touchpoint of an order when it started in the lookback window before the order,
    up to and including the converting session -#}
{% set in_window -%}
    sessions.started_at <= conversions.converting_session_started_at
        and sessions.started_at >= {{ dbt.dateadd('day', -(var('attribution_lookback_days') | int), 'conversions.ordered_at') }}
{%- endset %}

with orders as (
    select * from {{ ref('int_orders') }}
    where is_paid
),

sessions as (
    select * from {{ ref('int_sessions__stitched') }}
),

converting_sessions as (
    select order_id, session_id, user_pseudo_id, started_at
    from (
        select
            order_id,
            session_id,
            user_pseudo_id,
            started_at,
            row_number() over (partition by order_id order by started_at, session_id) as session_rank
        from sessions
        where order_id is not null
    ) as ranked
    where session_rank = 1
),

conversions as (
    select
        orders.order_id,
        orders.customer_id,
        orders.ordered_at,
        orders.net_revenue,
        orders.is_first_order,
        converting_sessions.session_id as converting_session_id,
        converting_sessions.user_pseudo_id as converting_user_pseudo_id,
        converting_sessions.started_at as converting_session_started_at
    from orders
    inner join converting_sessions on orders.order_id = converting_sessions.order_id
),

candidate_sessions as (
    -- sessions of the customer, and of the converting device (stitched or not), in the order's
    -- window (filtered here, before the union removes the sessions found both ways: a customer's
    -- every session paired with every order of theirs is many times the touchpoints)
    select conversions.order_id, sessions.session_id
    from conversions
    inner join sessions on sessions.customer_id = conversions.customer_id
    where {{ in_window }}
    union
    select conversions.order_id, sessions.session_id
    from conversions
    inner join sessions on sessions.user_pseudo_id = conversions.converting_user_pseudo_id
    where {{ in_window }}
),

touches as (
    select
        conversions.*,
        sessions.session_id,
        sessions.started_at as touched_at,
        sessions.channel_group,
        sessions.source,
        sessions.medium,
        sessions.campaign,
        sessions.campaign_key
    from candidate_sessions
    inner join conversions on candidate_sessions.order_id = conversions.order_id
    inner join sessions on candidate_sessions.session_id = sessions.session_id
)

select
    {{ dbt.hash(dbt.concat(['order_id', "'|'", 'session_id'])) }} as touchpoint_id,
    order_id,
    customer_id,
    ordered_at,
    net_revenue,
    is_first_order,
    converting_session_id,
    session_id,
    session_id = converting_session_id as is_converting_session,
    row_number() over (partition by order_id order by touched_at, session_id) as touchpoint_index,
    count(*) over (partition by order_id) as touch_count,
    touched_at,
    {{ days_between('touched_at', 'ordered_at') }} as days_before_conversion,
    channel_group,
    source,
    medium,
    campaign,
    campaign_key
from touches
