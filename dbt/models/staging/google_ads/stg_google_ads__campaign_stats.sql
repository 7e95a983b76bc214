-- One row per Google Ads campaign and day: the latest restatement of the day.
with latest as (
    {{ latest_version(source('google_ads', 'google_ads__campaign_daily'),
                      "cast(campaign__id as " ~ dbt.type_string() ~ ") || '|' || cast(segments__date as " ~ dbt.type_string() ~ ")") }}
)

select
    {{ dbt.concat(["'google_ads|'", "cast(campaign__id as " ~ dbt.type_string() ~ ")", "'|'",
                   "cast(segments__date as " ~ dbt.type_string() ~ ")"]) }} as campaign_stat_id,
    'google_ads' as ad_platform,
    customer_id as ad_account_id,
    cast(campaign__id as {{ dbt.type_string() }}) as campaign_id,
    campaign__name as campaign_name,
    {{ campaign_key('campaign__name') }} as campaign_key,
    {{ to_date('segments__date') }} as stat_date,
    cast(metrics__cost_micros as {{ type_double() }}) / 1000000.0 as spend,
    upper('{{ var("google_ads_currency") }}') as currency,
    coalesce(metrics__clicks, 0) as clicks,
    coalesce(metrics__impressions, 0) as impressions,
    metrics__conversions as platform_conversions
from latest
