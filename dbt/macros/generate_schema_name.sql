{#- Use the configured schema as-is (bronze / silver / gold), prefixed per target on Postgres.

    The prefix isolates several RetailPulse warehouses (or test runs) in one Postgres database:
    RETAILPULSE_POSTGRES_SCHEMA_PREFIX when set, else derived from the profile's schema, which
    the generated profile sets to "<prefix>public". -#}
{% macro rp_schema_prefix() -%}
    {%- if target.type != 'postgres' -%}
        {{ return('') }}
    {%- endif -%}
    {%- set from_env = env_var('RETAILPULSE_POSTGRES_SCHEMA_PREFIX', '') -%}
    {%- if from_env -%}
        {{ return(from_env) }}
    {%- endif -%}
    {%- if target.schema.endswith('public') -%}
        {{ return(target.schema[:-6]) }}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}

{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ rp_schema_prefix() ~ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
