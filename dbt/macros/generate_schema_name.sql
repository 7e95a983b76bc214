{#- Use the configured schema as-is (bronze / silver / gold), optionally prefixed per target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set prefix = env_var('RETAILPULSE_POSTGRES_SCHEMA_PREFIX', '') if target.type == 'postgres' else '' -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ prefix ~ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
