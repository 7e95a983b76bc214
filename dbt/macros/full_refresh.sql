{#- dbt's own should_full_refresh (the model's full_refresh config, else the --full-refresh flag),
    plus the incremental models named in var rp_full_refresh_models (unique ids): the daily build
    names those whose logic changed since they were last built (retailpulse/dbt_logic.py), so
    that their older rows are computed again by the new rules. is_incremental() and the
    incremental materialization both ask this macro. -#}
{% macro should_full_refresh() %}
  {% set config_full_refresh = config.get('full_refresh') %}
  {% if config_full_refresh is none %}
    {% set config_full_refresh = flags.FULL_REFRESH or (model is defined and model.unique_id in var('rp_full_refresh_models', [])) %}
  {% endif %}
  {% do return(config_full_refresh) %}
{% endmacro %}
