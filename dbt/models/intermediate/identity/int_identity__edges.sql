-- Deterministic links between identifiers (each a node "<type>:<value>"), confidence 1.0:
--   email_exact             a record and its normalised e-mail (lower + trim)
--   crm_stripe_customer_id  a CRM contact and the Stripe customer in Stripe_Customer_Id__c
--   crm_web_user_id         a CRM contact and the shop login id in Web_User_Id__c (= GA4 user_id)
--   lead_converted          a converted lead and its contact
--   ga4_login               a device (user_pseudo_id) and the one user_id it sent
--   ga4_purchase_order      a device and the Stripe customer who paid the order it purchased
-- Identifiers carried by more than var identity_max_records_per_identifier records (shared
-- inboxes, test data) and devices that sent several user_ids never link.
{{ config(materialized='table') }}

{% set max_records = var('identity_max_records_per_identifier') %}

with records as (
    select * from {{ ref('int_identity__records') }}
),

devices as (
    select * from {{ ref('int_identity__ga4_devices') }}
),

shared_emails as (
    select email_normalized
    from records
    where email_normalized is not null
    group by email_normalized
    having count(*) > {{ max_records }}
),

shared_user_ids as (
    select web_user_id
    from records
    where web_user_id is not null
    group by web_user_id
    having count(*) > {{ max_records }}
),

purchases as (
    select distinct events.user_pseudo_id, payments.stripe_customer_id
    from {{ ref('int_ga4__events') }} as events
    inner join {{ ref('int_orders__payments') }} as payments on events.transaction_id = payments.order_id
    where events.event_name = 'purchase' and payments.stripe_customer_id is not null
),

edges as (
    select node_id as node_a, 'email:' || email_normalized as node_b, 'email_exact' as match_rule
    from records
    where email_normalized is not null
        and email_normalized not in (select email_normalized from shared_emails)
    union all
    select node_id, 'stripe_customer:' || linked_stripe_customer_id, 'crm_stripe_customer_id'
    from records
    where record_type = 'sf_contact' and linked_stripe_customer_id is not null
    union all
    select node_id, 'ga4_user_id:' || web_user_id, 'crm_web_user_id'
    from records
    where record_type = 'sf_contact' and web_user_id is not null
        and web_user_id not in (select web_user_id from shared_user_ids)
    union all
    select node_id, 'sf_contact:' || converted_contact_id, 'lead_converted'
    from records
    where record_type = 'sf_lead' and converted_contact_id is not null
    union all
    select 'ga4_user_pseudo_id:' || user_pseudo_id, 'ga4_user_id:' || login_user_id, 'ga4_login'
    from devices
    where login_user_id is not null
    union all
    select 'ga4_user_pseudo_id:' || purchases.user_pseudo_id, 'stripe_customer:' || purchases.stripe_customer_id,
        'ga4_purchase_order'
    from purchases
    inner join devices on purchases.user_pseudo_id = devices.user_pseudo_id
    where devices.user_id_count <= 1
)

select distinct node_a, node_b, match_rule
from edges
where node_a <> node_b
