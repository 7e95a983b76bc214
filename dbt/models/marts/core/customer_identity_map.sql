-- Every source identifier and the customer it resolved to, with the rule that matched and its
-- confidence. E-mails appear only as SHA-256 of the normalised address (no raw PII in gold).
--
-- Incremental: int_identity__resolved writes an identifier's row only when its resolution
-- changed (changed_at = that run's start), so a run maps again only the identifiers changed after
-- the newest changed_at already here (a run that failed before this model is caught up by the
-- next), and deletes the identifiers that left the graph (post-hook); every other row is the one
-- a full refresh would write. changed_at is carried as is: when the identifier's resolution last
-- changed (a full refresh of the identity models sets it to that run for every identifier).
{{
    config(
        materialized='incremental',
        unique_key='identifier_key',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_rows_missing_from('(select ' ~ identity_map_key('identifier_type', 'identifier_value') ~ ' as identifier_key from ' ~ ref('int_identity__resolved') ~ ')', 'identifier_key') }}"]
    )
}}

with resolved as (
    select * from {{ ref('int_identity__resolved') }}
    {% if is_incremental() and relation_has_column(this, 'changed_at') %}
    where changed_at > (
        select coalesce(max(changed_at), cast('1900-01-01' as {{ dbt.type_timestamp() }})) from {{ this }}
    )
    {% endif %}
),

shaped as (
    select
        identifier_type,
        {{ identity_map_value('identifier_type', 'identifier_value') }} as identifier_value,
        identifier_type = 'email' as is_hashed,
        customer_id,
        match_rule,
        cast(match_confidence as {{ type_double() }}) as match_confidence,
        customer_id is null as is_anonymous,
        first_seen_at,
        changed_at
    from resolved
)

select
    identifier_type || ':' || identifier_value as identifier_key,
    shaped.*
from shaped
