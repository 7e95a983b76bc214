-- One row per Salesforce support case (latest version); deleted cases kept with is_deleted.
with latest as (
    {{ latest_version(source('salesforce', 'salesforce__case'), 'id', 'systemmodstamp') }}
)

select
    id as case_id,
    contactid as contact_id,
    accountid as account_id,
    subject,
    status as case_status,
    priority,
    origin,
    type as case_type,
    coalesce(isclosed, false) as is_closed,
    {{ to_utc('closeddate') }} as closed_at,
    coalesce(isdeleted, false) as is_deleted,
    {{ to_utc('createddate') }} as created_at,
    {{ to_utc('lastmodifieddate') }} as last_modified_at,
    {{ to_utc('systemmodstamp') }} as system_modstamp_at
from latest
