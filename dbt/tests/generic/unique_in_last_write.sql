{#- `unique`, checked over the rows the model's last run wrote (column `written_at`, the run's
    start, equal on every row one run writes) -- for incremental models with the delete+insert
    strategy on this column as unique_key. There it is exact: the run first deletes every row
    whose key it writes, so a written row can only collide with another written row, and the
    older rows were checked by the run that wrote them. A full refresh writes every row, so it
    checks the whole table. Rows without `written_at` (written before the column existed) are
    older rows. Fails for every key written more than once by the last run. -#}
{% test unique_in_last_write(model, column_name, written_at) %}
select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
    and {{ written_at }} = (select max({{ written_at }}) from {{ model }})
group by {{ column_name }}
having count(*) > 1
{% endtest %}
