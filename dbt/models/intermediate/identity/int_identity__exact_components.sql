-- Connected components of the deterministic identity graph (min-label propagation over
-- int_identity__edges): exact_label = the smallest label_key of the node's component.
{{ config(materialized='table') }}

with components as (
    {{ connected_components(ref('int_identity__nodes'), ref('int_identity__edges'), var('identity_propagation_rounds')) }}
)

select
    components.node_id,
    components.component_label as exact_label
from components
