-- One row per source record that identifies a person (Stripe customer, CRM contact, CRM lead,
-- imported customer), with normalised identifiers and the attributes used by fuzzy matching
-- and survivorship. PII: silver only.
{{ config(materialized='table') }}

with country_rows as (
    select
        upper(country_code) as country_code,
        upper(country_name) as country_name_upper,
        cast(calling_code as {{ dbt.type_string() }}) as calling_code,
        cast(trunk_prefix as {{ dbt.type_string() }}) as trunk_prefix,
        cast(nsn_length as {{ dbt.type_int() }}) as nsn_length
    from {{ ref('countries') }}
),

countries as (
    -- lookup by ISO code or by English name
    select country_code as country_key, country_code, calling_code, trunk_prefix, nsn_length from country_rows
    union
    select country_name_upper, country_code, calling_code, trunk_prefix, nsn_length from country_rows
),

stripe_customers as (
    select
        'stripe_customer' as record_type,
        stripe_customer_id as record_id,
        email,
        phone,
        cast(null as {{ dbt.type_string() }}) as mobile_phone,
        -- Stripe keeps one name field: first word = first name, the rest = last name
        {{ dbt.split_part('trim(full_name)', "' '", 1) }} as first_name,
        trim(substr(trim(full_name), length({{ dbt.split_part('trim(full_name)', "' '", 1) }}) + 1)) as last_name,
        country_code as country_raw,
        cast(null as boolean) as is_email_opted_out,
        cast(null as {{ dbt.type_string() }}) as lead_source,
        cast(null as {{ dbt.type_string() }}) as web_user_id,
        cast(null as {{ dbt.type_string() }}) as linked_stripe_customer_id,
        cast(null as {{ dbt.type_string() }}) as converted_contact_id,
        false as is_deleted,
        created_at,
        created_at as updated_at
    from {{ ref('stg_stripe__customers') }}
),

contacts as (
    select
        'sf_contact',
        contact_id,
        email,
        phone,
        mobile_phone,
        first_name,
        last_name,
        mailing_country,
        is_email_opted_out,
        lead_source,
        web_user_id,
        stripe_customer_id,
        cast(null as {{ dbt.type_string() }}),
        is_deleted,
        created_at,
        system_modstamp_at
    from {{ ref('stg_salesforce__contacts') }}
),

leads as (
    select
        'sf_lead',
        lead_id,
        email,
        phone,
        cast(null as {{ dbt.type_string() }}),
        first_name,
        last_name,
        cast(null as {{ dbt.type_string() }}),
        is_email_opted_out,
        lead_source,
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        converted_contact_id,
        is_deleted,
        created_at,
        system_modstamp_at
    from {{ ref('stg_salesforce__leads') }}
),

imported as (
    select
        'imported_customer',
        customer_ref,
        case when customer_ref like '%_@_%._%' then customer_ref end,
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        cast(null as boolean),
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}),
        false,
        min(ordered_at),
        max(ordered_at)
    from {{ ref('stg_transactions__imported_transactions') }}
    where customer_ref is not null and customer_ref not like '%_@_%._%'
    group by customer_ref
),

records as (
    select * from stripe_customers
    union all
    select * from contacts
    union all
    select * from leads
    union all
    select * from imported
),

with_country as (
    select
        records.*,
        countries.country_code,
        countries.calling_code,
        countries.trunk_prefix,
        countries.nsn_length
    from records
    left join countries on upper(trim(records.country_raw)) = countries.country_key
),

normalised as (
    select
        record_type || ':' || record_id as node_id,
        record_type,
        record_id,
        {{ normalize_email('email') }} as email_normalized,
        {{ normalize_phone('phone', 'calling_code', 'trunk_prefix', 'nsn_length') }} as phone_normalized,
        {{ normalize_phone('mobile_phone', 'calling_code', 'trunk_prefix', 'nsn_length') }} as mobile_normalized,
        nullif(trim(first_name), '') as first_name,
        nullif(trim(last_name), '') as last_name,
        {{ normalize_name('first_name') }} as first_name_norm,
        {{ normalize_name('last_name') }} as last_name_norm,
        -- the whole name without separators ("CharlotteBecker" = "Charlotte Becker")
        {{ normalize_name("coalesce(first_name, '') || coalesce(last_name, '')") }} as full_name_norm,
        coalesce(country_code, upper(nullif(trim(country_raw), ''))) as country_code,
        is_email_opted_out,
        lead_source,
        web_user_id,
        linked_stripe_customer_id,
        converted_contact_id,
        is_deleted,
        created_at,
        updated_at
    from with_country
)

select
    normalised.*,
    {{ email_canonical('email_normalized') }} as email_canonical
from normalised
