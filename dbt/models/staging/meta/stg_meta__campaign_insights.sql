-- One row per Meta campaign and day: the latest restatement of the day.
with latest as (
    {{ latest_version(source('meta', 'meta__campaign_insights'),
                      "campaign_id || '|' || cast(date_start as " ~ dbt.type_string() ~ ")") }}
)

select
    {{ dbt.concat(["'meta|'", "campaign_id", "'|'", "cast(date_start as " ~ dbt.type_string() ~ ")"]) }}
        as campaign_stat_id,
    'meta' as ad_platform,
    account_id as ad_account_id,
    campaign_id,
    campaign_name,
    {{ campaign_key('campaign_name') }} as campaign_key,
    {{ to_date('date_start') }} as stat_date,
    cast(spend as {{ type_double() }}) as spend,
    upper('{{ var("meta_currency") }}') as currency,
    coalesce(clicks, 0) as clicks,
    coalesce(impressions, 0) as impressions
from latest
