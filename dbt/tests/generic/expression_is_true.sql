{#- Fails for rows where the boolean SQL expression is false (on the model, or on a column). -#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not coalesce(({{ expression }}), false)
{% endtest %}
