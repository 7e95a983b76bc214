-- The resolved identity of every identifier: exact components joined by the fuzzy matches
-- (a second round of label propagation over components), customer_id = a hash of the final
-- anchor identifier. Components made only of devices that never logged in or bought stay
-- anonymous (customer_id null).
--
-- match_rule / match_confidence per identifier: within the anchor's exact component the rule
-- of its strongest deterministic link (or "anchor"), confidence 1.0; in a component joined by
-- a fuzzy match, that match's rule and confidence.
--
-- Incremental, and written only where it changed: every run resolves every identifier (above),
-- then writes the rows that differ from the previous run's (new identifiers, a changed customer,
-- rule or confidence, ...) with changed_at = the run's start, and deletes identifiers that are
-- no longer in the graph (post-hook). Rows that did not change keep their changed_at, so
-- int_sessions__stitched re-stitches only the sessions of identifiers changed since its own
-- last run. Equal to a full refresh.
{{
    config(
        materialized='incremental',
        unique_key='node_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_rows_missing_from(ref('int_identity__nodes'), 'node_id') }}"]
    )
}}
{% set resolved_columns = ['node_id', 'identifier_type', 'identifier_value', 'first_seen_at', 'customer_id',
    'anchor_node_id', 'exact_label', 'match_rule', 'match_confidence'] %}

with nodes as (
    select * from {{ ref('int_identity__nodes') }}
),

exact as (
    select * from {{ ref('int_identity__exact_components') }}
),

fuzzy as (
    select * from {{ ref('int_identity__fuzzy_matches') }}
),

-- only the components that a fuzzy match links take part in the second propagation: every
-- other component is alone in that graph and keeps its exact label (the coalesce below), so the
-- rounds and the id numbering run over thousands of labels instead of every component
component_nodes as (
    select label_a as node_id, label_a as label_key from fuzzy
    union
    select label_b, label_b from fuzzy
),

component_edges as (
    select label_a as node_a, label_b as node_b from fuzzy
),

merged as (
    {{ connected_components('component_nodes', 'component_edges', var('identity_propagation_rounds')) }}
),

best_fuzzy as (
    select label, match_rule, match_confidence
    from (
        select
            label,
            match_rule,
            match_confidence,
            row_number() over (partition by label order by match_confidence desc, match_rule) as rule_rank
        from (
            select label_a as label, match_rule, match_confidence from fuzzy
            union all
            select label_b, match_rule, match_confidence from fuzzy
        ) as incident
    ) as ranked
    where rule_rank = 1
),

edges as (
    select node_a as node_id, match_rule from {{ ref('int_identity__edges') }}
    union all
    select node_b, match_rule from {{ ref('int_identity__edges') }}
),

best_exact as (
    select node_id, match_rule
    from (
        select
            node_id,
            match_rule,
            row_number() over (
                partition by node_id
                order by case match_rule
                    when 'crm_stripe_customer_id' then 1
                    when 'crm_web_user_id' then 2
                    when 'lead_converted' then 3
                    when 'email_exact' then 4
                    when 'ga4_login' then 5
                    when 'ga4_purchase_order' then 6
                    else 9
                end, match_rule
            ) as rule_rank
        from edges
    ) as ranked
    where rule_rank = 1
),

resolved as (
    select
        nodes.node_id,
        nodes.identifier_type,
        nodes.identifier_value,
        nodes.first_seen_at,
        exact.exact_label,
        coalesce(merged.component_label, exact.exact_label) as customer_label,
        -- anchor = the label without its tier, first-seen day, source rank and first-seen epoch
        -- (1 + 12 + 1 + 12 characters, see int_identity__nodes)
        substr(coalesce(merged.component_label, exact.exact_label), 27) as anchor_node_id,
        substr(coalesce(merged.component_label, exact.exact_label), 1, 1) as anchor_tier
    from nodes
    inner join exact on nodes.node_id = exact.node_id
    left join merged on exact.exact_label = merged.node_id
),

resolved_rows as (
    select
        resolved.node_id,
        resolved.identifier_type,
        resolved.identifier_value,
        resolved.first_seen_at,
        case when resolved.anchor_tier <> '3' then {{ dbt.hash('resolved.anchor_node_id') }} end as customer_id,
        resolved.anchor_node_id,
        resolved.exact_label,
        case
            when resolved.anchor_tier = '3' then 'anonymous_device'
            when resolved.exact_label <> resolved.customer_label then coalesce(best_fuzzy.match_rule, 'fuzzy_chain')
            when resolved.node_id = resolved.anchor_node_id then 'anchor'
            else coalesce(best_exact.match_rule, 'anchor')
        end as match_rule,
        case
            when resolved.anchor_tier = '3' then null
            when resolved.exact_label <> resolved.customer_label then coalesce(best_fuzzy.match_confidence, 0.9)
            else 1.0
        end as match_confidence
    from resolved
    left join best_fuzzy on resolved.exact_label = best_fuzzy.label
    left join best_exact on resolved.node_id = best_exact.node_id
)

select
    resolved_rows.*,
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }}) as changed_at
from resolved_rows
{% if is_incremental() and relation_has_column(this, 'changed_at') %}
left join {{ this }} as previous on previous.node_id = resolved_rows.node_id
where previous.node_id is null
    {%- for c in resolved_columns if c != 'node_id' %}
    or previous.{{ c }} is distinct from resolved_rows.{{ c }}
    {%- endfor %}
{% endif %}
