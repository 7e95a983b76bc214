-- Ad spend by day and campaign from Google Ads and Meta, in the reporting currency, with the
-- channel group GA4 gives the sessions of that campaign (same rules, the platform's
-- source/medium), and the campaign key that matches utm_campaign.
with google_ads as (
    select
        campaign_stat_id, ad_platform, ad_account_id, campaign_id, campaign_name, campaign_key, stat_date,
        spend, currency, clicks, impressions, platform_conversions,
        'google' as utm_source, 'cpc' as utm_medium
    from {{ ref('stg_google_ads__campaign_stats') }}
),

meta as (
    select
        campaign_stat_id, ad_platform, ad_account_id, campaign_id, campaign_name, campaign_key, stat_date,
        spend, currency, clicks, impressions, cast(null as {{ type_double() }}) as platform_conversions,
        'facebook' as utm_source, 'paid_social' as utm_medium
    from {{ ref('stg_meta__campaign_insights') }}
),

unioned as (
    select * from google_ads
    union all
    select * from meta
),

fx as (
    select * from {{ ref('int_fx_rates') }}
)

select
    unioned.campaign_stat_id,
    unioned.ad_platform,
    unioned.ad_account_id,
    unioned.campaign_id,
    unioned.campaign_name,
    unioned.campaign_key,
    unioned.stat_date,
    {{ default_channel_group('unioned.utm_source', 'unioned.utm_medium', 'unioned.campaign_key') }} as channel_group,
    unioned.spend as spend_original,
    unioned.currency as original_currency,
    unioned.spend * fx.rate_to_reporting as spend,
    unioned.clicks,
    unioned.impressions,
    unioned.platform_conversions
from unioned
left join fx on unioned.currency = fx.currency
