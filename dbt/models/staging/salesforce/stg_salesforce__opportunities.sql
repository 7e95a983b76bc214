-- One row per Salesforce opportunity (latest version), amount also in the reporting currency.
with latest as (
    {{ latest_version(source('salesforce', 'salesforce__opportunity'), 'id', 'systemmodstamp') }}
),

fx_rates as (
    select upper(currency) as currency, cast(rate_to_usd as {{ type_double() }}) as rate_to_usd
    from {{ ref('fx_rates') }}
),

fx as (
    -- the org currency converted into the reporting currency
    select org.rate_to_usd / reporting.rate_to_usd as rate_to_reporting
    from fx_rates as org
    inner join fx_rates as reporting on reporting.currency = upper('{{ var("reporting_currency") }}')
    where org.currency = upper('{{ var("salesforce_currency") }}')
)

select
    latest.id as opportunity_id,
    latest.accountid as account_id,
    latest.name as opportunity_name,
    latest.stagename as stage_name,
    latest.amount,
    upper('{{ var("salesforce_currency") }}') as currency,
    latest.amount * fx.rate_to_reporting as amount_reporting,
    {{ to_date('latest.closedate') }} as close_date,
    coalesce(latest.iswon, false) as is_won,
    coalesce(latest.isclosed, false) as is_closed,
    latest.leadsource as lead_source,
    coalesce(latest.isdeleted, false) as is_deleted,
    {{ to_utc('latest.createddate') }} as created_at,
    {{ to_utc('latest.lastmodifieddate') }} as last_modified_at,
    {{ to_utc('latest.systemmodstamp') }} as system_modstamp_at
from latest
left join fx on true
