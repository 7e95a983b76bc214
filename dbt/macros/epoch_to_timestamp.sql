{#- Portable helpers used across models; engine-specific bits go through adapter.dispatch. -#}

{% macro to_reporting_currency(amount_minor, currency_column, fx_alias='fx') -%}
    (cast({{ amount_minor }} as {{ dbt.type_numeric() }}) / 100.0) * {{ fx_alias }}.rate_to_reporting
{%- endmacro %}

{% macro utc_date(ts) -%}
    {{ return(adapter.dispatch('utc_date', 'retailpulse')(ts)) }}
{%- endmacro %}

{% macro default__utc_date(ts) -%}
    cast(({{ ts }}) at time zone 'UTC' as date)
{%- endmacro %}

{% macro duckdb__utc_date(ts) -%}
    cast(timezone('UTC', {{ ts }}) as date)
{%- endmacro %}
