{#
  Columns that must never be NULL, checked in one pass over the model: one row per listed column
  that holds NULLs, with how many. It replaces one `not_null` test per column (dbt runs every test
  as its own node, some 30 ms each before any data is read: a daily build paid seconds for them).
  A failure names the columns (`column_name`) and their NULL counts (`null_rows`).
#}
{% test not_null_columns(model, column_names) %}
with null_counts as (
    select
        {%- for column in column_names %}
        sum(case when {{ column }} is null then 1 else 0 end) as nulls_{{ loop.index }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ model }}
)
{% for column in column_names %}
select '{{ column }}' as column_name, nulls_{{ loop.index }} as null_rows
from null_counts
where nulls_{{ loop.index }} > 0
{% if not loop.last %}union all{% endif %}
{% endfor %}
{% endtest %}
