-- One row per current (not deleted) Salesforce support case: the resolved customer, status,
-- priority, origin, type, open/closed and resolution time in hours.
with cases as (
    select * from {{ ref('stg_salesforce__cases') }}
    where not is_deleted
),

identity as (
    select node_id, customer_id from {{ ref('int_identity__resolved') }}
)

select
    cases.case_id,
    identity.customer_id,
    cases.contact_id,
    cases.account_id,
    cases.case_status,
    cases.priority,
    cases.origin,
    cases.case_type,
    cases.created_at,
    cast(cases.created_at as date) as created_date,
    case when cases.is_closed then cases.closed_at end as closed_at,
    cases.is_closed,
    not cases.is_closed as is_open,
    cases.case_status = 'Escalated' as is_escalated,
    case
        when cases.is_closed and cases.closed_at is not null
        then cast({{ dbt.datediff('cases.created_at', 'cases.closed_at', 'second') }} as {{ type_double() }}) / 3600.0
    end as resolution_hours,
    cases.last_modified_at
from cases
left join identity on identity.node_id = 'sf_contact:' || cases.contact_id
