-- One row per Salesforce account (latest version); deleted accounts kept with is_deleted.
with latest as (
    {{ latest_version(source('salesforce', 'salesforce__account'), 'id', 'systemmodstamp') }}
)

select
    id as account_id,
    name as account_name,
    industry,
    billingcountry as billing_country,
    phone,
    website,
    type as account_type,
    coalesce(isdeleted, false) as is_deleted,
    {{ to_utc('createddate') }} as created_at,
    {{ to_utc('lastmodifieddate') }} as last_modified_at,
    {{ to_utc('systemmodstamp') }} as system_modstamp_at
from latest
