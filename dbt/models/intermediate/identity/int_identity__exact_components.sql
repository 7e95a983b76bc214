-- Connected components of the deterministic identity graph (min-label propagation over
-- int_identity__edges): exact_label = the smallest label_key of the node's component.
--
-- Incremental: each row keeps the node's label_key and a fingerprint of its neighbours (their
-- number and the sum of 64-bit hashes of their ids). A run recomputes only the components the
-- previous run found that now hold a node whose label_key or neighbours changed or that
-- disappeared, plus the new nodes; every other component has the same nodes and links as before, so its label
-- stands. That set of nodes is closed under the links: a link from it to an untouched
-- component would be a new link (changing the neighbours of that component's node) or an old
-- one (the two were one component). Nodes no longer in the graph are deleted (post-hook).
-- Equal to a full refresh. (A table written by an older version, without the fingerprints, is
-- recomputed in full once.)
{{
    config(
        materialized='incremental',
        unique_key='node_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_rows_missing_from(ref('int_identity__nodes'), 'node_id') }}"]
    )
}}

with nodes as (
    select node_id, label_key from {{ ref('int_identity__nodes') }}
),

edges as (
    select node_a, node_b from {{ ref('int_identity__edges') }}
),

neighbour_ids as (
    select node_a as node_id, node_b as neighbour_id from edges
    union
    select node_b, node_a from edges
),

neighbours as (
    select
        node_id,
        cast(count(*) as {{ dbt.type_string() }}) || ':'
            || cast(sum({{ text_hash64('neighbour_id') }}) as {{ dbt.type_string() }}) as neighbours_fingerprint
    from neighbour_ids
    group by node_id
),

current_nodes as (
    select nodes.node_id, nodes.label_key, coalesce(neighbours.neighbours_fingerprint, '') as neighbours_fingerprint
    from nodes
    left join neighbours on neighbours.node_id = nodes.node_id
),

{% if is_incremental() and relation_has_column(this, 'neighbours_fingerprint') %}
previous as (
    select node_id, exact_label, label_key, neighbours_fingerprint from {{ this }}
),

-- components with a changed, new-neighboured or vanished node
changed_labels as (
    select previous.exact_label
    from previous
    left join current_nodes on current_nodes.node_id = previous.node_id
    where current_nodes.node_id is null
        or current_nodes.label_key is distinct from previous.label_key
        or current_nodes.neighbours_fingerprint is distinct from previous.neighbours_fingerprint
),

graph_nodes as (
    select current_nodes.node_id, current_nodes.label_key, current_nodes.neighbours_fingerprint
    from current_nodes
    left join previous on previous.node_id = current_nodes.node_id
    where previous.node_id is null
        or previous.exact_label in (select exact_label from changed_labels)
),

graph_edges as (
    select edges.node_a, edges.node_b
    from edges
    inner join graph_nodes on graph_nodes.node_id = edges.node_a
),
{% else %}
graph_nodes as (
    select * from current_nodes
),

graph_edges as (
    select node_a, node_b from edges
),
{% endif %}

components as (
    {{ connected_components('graph_nodes', 'graph_edges', var('identity_propagation_rounds')) }}
)

select
    components.node_id,
    components.component_label as exact_label,
    graph_nodes.label_key,
    graph_nodes.neighbours_fingerprint
from components
inner join graph_nodes on graph_nodes.node_id = components.node_id
