-- Date x channel group x campaign x attribution model: ad spend, impressions and clicks (Google
-- Ads, Meta), GA4 sessions, and conversions / revenue attributed under the model (by order
-- date), with ROAS and CAC. Long format: spend, clicks, impressions and sessions repeat on
-- every model row of a day and campaign - filter on one model before summing them.
with spend as (
    select
        stat_date as date_day,
        channel_group,
        campaign_key,
        max(campaign_name) as campaign_name,
        sum(spend) as spend,
        sum(impressions) as impressions,
        sum(clicks) as clicks
    from {{ ref('int_marketing__ad_spend_daily') }}
    group by stat_date, channel_group, campaign_key
),

sessions as (
    select
        session_date as date_day,
        channel_group,
        coalesce(campaign_key, '(not_set)') as campaign_key,
        count(*) as sessions,
        sum(case when is_engaged then 1 else 0 end) as engaged_sessions
    from {{ ref('int_sessions__stitched') }}
    group by session_date, channel_group, coalesce(campaign_key, '(not_set)')
),

attributed as (
    select
        cast(attribution.touched_at as date) as touch_date,
        orders.order_date as date_day,
        attribution.model,
        attribution.channel_group,
        coalesce(attribution.campaign_key, '(not_set)') as campaign_key,
        attribution.credit,
        attribution.attributed_revenue,
        orders.is_first_order
    from {{ ref('fct_attribution') }} as attribution
    inner join (
        select order_id, cast(ordered_at as date) as order_date, is_first_order from {{ ref('int_orders') }}
    ) as orders on attribution.order_id = orders.order_id
),

attributed_daily as (
    select
        date_day,
        model,
        channel_group,
        campaign_key,
        sum(credit) as attributed_conversions,
        sum(attributed_revenue) as attributed_revenue,
        sum(case when is_first_order then credit else 0 end) as attributed_new_customers
    from attributed
    group by date_day, model, channel_group, campaign_key
),

models as (
    select distinct model from {{ ref('fct_attribution') }}
),

keys as (
    select date_day, channel_group, campaign_key from spend
    union
    select date_day, channel_group, campaign_key from sessions
    union
    select date_day, channel_group, campaign_key from attributed_daily
),

grid as (
    select keys.*, models.model
    from keys
    cross join models
)

select
    {{ dbt.hash(dbt.concat(["cast(grid.date_day as " ~ dbt.type_string() ~ ")", "'|'", 'grid.channel_group', "'|'",
                            'grid.campaign_key', "'|'", 'grid.model'])) }} as channel_performance_id,
    grid.date_day,
    grid.channel_group,
    grid.campaign_key as campaign,
    spend.campaign_name,
    grid.model,
    coalesce(spend.spend, 0) as spend,
    coalesce(spend.impressions, 0) as impressions,
    coalesce(spend.clicks, 0) as clicks,
    coalesce(sessions.sessions, 0) as sessions,
    coalesce(sessions.engaged_sessions, 0) as engaged_sessions,
    coalesce(attributed_daily.attributed_conversions, 0) as attributed_conversions,
    coalesce(attributed_daily.attributed_revenue, 0) as attributed_revenue,
    coalesce(attributed_daily.attributed_new_customers, 0) as attributed_new_customers,
    attributed_daily.attributed_revenue / nullif(spend.spend, 0) as roas,
    spend.spend / nullif(attributed_daily.attributed_new_customers, 0) as cac,
    spend.spend / nullif(spend.clicks, 0) as cost_per_click,
    '{{ var("reporting_currency") }}' as reporting_currency
from grid
left join spend
    on grid.date_day = spend.date_day and grid.channel_group = spend.channel_group
    and grid.campaign_key = spend.campaign_key
left join sessions
    on grid.date_day = sessions.date_day and grid.channel_group = sessions.channel_group
    and grid.campaign_key = sessions.campaign_key
left join attributed_daily
    on grid.date_day = attributed_daily.date_day and grid.channel_group = attributed_daily.channel_group
    and grid.campaign_key = attributed_daily.campaign_key and grid.model = attributed_daily.model
