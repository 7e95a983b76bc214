{#- on-run-start: make sure every relation dbt reads but does not build exists.

    1. Bronze source tables that no connector has created yet (a source that is not configured,
       or whose connector has not landed) are created EMPTY with the columns declared in the
       sources .yml (the bronze contract), so the project always builds; ingestion's loader
       adds drift columns later as usual. Existing tables are never touched.
    2. The ML write-back tables (gold.customer_scores, gold.attribution_channel_weights, the
       segments) are created empty, so dim_customers / fct_attribution can read them before the
       first ML run.
    3. Postgres: try to enable fuzzystrmatch (levenshtein) for the fuzzy identity rules; without
       the privilege the edit_distance macro falls back to a coarse comparison. -#}

{% macro rp_column_type(logical) -%}
    {%- set t = (logical or 'text') | lower -%}
    {%- if target.type == 'postgres' -%}
        {{ return({'text': 'text', 'double': 'double precision', 'bigint': 'bigint', 'boolean': 'boolean',
                   'timestamptz': 'timestamptz', 'timestamp': 'timestamp', 'date': 'date'}.get(t, t)) }}
    {%- else -%}
        {{ return({'text': 'varchar', 'double': 'double', 'bigint': 'bigint', 'boolean': 'boolean',
                   'timestamptz': 'timestamptz', 'timestamp': 'timestamp', 'date': 'date'}.get(t, t)) }}
    {%- endif -%}
{%- endmacro %}

{% macro rp_create_declared_sources() -%}
    {%- set statements = [] -%}
    {%- if execute -%}
        {%- set schemas = [] -%}
        {%- for node in graph.sources.values() if node.package_name == project_name -%}
            {%- if node.meta.get('create_if_missing') and node.columns -%}
                {%- if node.schema not in schemas -%}
                    {%- do schemas.append(node.schema) -%}
                    {%- do statements.append('create schema if not exists ' ~ adapter.quote(node.schema)) -%}
                {%- endif -%}
                {%- set cols = [] -%}
                {%- for col in node.columns.values() -%}
                    {%- do cols.append(adapter.quote(col.name) ~ ' ' ~ rp_column_type(col.data_type)) -%}
                {%- endfor -%}
                {%- if node.meta.get('bronze_metadata') -%}
                    {%- for name, logical in [('_interval_key', 'text'), ('_batch_id', 'text'),
                                              ('_interval_start', 'timestamptz'), ('_interval_end', 'timestamptz'),
                                              ('_extracted_at', 'timestamptz'), ('_row_number', 'bigint'),
                                              ('_loaded_at', 'timestamptz')] -%}
                        {%- if name not in node.columns -%}
                            {%- do cols.append(adapter.quote(name) ~ ' ' ~ rp_column_type(logical)) -%}
                        {%- endif -%}
                    {%- endfor -%}
                {%- endif -%}
                {%- do statements.append('create table if not exists ' ~ adapter.quote(node.schema) ~ '.'
                                         ~ adapter.quote(node.identifier) ~ ' (' ~ cols | join(', ') ~ ')') -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if target.type == 'postgres' -%}
        {%- do statements.append("do $$ begin create extension if not exists fuzzystrmatch; "
                                 ~ "exception when others then null; end $$") -%}
    {%- endif -%}
    {{ statements | join(';\n') if statements else 'select 1' }}
{%- endmacro %}
