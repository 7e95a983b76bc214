-- RFM per customer with at least one paid order, as of var rfm_as_of_date (default: the last
-- order date in the data, so a re-run over the same data gives the same scores).
-- Scores 1-5 by ntile (5 = best: most recent, most orders, most revenue); customers tied on
-- the raw value share the lowest tile of the tie, so e.g. every one-order customer has the same
-- frequency score. Segments follow the usual R x F grid.
with orders as (
    select * from {{ ref('int_orders') }}
    where (is_paid or is_return) and customer_id is not null
),

as_of as (
    select
        {% if var('rfm_as_of_date') %}
            cast('{{ var("rfm_as_of_date") }}' as date)
        {% else %}
            max(cast(ordered_at as date))
        {% endif %} as as_of_date
    from {{ ref('int_orders') }}
),

per_customer as (
    select
        orders.customer_id,
        max(case when orders.is_paid then cast(orders.ordered_at as date) end) as last_order_date,
        min(case when orders.is_paid then cast(orders.ordered_at as date) end) as first_order_date,
        sum(case when orders.is_paid then 1 else 0 end) as frequency,
        sum(orders.net_revenue) as monetary
    from orders
    cross join as_of
    where cast(orders.ordered_at as date) <= as_of.as_of_date
    group by orders.customer_id
    having sum(case when orders.is_paid then 1 else 0 end) > 0
),

measured as (
    select
        per_customer.*,
        as_of.as_of_date,
        {{ dbt.datediff('per_customer.last_order_date', 'as_of.as_of_date', 'day') }} as recency_days
    from per_customer
    cross join as_of
),

tiles as (
    select
        measured.*,
        ntile(5) over (order by recency_days desc, customer_id) as recency_tile,
        ntile(5) over (order by frequency, customer_id) as frequency_tile,
        ntile(5) over (order by monetary, customer_id) as monetary_tile
    from measured
),

scored as (
    select
        tiles.*,
        min(recency_tile) over (partition by recency_days) as recency_score,
        min(frequency_tile) over (partition by frequency) as frequency_score,
        min(monetary_tile) over (partition by monetary) as monetary_score
    from tiles
)

select
    customer_id,
    as_of_date,
    first_order_date,
    last_order_date,
    recency_days,
    frequency,
    monetary,
    recency_score,
    frequency_score,
    monetary_score,
    cast(recency_score as {{ dbt.type_string() }})
        || cast(frequency_score as {{ dbt.type_string() }})
        || cast(monetary_score as {{ dbt.type_string() }}) as rfm_cell,
    case
        when recency_score = 5 and frequency_score >= 4 then 'Champions'
        when recency_score in (3, 4) and frequency_score >= 4 then 'Loyal'
        when recency_score >= 4 and frequency_score in (2, 3) then 'Potential Loyalists'
        when recency_score = 5 and frequency_score = 1 then 'New'
        when recency_score = 4 and frequency_score = 1 then 'Promising'
        when recency_score = 3 and frequency_score = 3 then 'Need Attention'
        when recency_score = 3 and frequency_score <= 2 then 'About to Sleep'
        when recency_score <= 2 and frequency_score = 5 then 'Cannot Lose Them'
        when recency_score <= 2 and frequency_score in (3, 4) then 'At Risk'
        else 'Hibernating'
    end as rfm_segment
from scored
