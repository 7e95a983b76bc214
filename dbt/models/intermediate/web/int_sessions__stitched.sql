-- GA4 sessions stitched to the resolved customer: through the session's user_id (logged in),
-- else through the device (user_pseudo_id), which covers the anonymous sessions of a device
-- before its first login. Country normalised to ISO codes.
{{ config(materialized='table') }}

with sessions as (
    select * from {{ ref('int_ga4__sessions') }}
),

identity as (
    select node_id, customer_id from {{ ref('int_identity__resolved') }}
    where customer_id is not null
),

countries as (
    -- lookup by ISO code or by English name
    select upper(country_code) as country_key, upper(country_code) as country_code from {{ ref('countries') }}
    union
    select upper(country_name), upper(country_code) from {{ ref('countries') }}
)

select
    sessions.*,
    coalesce(by_user.customer_id, by_device.customer_id) as customer_id,
    case
        when by_user.customer_id is not null then 'user_id'
        when by_device.customer_id is not null then 'device'
    end as stitched_by,
    coalesce(countries.country_code, upper(sessions.country)) as country_code
from sessions
left join identity as by_user on by_user.node_id = 'ga4_user_id:' || sessions.user_id
left join identity as by_device on by_device.node_id = 'ga4_user_pseudo_id:' || sessions.user_pseudo_id
left join countries on upper(sessions.country) = countries.country_key
