-- Every source identifier and the customer it resolved to, with the rule that matched and its
-- confidence. E-mails appear only as SHA-256 of the normalised address (no raw PII in gold).
with resolved as (
    select * from {{ ref('int_identity__resolved') }}
),

shaped as (
    select
        identifier_type,
        case
            when identifier_type = 'email' then {{ sha256_hex('identifier_value') }}
            else identifier_value
        end as identifier_value,
        identifier_type = 'email' as is_hashed,
        customer_id,
        match_rule,
        cast(match_confidence as {{ type_double() }}) as match_confidence,
        customer_id is null as is_anonymous,
        first_seen_at
    from resolved
)

select
    identifier_type || ':' || identifier_value as identifier_key,
    shaped.*
from shaped
