-- Order x touchpoint credit under each attribution model: the rule-based models
-- (first_touch, last_touch, last_non_direct, linear, time_decay, position_based; computed
-- incrementally by order in int_attribution__credits, before the ML stage) plus the data-driven
-- ones (markov, shapley; int_attribution__data_driven, from the channel weights the ML stage
-- writes to gold.attribution_channel_weights). The daily run builds this model (and channel_performance_daily) after
-- ML, so they appear the same run.
--
-- A view over those two tables: the daily run does not write three million rows a second time.
-- The published serving copy and Parquet hold it as a table, like every gold relation.
{{ config(materialized='view') }}

with rule_based as (
    select
        attribution_id, order_id, customer_id, model, touchpoint_index, session_id, channel_group, source, medium,
        campaign, campaign_key, touched_at, credit, attributed_revenue
    from {{ ref('int_attribution__credits') }}
),

data_driven as (
    select
        attribution_id, order_id, customer_id, model, touchpoint_index, session_id, channel_group, source, medium,
        campaign, campaign_key, touched_at, credit, attributed_revenue
    from {{ ref('int_attribution__data_driven') }}
)

select rule_based.*, false as is_data_driven from rule_based
union all
select data_driven.*, true as is_data_driven from data_driven
