-- One row per resolved person (customer_id): first/last seen, acquisition channel and
-- campaign, orders, revenue, AOV, RFM, hashed e-mail, country, consent and the latest ML
-- scores and behavioural segment. No raw e-mail, name or phone (those stay in silver: int_customers__golden).
with identity as (
    select customer_id, min(first_seen_at) as first_identified_at, count(*) as identifiers
    from {{ ref('int_identity__resolved') }}
    where customer_id is not null
    group by customer_id
),

golden as (
    select * from {{ ref('int_customers__golden') }}
),

orders as (
    -- paid orders, and imported returns (negative revenue)
    select
        customer_id,
        sum(case when is_paid then 1 else 0 end) as orders,
        sum(gross_revenue) as gross_revenue,
        sum(net_revenue) as net_revenue,
        min(case when is_paid then ordered_at end) as first_order_at,
        max(case when is_paid then ordered_at end) as last_order_at
    from {{ ref('int_orders') }}
    where (is_paid or is_return) and customer_id is not null
    group by customer_id
),

sessions as (
    select * from {{ ref('int_sessions__stitched') }}
    where customer_id is not null
),

session_stats as (
    select
        customer_id,
        count(*) as sessions,
        min(started_at) as first_session_at,
        max(ended_at) as last_session_at,
        count(distinct user_pseudo_id) as devices
    from sessions
    group by customer_id
),

first_sessions as (
    select customer_id, channel_group, source, medium, campaign, country_code
    from (
        select
            sessions.*,
            row_number() over (partition by customer_id order by started_at, session_id) as session_rank
        from sessions
    ) as ranked
    where session_rank = 1
),

rfm as (
    select * from {{ ref('customer_rfm') }}
),

-- the latest scores: each customer's newest as_of_date, then the greatest model_version. The
-- history grows by a full scoring every day, so the newest date is found by a narrow aggregate
-- and the join reads only the rows of that date (a window over every row of the history would
-- sort all of them in each build)
latest_score_dates as (
    select customer_id, max(as_of_date) as as_of_date
    from {{ source('ml', 'customer_scores') }}
    group by customer_id
),

scores as (
    select *
    from (
        select
            customer_scores.*,
            row_number() over (
                partition by customer_scores.customer_id order by customer_scores.model_version desc
            ) as score_rank
        from {{ source('ml', 'customer_scores') }} as customer_scores
        inner join latest_score_dates
            on customer_scores.customer_id = latest_score_dates.customer_id
            and customer_scores.as_of_date = latest_score_dates.as_of_date
    ) as ranked
    where score_rank = 1
),

latest_segment_dates as (
    select customer_id, max(as_of_date) as as_of_date
    from {{ source('ml', 'customer_segments') }}
    group by customer_id
),

segments as (
    select *
    from (
        select
            customer_segments.*,
            row_number() over (partition by customer_segments.customer_id order by customer_segments.as_of_date desc)
                as segment_rank
        from {{ source('ml', 'customer_segments') }} as customer_segments
        inner join latest_segment_dates
            on customer_segments.customer_id = latest_segment_dates.customer_id
            and customer_segments.as_of_date = latest_segment_dates.as_of_date
    ) as ranked
    where segment_rank = 1
)

select
    identity.customer_id,
    golden.email_sha256,
    coalesce(golden.country_code, first_sessions.country_code) as country,
    coalesce(golden.is_email_opted_out, false) as is_email_opted_out,
    coalesce(golden.has_crm_contact, false) as has_crm_contact,
    coalesce(golden.has_stripe_customer, false) as has_stripe_customer,
    coalesce(orders.orders, 0) > 0 as is_customer,
    identity.identifiers,
    coalesce(session_stats.devices, 0) as devices,
    least(
        coalesce(identity.first_identified_at, session_stats.first_session_at, orders.first_order_at),
        coalesce(session_stats.first_session_at, orders.first_order_at, identity.first_identified_at),
        coalesce(orders.first_order_at, identity.first_identified_at, session_stats.first_session_at)
    ) as first_seen_at,
    greatest(
        coalesce(session_stats.last_session_at, orders.last_order_at, identity.first_identified_at),
        coalesce(orders.last_order_at, session_stats.last_session_at, identity.first_identified_at)
    ) as last_seen_at,
    case
        when first_sessions.channel_group is not null then first_sessions.channel_group
        when golden.crm_lead_source is not null then 'CRM - ' || golden.crm_lead_source
    end as acquisition_channel,
    first_sessions.campaign as acquisition_campaign,
    first_sessions.source as acquisition_source,
    first_sessions.medium as acquisition_medium,
    case
        when first_sessions.channel_group is not null then 'ga4_first_session'
        when golden.crm_lead_source is not null then 'crm_lead_source'
    end as acquisition_basis,
    golden.crm_lead_source,
    orders.first_order_at,
    orders.last_order_at,
    coalesce(orders.orders, 0) as orders,
    coalesce(orders.gross_revenue, 0) as gross_revenue,
    coalesce(orders.net_revenue, 0) as net_revenue,
    orders.net_revenue / nullif(orders.orders, 0) as average_order_value,
    coalesce(session_stats.sessions, 0) as sessions,
    rfm.recency_days,
    rfm.recency_score,
    rfm.frequency_score,
    rfm.monetary_score,
    rfm.rfm_cell,
    rfm.rfm_segment,
    scores.as_of_date as scores_as_of_date,
    scores.model_version as scores_model_version,
    scores.p_alive,
    scores.churn_probability,
    scores.expected_purchases_90d,
    scores.expected_purchases_365d,
    scores.predicted_clv_12m,
    scores.value_tier,
    scores.churn_risk_band,
    segments.segment_name as behavioural_segment,
    '{{ var("reporting_currency") }}' as reporting_currency
from identity
left join golden on identity.customer_id = golden.customer_id
left join orders on identity.customer_id = orders.customer_id
left join session_stats on identity.customer_id = session_stats.customer_id
left join first_sessions on identity.customer_id = first_sessions.customer_id
left join rfm on identity.customer_id = rfm.customer_id
left join scores on identity.customer_id = scores.customer_id
left join segments on identity.customer_id = segments.customer_id
