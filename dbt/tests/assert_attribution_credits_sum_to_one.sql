-- Every converting order's credits sum to 1 under every attribution model (rule-based and
-- the ML ones unioned into fct_attribution).
select order_id, model, sum(credit) as total_credit
from {{ ref('fct_attribution') }}
group by order_id, model
having abs(sum(credit) - 1.0) > 0.000001
