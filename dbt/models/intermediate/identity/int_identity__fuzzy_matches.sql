-- Probable duplicates between components of the exact graph, with a confidence below 1:
--   email_local_part_variant (0.95)  the same mailbox: e-mails equal once the "+tag"
--                                    sub-address is removed (jane.doe+shop@ = jane.doe@)
--   phone_and_name (0.97)            the same normalised phone (phone or mobile) and the same
--                                    first and last name
--   phone_and_full_name (0.95)      the same phone and the same whole name once spaces are
--                                    ignored (a name typed into one field: "CharlotteBecker")
--   phone_and_similar_name (0.90)    the same phone, first and last name each within one edit
--                                    (typos, swapped letters)
-- One row per pair of components (smallest label first) with its best rule.
{{ config(materialized='table') }}

{% set max_records = var('identity_max_records_per_identifier') %}

with records as (
    select records.*, components.exact_label
    from {{ ref('int_identity__records') }} as records
    inner join {{ ref('int_identity__exact_components') }} as components on records.node_id = components.node_id
),

phones as (
    select exact_label, node_id, phone_normalized as phone, first_name_norm, last_name_norm, full_name_norm
    from records
    where phone_normalized like '+%' and length(phone_normalized) >= 9
    union
    select exact_label, node_id, mobile_normalized, first_name_norm, last_name_norm, full_name_norm
    from records
    where mobile_normalized like '+%' and length(mobile_normalized) >= 9
),

usable_phones as (
    select phone
    from phones
    group by phone
    having count(distinct exact_label) between 2 and {{ max_records }}
),

phone_pairs as (
    select
        a.exact_label as label_a,
        b.exact_label as label_b,
        case
            when a.first_name_norm = b.first_name_norm and a.last_name_norm = b.last_name_norm
                then 'phone_and_name'
            when a.full_name_norm = b.full_name_norm then 'phone_and_full_name'
            else 'phone_and_similar_name'
        end as match_rule,
        case
            when a.first_name_norm = b.first_name_norm and a.last_name_norm = b.last_name_norm then 0.97
            when a.full_name_norm = b.full_name_norm then 0.95
            else 0.90
        end as match_confidence
    from phones as a
    inner join phones as b
        on a.phone = b.phone
        and a.exact_label < b.exact_label
    where a.phone in (select phone from usable_phones)
        and (
            (
                a.first_name_norm is not null and b.first_name_norm is not null
                and a.last_name_norm is not null and b.last_name_norm is not null
                and {{ edit_distance('a.first_name_norm', 'b.first_name_norm') }} <= 1
                and {{ edit_distance('a.last_name_norm', 'b.last_name_norm') }} <= 1
            )
            -- a whole name of at least two words' worth of letters, equal once spaces are ignored
            or (a.full_name_norm = b.full_name_norm and length(a.full_name_norm) >= 6)
        )
),

emails as (
    select distinct exact_label, email_canonical, email_normalized
    from records
    where email_canonical is not null
),

usable_canonical as (
    select email_canonical
    from emails
    group by email_canonical
    having count(distinct exact_label) between 2 and {{ max_records }}
),

email_pairs as (
    select
        a.exact_label as label_a,
        b.exact_label as label_b,
        'email_local_part_variant' as match_rule,
        0.95 as match_confidence
    from emails as a
    inner join emails as b
        on a.email_canonical = b.email_canonical
        and a.exact_label < b.exact_label
    where a.email_canonical in (select email_canonical from usable_canonical)
),

pairs as (
    select * from phone_pairs
    union all
    select * from email_pairs
),

ranked as (
    select
        pairs.*,
        row_number() over (
            partition by label_a, label_b order by match_confidence desc, match_rule
        ) as pair_rank
    from pairs
)

select
    label_a,
    label_b,
    match_rule,
    cast(match_confidence as {{ type_double() }}) as match_confidence
from ranked
where pair_rank = 1
