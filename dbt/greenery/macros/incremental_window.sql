{% macro incremental_window(rows, event_column, model_event_column, key_column, loaded_column='_loaded_at') %}
    {#-
        Predicate selecting the rows of the relation or CTE `rows` that an incremental run reprocesses:
        the window: event_column from var start_date (or lookback_hours before the newest model_event_column
        already in this model) up to var end_date (exclusive);
        or arrivals: rows whose loaded_column (when the row reached the warehouse) is newer than what this
        model reflects for their key_column, among those that arrived in the lookback_hours before the newest
        arrival already processed, so that an event which arrives after its day's run is picked up by the next
        run, whatever window that run has, and only once.
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
    (
        (
        {%- if start is not none %}
            {{ event_column }} >= {{ start }}
        {%- else %}
            {{ event_column }} >= (
                select coalesce(max({{ model_event_column }}), '-infinity') - interval '{{ lookback }} hours'
                from {{ this }}
            )
        {%- endif -%}
        {%- if end is not none %}
            and {{ event_column }} < {{ end }}
        {%- endif %}
        )
        or (
            {{ rows }}.{{ loaded_column }} > (
                select coalesce(max({{ loaded_column }}), '-infinity') - interval '{{ lookback }} hours'
                from {{ this }}
            )
            and not exists (
                select 1
                from {{ this }} as processed
                where
                    processed.{{ key_column }} = {{ rows }}.{{ key_column }}
                    and processed.{{ loaded_column }} >= {{ rows }}.{{ loaded_column }}
            )
        )
    )
{%- endmacro %}
