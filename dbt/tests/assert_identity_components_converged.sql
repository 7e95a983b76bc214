-- Label propagation ran enough rounds (var identity_propagation_rounds): both ends of every
-- deterministic link share an exact component, both ends of every fuzzy match share a customer.
select 'exact' as graph, edges.node_a, edges.node_b
from {{ ref('int_identity__edges') }} as edges
inner join {{ ref('int_identity__exact_components') }} as a on edges.node_a = a.node_id
inner join {{ ref('int_identity__exact_components') }} as b on edges.node_b = b.node_id
where a.exact_label <> b.exact_label
union all
select 'fuzzy', fuzzy.label_a, fuzzy.label_b
from {{ ref('int_identity__fuzzy_matches') }} as fuzzy
inner join (select distinct exact_label, customer_id from {{ ref('int_identity__resolved') }}) as a
    on fuzzy.label_a = a.exact_label
inner join (select distinct exact_label, customer_id from {{ ref('int_identity__resolved') }}) as b
    on fuzzy.label_b = b.exact_label
where a.customer_id <> b.customer_id
