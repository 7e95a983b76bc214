-- No raw e-mail address in gold: identity values and hashed columns never contain "@".
select 'customer_identity_map' as model, identifier_key as value
from {{ ref('customer_identity_map') }}
where identifier_value like '%@%'
union all
select 'dim_customers', customer_id
from {{ ref('dim_customers') }}
where email_sha256 like '%@%'
