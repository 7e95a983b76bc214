-- One row per imported transaction: the latest import of it. Transactions without an id get
-- a deterministic one from (customer, time, amount).
with landed as (
    select
        *,
        coalesce(
            nullif(trim(transaction_id), ''),
            'imp_' || {{ dbt.hash(dbt.concat([
                "coalesce(customer_ref, '')", "'|'",
                "cast(" ~ to_utc('ordered_at') ~ " as " ~ dbt.type_string() ~ ")", "'|'",
                "cast(amount as " ~ dbt.type_string() ~ ")"])) }}
        ) as order_key
    from {{ source('transactions', 'transactions__imported') }}
),

latest as (
    {{ latest_version('landed', 'order_key') }}
)

select
    order_key as order_id,
    nullif(trim(customer_ref), '') as customer_ref,
    {{ to_utc('ordered_at') }} as ordered_at,
    cast(amount as {{ type_double() }}) as amount,
    upper(coalesce(nullif(trim(currency), ''), '{{ var("reporting_currency") }}')) as currency,
    quantity,
    coalesce(is_return, amount < 0) as is_return,
    country,
    source_file,
    _interval_key as import_batch
from latest
where ordered_at is not null and amount is not null
    and coalesce(import_status, 'ok') = 'ok'
