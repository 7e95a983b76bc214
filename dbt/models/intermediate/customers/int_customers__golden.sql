-- The golden record of every resolved customer (PII: silver only). Survivorship rules:
--   e-mail, name, phone  the most recently modified non-deleted CRM contact that has one, else
--                        the latest CRM lead, else the latest Stripe customer (CRM > Stripe)
--   country              CRM contact mailing country, else Stripe address country
--   consent              opted out of e-mail if ANY current CRM contact or lead says so
--   lead source          the earliest CRM contact's LeadSource, else the earliest lead's
-- Deleted (merged) CRM records are excluded from every rule.
{{ config(materialized='table') }}

with identity as (
    select node_id, customer_id from {{ ref('int_identity__resolved') }}
    where customer_id is not null
),

records as (
    select
        identity.customer_id,
        records.*,
        case records.record_type
            when 'sf_contact' then 1
            when 'sf_lead' then 2
            when 'stripe_customer' then 3
            else 4
        end as source_priority
    from {{ ref('int_identity__records') }} as records
    inner join identity on records.node_id = identity.node_id
    where not records.is_deleted
),

ranked as (
    select
        records.*,
        row_number() over (
            partition by customer_id
            order by case when email_normalized is null then 1 else 0 end, source_priority, updated_at desc, node_id
        ) as email_rank,
        row_number() over (
            partition by customer_id
            order by case when first_name is null and last_name is null then 1 else 0 end,
                source_priority, updated_at desc, node_id
        ) as name_rank,
        row_number() over (
            partition by customer_id
            order by case when coalesce(mobile_normalized, phone_normalized) is null then 1 else 0 end,
                source_priority, updated_at desc, node_id
        ) as phone_rank,
        row_number() over (
            partition by customer_id
            order by case when country_code is null then 1 else 0 end,
                source_priority, updated_at desc, node_id
        ) as country_rank,
        row_number() over (
            partition by customer_id
            order by case when lead_source is null then 1 else 0 end,
                source_priority, created_at, node_id
        ) as lead_source_rank
    from records
),

per_customer as (
    select
        customer_id,
        max(case when email_rank = 1 then email_normalized end) as email,
        max(case when name_rank = 1 then first_name end) as first_name,
        max(case when name_rank = 1 then last_name end) as last_name,
        max(case when phone_rank = 1 then coalesce(mobile_normalized, phone_normalized) end) as phone,
        max(case when country_rank = 1 then country_code end) as country_code,
        max(case when lead_source_rank = 1 then lead_source end) as crm_lead_source,
        max(case when is_email_opted_out then 1 else 0 end) = 1 as is_email_opted_out,
        max(case when record_type = 'sf_contact' then 1 else 0 end) = 1 as has_crm_contact,
        max(case when record_type = 'sf_lead' then 1 else 0 end) = 1 as has_crm_lead,
        max(case when record_type = 'stripe_customer' then 1 else 0 end) = 1 as has_stripe_customer,
        sum(case when record_type = 'sf_contact' then 1 else 0 end) as crm_contacts,
        sum(case when record_type = 'stripe_customer' then 1 else 0 end) as stripe_customers,
        min(created_at) as first_record_at
    from ranked
    group by customer_id
)

select
    per_customer.*,
    {{ sha256_hex('per_customer.email') }} as email_sha256
from per_customer
