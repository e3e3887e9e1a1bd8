{% macro incremental_window(event_column, loaded_column) %}
    {#-
        Predicate on event_column selecting what an incremental run reprocesses: from var start_date, or
        lookback_hours before the newest loaded_column already in this model, up to var end_date (exclusive).
    -#}
    {%- set start = window_bound('start_date') -%}
    {%- set end = window_bound('end_date') -%}
    {%- set lookback = var('lookback_hours', 6) | string | trim -%}
    {%- if not modules.re.match('^\d+(\.\d+)?$', lookback) -%}
        {{ exceptions.raise_compiler_error(
            "var lookback_hours='" ~ lookback ~ "' is not a number of hours (for example 6)."
        ) }}
    {%- endif -%}
    {#- Both bounds are literals of one fixed-width shape, so comparing the strings compares the times. -#}
    {%- if start is not none and end is not none and start >= end -%}
        {{ exceptions.raise_compiler_error(
            "var start_date (" ~ var('start_date') ~ ") must be before end_date (" ~ var('end_date')
            ~ "): the window is start_date <= created_at < end_date."
        ) }}
    {%- endif -%}
    {%- if start is not none -%}
        {{ event_column }} >= {{ start }}
    {%- else -%}
        {{ event_column }} >= (
            select coalesce(max({{ loaded_column }}), '-infinity') - interval '{{ lookback }} hours'
            from {{ this }}
        )
    {%- endif -%}
    {%- if end is not none %}
        and {{ event_column }} < {{ end }}
    {%- endif -%}
{% endmacro %}
