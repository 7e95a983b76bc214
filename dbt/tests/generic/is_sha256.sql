{#- Fails for values that are not 64 lower-case hex characters (a SHA-256 digest, no raw PII). -#}
{% test is_sha256(model, column_name) %}
select *
from {{ model }}
where {{ column_name }} is not null
    and (length({{ column_name }}) <> 64 or not {{ regexp_like(column_name, '^[0-9a-f]{64}$') }})
{% endtest %}
