-- Every customer with a paid order (up to the RFM as-of date) has exactly one RFM row and segment.
with buyers as (
    select distinct customer_id
    from {{ ref('fct_orders') }}
    where is_paid and customer_id is not null
        and order_date <= (select max(as_of_date) from {{ ref('customer_rfm') }})
)

select buyers.customer_id, rfm.customer_id as rfm_customer_id
from buyers
full outer join {{ ref('customer_rfm') }} as rfm on buyers.customer_id = rfm.customer_id
where buyers.customer_id is null or rfm.customer_id is null
