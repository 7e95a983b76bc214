{#- GA4's default channel group (session scope), following Google's documented rules and their
    order: https://support.google.com/analytics/answer/9756891. Source categories (search,
    social, shopping, video sites) are abbreviated versions of GA4's lists.
    Arguments are SQL expressions; gclid / has_fbclid mark auto-tagged ad clicks. -#}

{% macro _rp_in_list(expr, values) -%}
    {{ expr }} in ({% for v in values %}'{{ v }}'{{ ", " if not loop.last }}{% endfor %})
{%- endmacro %}

{% macro default_channel_group(source, medium, campaign, gclid="null", has_fbclid="false") -%}
    {%- set search_sites = ['google', 'bing', 'yahoo', 'baidu', 'duckduckgo', 'yandex', 'ecosia', 'ask', 'naver',
                            'search.yahoo.com', 'www.google.com', 'www.bing.com', 'msn', 'startpage', 'qwant'] -%}
    {%- set social_sites = ['facebook', 'instagram', 'fb', 'ig', 'meta', 'l.facebook.com', 'm.facebook.com',
                            'l.instagram.com', 'twitter', 'x', 't.co', 'linkedin', 'lnkd.in', 'pinterest',
                            'www.pinterest.com', 'reddit', 'www.reddit.com', 'tiktok', 'snapchat', 'tumblr',
                            'quora', 'threads', 'whatsapp', 'messenger', 'news.ycombinator.com', 'vk', 'weibo'] -%}
    {%- set shopping_sites = ['google shopping', 'shopping.google.com', 'amazon', 'amazon.com', 'ebay', 'ebay.com',
                              'etsy', 'etsy.com', 'walmart', 'shopify', 'igshopping', 'aliexpress'] -%}
    {%- set video_sites = ['youtube', 'youtube.com', 'm.youtube.com', 'vimeo', 'twitch', 'dailymotion', 'netflix'] -%}
    {%- set src = "lower(coalesce(" ~ source ~ ", case when " ~ gclid ~ " is not null then 'google' when " ~ has_fbclid ~ " then 'facebook' end, '(direct)'))" -%}
    {%- set med = "lower(coalesce(" ~ medium ~ ", case when " ~ gclid ~ " is not null then 'cpc' end, '(none)'))" -%}
    {%- set cmp = "lower(coalesce(" ~ campaign ~ ", '(not set)'))" -%}
    {%- set paid_medium = "(" ~ med ~ " like '%cp%' or " ~ med ~ " in ('ppc', 'retargeting') or " ~ med ~ " like 'paid%')" -%}
    {%- set shopping_campaign = regexp_like(cmp, "^(.*(([^a-df-z]|^)shop|shopping).*)$") -%}
    case
        when {{ gclid }} is not null and ({{ source }} is null or {{ medium }} is null) then 'Paid Search'
        when {{ src }} = '(direct)' and {{ med }} in ('(not set)', '(none)') then 'Direct'
        when {{ cmp }} like '%cross-network%' then 'Cross-network'
        when ({{ _rp_in_list(src, shopping_sites) }} or {{ shopping_campaign }}) and {{ paid_medium }} then 'Paid Shopping'
        when {{ _rp_in_list(src, search_sites) }} and {{ paid_medium }} then 'Paid Search'
        when {{ _rp_in_list(src, social_sites) }} and {{ paid_medium }} then 'Paid Social'
        when {{ _rp_in_list(src, video_sites) }} and {{ paid_medium }} then 'Paid Video'
        when {{ med }} in ('display', 'banner', 'expandable', 'interstitial', 'cpm') then 'Display'
        when {{ paid_medium }} then 'Paid Other'
        when {{ _rp_in_list(src, shopping_sites) }} or {{ shopping_campaign }} then 'Organic Shopping'
        when {{ _rp_in_list(src, social_sites) }}
            or {{ med }} in ('social', 'social-network', 'social-media', 'sm', 'social network', 'social media')
            then 'Organic Social'
        when {{ _rp_in_list(src, video_sites) }} or {{ med }} like '%video%' then 'Organic Video'
        when {{ _rp_in_list(src, search_sites) }} or {{ med }} = 'organic' then 'Organic Search'
        when {{ med }} in ('referral', 'app', 'link') then 'Referral'
        when {{ src }} in ('email', 'e-mail', 'e_mail', 'e mail') or {{ med }} in ('email', 'e-mail', 'e_mail', 'e mail')
            then 'Email'
        when {{ med }} = 'affiliate' then 'Affiliates'
        when {{ med }} = 'audio' then 'Audio'
        when {{ src }} = 'sms' or {{ med }} = 'sms' then 'SMS'
        when {{ med }} like '%push' or {{ med }} like '%mobile%' or {{ med }} like '%notification%'
            or {{ src }} = 'firebase' then 'Mobile Push Notifications'
        else 'Unassigned'
    end
{%- endmacro %}

{#- Every channel group default_channel_group can return (for accepted_values tests). -#}
{% macro channel_groups() -%}
    {{ return(['Direct', 'Cross-network', 'Paid Shopping', 'Paid Search', 'Paid Social', 'Paid Video', 'Display',
               'Paid Other', 'Organic Shopping', 'Organic Social', 'Organic Video', 'Organic Search', 'Referral',
               'Email', 'Affiliates', 'Audio', 'SMS', 'Mobile Push Notifications', 'Unassigned']) }}
{%- endmacro %}

{#- A campaign name as a join key between ad platforms and utm_campaign: lower case, "%" as
    "pct", every run of other characters as "_" ("Search - Brand" -> "search_brand"). -#}
{% macro campaign_key(name) -%}
    nullif(trim(both '_' from {{ regexp_replace_all("replace(lower(trim(" ~ name ~ ")), '%', 'pct')", "[^a-z0-9]+", "_") }}), '')
{%- endmacro %}

{#- The rule-based attribution models of int_attribution__credits, one row each (column model). -#}
{% macro rule_based_attribution_models() -%}
    select 'first_touch' as model union all
    select 'last_touch' union all
    select 'last_non_direct' union all
    select 'linear' union all
    select 'time_decay' union all
    select 'position_based'
{%- endmacro %}

{#- The key of a gold.fct_attribution row: md5 of order_id, model and touchpoint_index joined by '|'
    (neither model names nor the index contain '|', so different rows never share the md5 input).
    One definition for the rule-based and the data-driven rows, so the two never disagree. -#}
{% macro attribution_id(order_id='order_id', model='model', touchpoint_index='touchpoint_index') -%}
    {{ dbt.hash(dbt.concat([order_id, "'|'", model, "'|'", 'cast(' ~ touchpoint_index ~ ' as ' ~ dbt.type_string() ~ ')'])) }}
{%- endmacro %}
