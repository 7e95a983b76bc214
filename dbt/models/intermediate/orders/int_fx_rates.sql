-- Conversion factor from each currency into the reporting currency (var reporting_currency).
with rates as (
    select upper(currency) as currency, cast(rate_to_usd as {{ type_double() }}) as rate_to_usd
    from {{ ref('fx_rates') }}
),

reporting as (
    select rate_to_usd as reporting_rate_to_usd
    from rates
    where currency = upper('{{ var("reporting_currency") }}')
)

select
    rates.currency,
    rates.rate_to_usd,
    rates.rate_to_usd / reporting.reporting_rate_to_usd as rate_to_reporting
from rates
cross join reporting
