{#- Identity helpers: normalisation of identifiers and connected components over an edge list. -#}

{#- E-mail as the identity key: trimmed and lower-cased; null when it is not an address. -#}
{% macro normalize_email(email) -%}
    case
        when {{ email }} like '%_@_%._%' then lower(trim({{ email }}))
    end
{%- endmacro %}

{#- A normalised e-mail with "+tag" sub-addressing removed from the local part
    (jane.doe+shop@x.com -> jane.doe@x.com): the same mailbox at every major provider. Used by
    the fuzzy rule email_local_part_variant. (Gmail also ignores dots, but dotted and undotted
    names are different people often enough that dots are kept.) -#}
{% macro email_canonical(email_normalized) -%}
    case when {{ email_normalized }} is not null then
        {{ dbt.split_part(dbt.split_part(email_normalized, "'@'", 1), "'+'", 1) }}
        || '@' || {{ dbt.split_part(email_normalized, "'@'", 2) }}
    end
{%- endmacro %}

{#- A name for comparison: lower case, letters only. -#}
{% macro normalize_name(name) -%}
    nullif({{ regexp_replace_all("lower(trim(" ~ name ~ "))", "[^a-z]", "") }}, '')
{%- endmacro %}

{#- Phone to E.164-ish text ("+<country code><national number>") given the record's country
    calling code, trunk prefix and national number length (from the countries seed).
    "+..." and "00..." are international already; a national number loses its trunk prefix
    ("0" in most of Europe, "1" in NANP) and gets the calling code. Without a country the
    digits are kept without "+" (they only match the same digits). Shorter than 7 digits: null. -#}
{% macro normalize_phone(phone, calling_code, trunk_prefix, nsn_length) -%}
    {%- set cleaned = regexp_replace_all("replace(" ~ phone ~ ", '(0)', '')", "[^0-9+]", "") -%}
    {%- set digits = regexp_replace_all(phone ~ "", "[^0-9]", "") -%}
    {%- set digits_clean = regexp_replace_all("replace(" ~ phone ~ ", '(0)', '')", "[^0-9]", "") -%}
    case
        when {{ phone }} is null or length({{ digits }}) < 7 then null
        when {{ cleaned }} like '+%' then '+' || {{ digits_clean }}
        when {{ digits }} like '00%' then '+' || substr({{ digits }}, 3)
        when {{ calling_code }} is null then {{ digits }}
        when {{ trunk_prefix }} is not null and {{ trunk_prefix }} <> ''
            and length({{ digits }}) = {{ nsn_length }} + length({{ trunk_prefix }})
            and substr({{ digits }}, 1, length({{ trunk_prefix }})) = {{ trunk_prefix }}
            then '+' || {{ calling_code }} || substr({{ digits }}, length({{ trunk_prefix }}) + 1)
        when length({{ digits }}) = {{ nsn_length }} + length({{ calling_code }})
            and substr({{ digits }}, 1, length({{ calling_code }})) = {{ calling_code }}
            then '+' || {{ digits }}
        else '+' || {{ calling_code }} || {{ digits }}
    end
{%- endmacro %}

{#- Connected components by iterative min-label propagation, unrolled into `rounds` CTEs.

    nodes_relation: one row per node (column node_id, and label_key: the text whose minimum
    becomes the component's label, e.g. a priority-prefixed identifier).
    edges_relation: node_a, node_b (undirected; self-loops unnecessary).
    Each round takes, for every node, the smallest label among itself and its neighbours; after
    `rounds` rounds every node in a component whose diameter is <= rounds carries the
    component's smallest label_key. Each round references the previous one once, so both
    engines plan it as a chain of joins + aggregates. The test identity_components_converged
    fails when `rounds` (var identity_propagation_rounds) is too small for the data. The rounds
    run over integer stand-ins for the ids and labels (numbered once, labels in label order), so
    their joins and aggregates stay small at a million people.
    Returns node_id, component_label. -#}
{% macro connected_components(nodes_relation, edges_relation, rounds) -%}
with cc_nodes as (
    select node_id, label_key from {{ nodes_relation }}
),

-- integers stand in for the text ids and labels during the rounds: the rounds' joins and
-- aggregates over integers need a fraction of the memory they need over text (16 rounds over
-- the text keys ran DuckDB out of memory at the large world). Label numbers follow the label
-- order, so the smallest number is the smallest label_key, as before.
cc_labels as (
    select label_key, row_number() over (order by label_key) as label_num
    from (select distinct label_key from cc_nodes where label_key is not null) as distinct_labels
),

cc_ids as (
    select all_ids.node_id, row_number() over (order by all_ids.node_id) as node_num
    from (
        select node_id from cc_nodes
        union
        select node_a from {{ edges_relation }} where node_a is not null
        union
        select node_b from {{ edges_relation }} where node_b is not null
    ) as all_ids
),

cc_edges as (
    select id_a.node_num as node_a, id_b.node_num as node_b
    from {{ edges_relation }} as edges
    inner join cc_ids as id_a on id_a.node_id = edges.node_a
    inner join cc_ids as id_b on id_b.node_id = edges.node_b
),

cc_node_labels as (
    select cc_ids.node_num, cc_labels.label_num
    from cc_nodes
    inner join cc_ids on cc_ids.node_id = cc_nodes.node_id
    left join cc_labels on cc_labels.label_key = cc_nodes.label_key
),

-- only nodes with an edge can change label: isolated nodes (most component labels in the
-- fuzzy stage, ~40% of identifiers in the exact one) skip the rounds and keep their own label
cc_linked as (
    select node_a as node_num from cc_edges
    union
    select node_b from cc_edges
),

cc_links as (
    select node_a as node_num, node_b as neighbour_num from cc_edges
    union all
    select node_b, node_a from cc_edges
    union all
    select node_num, node_num from cc_node_labels where node_num in (select node_num from cc_linked)
),

cc_round_0 as (
    select node_num, label_num from cc_node_labels
    where node_num in (select node_num from cc_linked)
),
{% for i in range(1, rounds + 1) %}
cc_round_{{ i }} as (
    select cc_links.node_num, min(previous.label_num) as label_num
    from cc_links
    inner join cc_round_{{ i - 1 }} as previous on previous.node_num = cc_links.neighbour_num
    group by cc_links.node_num
),
{% endfor %}

-- (an anti-join, not "not in": Postgres plans a large "not in" subquery row by row)
cc_isolated as (
    select cc_node_labels.node_num, cc_node_labels.label_num
    from cc_node_labels
    left join cc_linked on cc_linked.node_num = cc_node_labels.node_num
    where cc_linked.node_num is null
),

cc_result as (
    select node_num, label_num from cc_round_{{ rounds }}
    union all
    select node_num, label_num from cc_isolated
)

select cc_ids.node_id, cc_labels.label_key as component_label
from cc_result
inner join cc_ids on cc_ids.node_num = cc_result.node_num
left join cc_labels on cc_labels.label_num = cc_result.label_num
{%- endmacro %}

{#- gold.customer_identity_map's identifier_value (e-mails hashed: no raw PII in gold) and its
    key identifier_type:identifier_value, from an identifier's type and raw value (silver) -#}
{% macro identity_map_value(identifier_type, identifier_value) -%}
    case when {{ identifier_type }} = 'email' then {{ sha256_hex(identifier_value) }} else {{ identifier_value }} end
{%- endmacro %}

{% macro identity_map_key(identifier_type, identifier_value) -%}
    {{ identifier_type }} || ':' || {{ identity_map_value(identifier_type, identifier_value) }}
{%- endmacro %}
