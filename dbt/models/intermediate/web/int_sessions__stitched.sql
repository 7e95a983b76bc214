-- GA4 sessions stitched to the resolved customer: through the session's user_id (logged in),
-- else through the device (user_pseudo_id), which covers the anonymous sessions of a device
-- before its first login. Country normalised to ISO codes.
--
-- Incremental: a run re-stitches the sessions int_ga4__sessions (re)wrote since this model's
-- last run (processed_at), the sessions of identifiers whose resolution changed since then
-- (int_identity__resolved.changed_at) and the sessions stitched through an identifier that no
-- longer resolves to a customer; every other session has the same row and the same identity as
-- before. Sessions no longer in int_ga4__sessions are deleted (post-hook). Equal to a full
-- refresh (test test_daily_runs_equal_a_full_refresh). A change of the countries seed (or of
-- this file) rebuilds it in full at the next run (retailpulse/dbt_logic.py).
{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_rows_missing_from(ref('int_ga4__sessions'), 'session_id') }}"]
    )
}}

with all_sessions as (
    select * from {{ ref('int_ga4__sessions') }}
),

identity as (
    select node_id, customer_id from {{ ref('int_identity__resolved') }}
    where customer_id is not null
),

{% if is_incremental() and relation_has_column(this, 'stitched_at') %}
last_run as (
    select coalesce(max(stitched_at), cast('1900-01-01' as {{ dbt.type_timestamp() }})) as stitched_at from {{ this }}
),

changed_nodes as (
    select node_id from {{ ref('int_identity__resolved') }}
    where changed_at > (select stitched_at from last_run)
),

to_stitch as (
    select session_id from all_sessions
    where processed_at > (select stitched_at from last_run)
    union
    select session_id from all_sessions
    where 'ga4_user_id:' || user_id in (select node_id from changed_nodes)
        or 'ga4_user_pseudo_id:' || user_pseudo_id in (select node_id from changed_nodes)
    union
    -- stitched through an identifier that left the graph (its row was deleted, not changed)
    select previous.session_id from {{ this }} as previous
    where (previous.stitched_by = 'user_id'
            and not exists (select 1 from identity where identity.node_id = 'ga4_user_id:' || previous.user_id))
        or (previous.stitched_by = 'device'
            and not exists (select 1 from identity where identity.node_id = 'ga4_user_pseudo_id:' || previous.user_pseudo_id))
),

sessions as (
    select all_sessions.* from all_sessions
    where session_id in (select session_id from to_stitch)
),
{% else %}
sessions as (
    select * from all_sessions
),
{% endif %}

countries as (
    -- lookup by ISO code or by English name
    select upper(country_code) as country_key, upper(country_code) as country_code from {{ ref('countries') }}
    union
    select upper(country_name), upper(country_code) from {{ ref('countries') }}
)

select
    sessions.*,
    coalesce(by_user.customer_id, by_device.customer_id) as customer_id,
    case
        when by_user.customer_id is not null then 'user_id'
        when by_device.customer_id is not null then 'device'
    end as stitched_by,
    coalesce(countries.country_code, upper(sessions.country)) as country_code,
    -- the run that (re)stitched the session
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }}) as stitched_at
from sessions
left join identity as by_user on by_user.node_id = 'ga4_user_id:' || sessions.user_id
left join identity as by_device on by_device.node_id = 'ga4_user_pseudo_id:' || sessions.user_pseudo_id
left join countries on upper(sessions.country) = countries.country_key
