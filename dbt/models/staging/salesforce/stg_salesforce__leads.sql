-- One row per Salesforce lead (latest version); deleted leads kept with is_deleted.
with latest as (
    {{ latest_version(source('salesforce', 'salesforce__lead'), 'id', 'systemmodstamp') }}
)

select
    id as lead_id,
    trim(firstname) as first_name,
    trim(lastname) as last_name,
    email,
    phone,
    company,
    status as lead_status,
    leadsource as lead_source,
    coalesce(isconverted, false) as is_converted,
    nullif(trim(convertedcontactid), '') as converted_contact_id,
    coalesce(hasoptedoutofemail, false) as is_email_opted_out,
    coalesce(isdeleted, false) as is_deleted,
    {{ to_utc('createddate') }} as created_at,
    {{ to_utc('lastmodifieddate') }} as last_modified_at,
    {{ to_utc('systemmodstamp') }} as system_modstamp_at
from latest
