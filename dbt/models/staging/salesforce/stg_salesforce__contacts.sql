-- One row per Salesforce contact (latest version); deleted (merged) contacts kept with
-- is_deleted so current-state models can exclude them.
with latest as (
    {{ latest_version(source('salesforce', 'salesforce__contact'), 'id', 'systemmodstamp') }}
)

select
    id as contact_id,
    accountid as account_id,
    trim(firstname) as first_name,
    trim(lastname) as last_name,
    email,
    phone,
    mobilephone as mobile_phone,
    trim(mailingcountry) as mailing_country,
    coalesce(hasoptedoutofemail, false) as is_email_opted_out,
    leadsource as lead_source,
    nullif(trim(stripe_customer_id__c), '') as stripe_customer_id,
    nullif(trim(web_user_id__c), '') as web_user_id,
    coalesce(isdeleted, false) as is_deleted,
    {{ to_utc('createddate') }} as created_at,
    {{ to_utc('lastmodifieddate') }} as last_modified_at,
    {{ to_utc('systemmodstamp') }} as system_modstamp_at
from latest
