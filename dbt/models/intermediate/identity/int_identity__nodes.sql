-- Every identifier in the identity graph, with the key that picks a component's anchor: the
-- smallest label_key = tier (1 source records and login ids, 2 e-mails, 3 devices), then the
-- first-seen day, then the source (Stripe, CRM, imported logs before GA4 login ids), then the
-- first-seen time, then the id. So a person's customer_id (a hash of the anchor) stays the same
-- as new data arrives, as long as their earliest record stays theirs; the day comes before the
-- source so that a GA4 login landed late (the export re-reads 3 days) cannot displace the Stripe
-- or CRM record the same person created that day. Fixed width: 1 + 12 + 1 + 12 characters, then
-- the node id (int_identity__resolved strips the first 26).
{{ config(materialized='table') }}

with records as (
    select node_id, record_type as identifier_type, record_id as identifier_value, created_at as first_seen_at
    from {{ ref('int_identity__records') }}
),

devices as (
    select * from {{ ref('int_identity__ga4_devices') }}
),

user_ids as (
    select 'ga4_user_id:' || login_user_id as node_id, 'ga4_user_id' as identifier_type,
        login_user_id as identifier_value, user_id_first_seen_at as first_seen_at
    from devices
    where login_user_id is not null
    union all
    select 'ga4_user_id:' || web_user_id, 'ga4_user_id', web_user_id, created_at
    from {{ ref('int_identity__records') }}
    where web_user_id is not null
),

emails as (
    select 'email:' || email_normalized as node_id, 'email' as identifier_type,
        email_normalized as identifier_value, created_at as first_seen_at
    from {{ ref('int_identity__records') }}
    where email_normalized is not null
    union all
    -- imported transaction logs that identify customers by e-mail
    select 'email:' || lower(trim(customer_ref)), 'email', lower(trim(customer_ref)), ordered_at
    from {{ ref('stg_transactions__imported_transactions') }}
    where customer_ref like '%_@_%._%'
),

device_nodes as (
    select 'ga4_user_pseudo_id:' || user_pseudo_id as node_id, 'ga4_user_pseudo_id' as identifier_type,
        user_pseudo_id as identifier_value, first_seen_at
    from devices
),

edge_nodes as (
    -- ids referenced by a link but never landed themselves (e.g. a Stripe id typed into the CRM)
    select node_b as node_id from {{ ref('int_identity__edges') }}
    union
    select node_a from {{ ref('int_identity__edges') }}
),

dangling as (
    select
        edge_nodes.node_id,
        {{ dbt.split_part('edge_nodes.node_id', "':'", 1) }} as identifier_type,
        substr(edge_nodes.node_id, length({{ dbt.split_part('edge_nodes.node_id', "':'", 1) }}) + 2) as identifier_value,
        cast(null as timestamp) as first_seen_at
    from edge_nodes
),

all_nodes as (
    select * from records
    union all
    select * from user_ids
    union all
    select * from emails
    union all
    select * from device_nodes
    union all
    select * from dangling
),

nodes as (
    select node_id, min(identifier_type) as identifier_type, min(identifier_value) as identifier_value,
        min(first_seen_at) as first_seen_at
    from all_nodes
    group by node_id
)

select
    node_id,
    identifier_type,
    identifier_value,
    first_seen_at,
    case
        when identifier_type = 'email' then '2'
        when identifier_type = 'ga4_user_pseudo_id' then '3'
        else '1'
    end
    || lpad(cast(coalesce({{ epoch_seconds(dbt.date_trunc('day', 'first_seen_at')) }}, 99999999999)
        as {{ dbt.type_string() }}), 12, '0')
    || case identifier_type
        when 'stripe_customer' then '1'
        when 'sf_contact' then '2'
        when 'imported_customer' then '3'
        when 'sf_lead' then '4'
        else '5'
    end
    || lpad(cast(coalesce({{ epoch_seconds('first_seen_at') }}, 99999999999) as {{ dbt.type_string() }}), 12, '0')
    || node_id as label_key
from nodes
