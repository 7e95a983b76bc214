{#- Portable helpers. Everything engine-specific goes through adapter.dispatch; the default__
    implementation is standard SQL (Postgres), duckdb__ the DuckDB variant. -#}

{#- A timestamptz as a timestamp without time zone in UTC (every *_at column in silver/gold is
    UTC without zone, so date functions never depend on the session time zone). -#}
{% macro to_utc(ts) -%}
    {{ return(adapter.dispatch('to_utc', 'retailpulse')(ts)) }}
{%- endmacro %}
{% macro default__to_utc(ts) -%}
    cast(({{ ts }}) at time zone 'UTC' as timestamp)
{%- endmacro %}
{% macro duckdb__to_utc(ts) -%}
    cast(timezone('UTC', {{ ts }}) as timestamp)
{%- endmacro %}

{#- Seconds since the Unix epoch of a UTC timestamp (without zone). -#}
{% macro epoch_seconds(ts) -%}
    {{ dbt.datediff("cast('1970-01-01 00:00:00' as timestamp)", ts, 'second') }}
{%- endmacro %}

{#- Fractional days between two UTC timestamps. -#}
{% macro days_between(first_ts, second_ts) -%}
    (cast({{ dbt.datediff(first_ts, second_ts, 'second') }} as {{ type_double() }}) / 86400.0)
{%- endmacro %}

{% macro regexp_like(value, pattern) -%}
    {{ return(adapter.dispatch('regexp_like', 'retailpulse')(value, pattern)) }}
{%- endmacro %}
{% macro default__regexp_like(value, pattern) -%}
    coalesce(({{ value }}) ~ '{{ pattern }}', false)
{%- endmacro %}
{% macro duckdb__regexp_like(value, pattern) -%}
    coalesce(regexp_matches({{ value }}, '{{ pattern }}'), false)
{%- endmacro %}

{#- Replace every match of a regular expression (same syntax on both engines). -#}
{% macro regexp_replace_all(value, pattern, replacement) -%}
    regexp_replace({{ value }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}

{#- Lower-case hex SHA-256 of a text value (null stays null). -#}
{% macro sha256_hex(value) -%}
    {{ return(adapter.dispatch('sha256_hex', 'retailpulse')(value)) }}
{%- endmacro %}
{% macro default__sha256_hex(value) -%}
    encode(sha256(convert_to({{ value }}, 'UTF8')), 'hex')
{%- endmacro %}
{% macro duckdb__sha256_hex(value) -%}
    sha256({{ value }})
{%- endmacro %}

{#- Edit distance between two strings. Postgres uses fuzzystrmatch when it is installed (the
    on-run-start hook tries to create it); without it a coarse fallback: 0 when equal, 1 when
    the first three letters match and the lengths differ by at most one, else 99. -#}
{% macro edit_distance(a, b) -%}
    {{ return(adapter.dispatch('edit_distance', 'retailpulse')(a, b)) }}
{%- endmacro %}
{% macro duckdb__edit_distance(a, b) -%}
    levenshtein({{ a }}, {{ b }})
{%- endmacro %}
{% macro default__edit_distance(a, b) -%}
    {%- set schema = none -%}
    {%- if execute -%}
        {%- set found = run_query(
            "select n.nspname from pg_proc as p join pg_namespace as n on p.pronamespace = n.oid "
            ~ "where p.proname = 'levenshtein' and p.pronargs = 2 order by n.nspname limit 1") -%}
        {%- if found.rows | length > 0 -%}
            {%- set schema = found.columns[0].values()[0] -%}
        {%- endif -%}
    {%- endif -%}
    {%- if schema -%}
        {{ adapter.quote(schema) }}.levenshtein({{ a }}, {{ b }})
    {%- else -%}
        case
            when {{ a }} = {{ b }} then 0
            when left({{ a }}, 3) = left({{ b }}, 3) and abs(length({{ a }}) - length({{ b }})) <= 1 then 1
            else 99
        end
    {%- endif -%}
{%- endmacro %}

{#- Cast a date-like column (a date, or ISO text on engines that landed it as text). -#}
{% macro to_date(value) -%}
    cast(cast({{ value }} as {{ dbt.type_string() }}) as date)
{%- endmacro %}

{#- The first day of the month of a date or timestamp, as a date. -#}
{% macro month_start(value) -%}
    cast({{ dbt.date_trunc('month', value) }} as date)
{%- endmacro %}

{#- One row per day from start to end (inclusive), column date_day (date). Both engines have a
    set-returning generate_series over timestamps. -#}
{% macro day_spine(start_date, end_date) -%}
    select cast(spine.day_ts as date) as date_day
    from generate_series(
        cast({{ start_date }} as timestamp),
        cast({{ end_date }} as timestamp),
        interval '1 day'
    ) as spine (day_ts)
{%- endmacro %}

{#- Amount in minor units (cents) -> major units in the reporting currency, given the row's
    conversion factor from int_fx_rates. -#}
{% macro minor_to_reporting(amount_minor, rate_to_reporting) -%}
    (cast({{ amount_minor }} as {{ dbt.type_numeric() }}) / 100.0 * {{ rate_to_reporting }})
{%- endmacro %}

{#- Deduplicate a bronze relation to the latest landed version per key: the row from the latest
    interval (source time observed), then the latest source modification, then the latest load.

    Most keys are landed once: those rows pass straight through, and only the rows of keys
    landed more than once are ranked by the window. A window over every row carries all
    columns through a sort (the GA4 staging view took ~40 s of CPU at the medium world, paid by
    every model and test reading it); this form is the same rows, and a filter on the view
    (e.g. an incremental model's date window) reaches the table scan. -#}
{% macro latest_version(relation, key, modified_at=none) -%}
    select landed.*, cast(1 as {{ dbt.type_bigint() }}) as version_rank
    from {{ relation }} as landed
    {#- an anti-join, not "not in": Postgres plans a large "not in" subquery row by row #}
    left join ({{ _rp_landed_more_than_once(relation, key) }}) as landed_again
        on landed_again.rp_landed_key = {{ key }}
    where {{ key }} is not null
        and landed_again.rp_landed_key is null
    union all
    select *
    from (
        select
            landed.*,
            row_number() over (
                partition by {{ key }}
                order by _interval_end desc{% if modified_at %}, {{ modified_at }} desc{% endif %}, _loaded_at desc, _row_number desc
            ) as version_rank
        from {{ relation }} as landed
        where {{ key }} in ({{ _rp_landed_more_than_once(relation, key) }})
    ) as versions
    where version_rank = 1
{%- endmacro %}

{% macro _rp_landed_more_than_once(relation, key) -%}
    select {{ key }} as rp_landed_key from {{ relation }} where {{ key }} is not null group by {{ key }} having count(*) > 1
{%- endmacro %}

{#- 8-byte floating point on every engine (type_double() is a 4-byte REAL on DuckDB). -#}
{% macro type_double() -%}
    double precision
{%- endmacro %}

{#- Aggregate: the value of the group's first row by `order_by` (a list of expressions, ascending;
    they must order the rows totally) among the rows where `condition` holds and the value is
    not null. With skip_nulls=false, the value of the first row by `order_by` (null or not) among
    the rows where `condition` holds. Null when no row qualifies.

    One pass of a grouped aggregate instead of a first_value window (which sorts the rows once
    per window definition): the GA4 sessions model takes six such "first" values per session. -#}
{% macro first_by(value, order_by, condition=none, skip_nulls=true) -%}
    {{ return(adapter.dispatch('first_by', 'retailpulse')(value, order_by, condition, skip_nulls)) }}
{%- endmacro %}
{% macro _rp_first_by_filter(value, condition, skip_nulls) -%}
    {%- set conds = [] -%}
    {%- if condition -%}{%- do conds.append('(' ~ condition ~ ')') -%}{%- endif -%}
    {%- if skip_nulls -%}{%- do conds.append('(' ~ value ~ ') is not null') -%}{%- endif -%}
    {%- if conds %} filter (where {{ conds | join(' and ') }}){% endif -%}
{%- endmacro %}
{% macro default__first_by(value, order_by, condition, skip_nulls) -%}
    (array_agg({{ value }} order by {{ order_by | join(', ') }}){{ _rp_first_by_filter(value, condition, skip_nulls) }})[1]
{%- endmacro %}
{% macro duckdb__first_by(value, order_by, condition, skip_nulls) -%}
    {{ 'arg_min' if skip_nulls else 'arg_min_null' }}({{ value }}, row({{ order_by | join(', ') }})){{ _rp_first_by_filter(value, condition, skip_nulls) }}
{%- endmacro %}

{#- In an incremental run: the first day an incremental model re-processes, `lookback` days
    before the latest `date_column` already in the model ({{ this }}), as a date literal. It is
    looked up before the model's query runs so that the engine filters the scan with a constant
    (a subquery in the filter is planned as a join after every row has been read and projected).
    1900-01-01 when the model is empty. -#}
{% macro incremental_cutoff_date(date_column, lookback) -%}
    cast('{{ incremental_cutoff_day(date_column, lookback) }}' as date)
{%- endmacro %}

{#- The day of incremental_cutoff_date as text, YYYY-MM-DD. -#}
{% macro incremental_cutoff_day(date_column, lookback) -%}
    {%- set value = none -%}
    {%- if execute -%}
        {%- set sql -%}
            select cast({{ dbt.dateadd('day', -lookback, 'max(' ~ date_column ~ ')') }} as date) from {{ this }}
        {%- endset -%}
        {%- set value = run_query(sql).columns[0].values()[0] -%}
    {%- endif -%}
    {{- (value | string)[:10] if value is not none else "1900-01-01" -}}
{%- endmacro %}

{#- True when `relation` exists with column `column` (case-insensitive). An incremental model that
    reads a column of {{ this }} which an older version of the model did not write checks it
    first: on the first run after an upgrade the column is missing until dbt appends it, so the
    model computes that run like a full refresh. -#}
{% macro relation_has_column(relation, column) -%}
    {%- if not execute -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    {{- return(column | lower in names) -}}
{%- endmacro %}

{#- A 64-bit hash of a text value, for fingerprints that only need to change when the value does
    (DuckDB: hash; Postgres: hashtextextended, 11+). Not stable across engine versions: a
    fingerprint stored by another version only causes a recomputation. -#}
{% macro text_hash64(expr) -%}
    {%- if target.type == 'postgres' -%}
        hashtextextended({{ expr }}, 0)
    {%- else -%}
        hash({{ expr }})
    {%- endif -%}
{%- endmacro %}

{#- The values of ``columns`` as one text that differs whenever one of them does: each value as
    text prefixed by its length (so values holding the separator cannot shift into a neighbour),
    NULL as '-'. For row fingerprints (text_hash64 of it). -#}
{% macro row_text(columns) -%}
    {%- for c in columns -%}
        coalesce(cast(length(cast({{ c }} as {{ dbt.type_string() }})) as {{ dbt.type_string() }}) || ':'
            || cast({{ c }} as {{ dbt.type_string() }}), '-')
        {%- if not loop.last %} || '|' || {% endif -%}
    {%- endfor -%}
{%- endmacro %}

{#- A 64-bit hash of the values of ``columns`` (a row fingerprint; NULLs and positions count).
    DuckDB: hash() of the columns themselves (no text is built); Postgres: hashtextextended of
    row_text(columns). Not stable across engine versions (as text_hash64). -#}
{% macro row_hash64(columns) -%}
    {%- if target.type == 'postgres' -%}
        hashtextextended({{ row_text(columns) }}, 0)
    {%- else -%}
        hash({{ columns | join(', ') }})
    {%- endif -%}
{%- endmacro %}

{#- Post-hook of an incremental model that keeps only rows whose ``key`` is still in ``source``
    (a relation upstream): after an incremental run, delete the rows of ``this`` whose key left
    it. Nothing on a full build (the model was rebuilt from ``source``). -#}
{% macro delete_rows_missing_from(source, key) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where not exists (
            select 1 from {{ source }} as kept where kept.{{ key }} = {{ this.identifier }}.{{ key }}
        )
    {%- endif -%}
{%- endmacro %}
