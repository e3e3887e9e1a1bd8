{% macro window_bound(var_name) %}
    {#- The var as a UTC timestamp literal, or none when it is unset or empty. -#}
    {%- set value = var(var_name, none) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set text = value | string | trim -%}
    {%- set iso_pattern = '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$' -%}
    {%- if not modules.re.match(iso_pattern, text) -%}
        {{ exceptions.raise_compiler_error(
            "var " ~ var_name ~ "='" ~ text ~ "' is neither a date (YYYY-MM-DD) nor an ISO 8601 timestamp"
            ~ " (2021-02-10T06:00:00+00:00). Pass it as --vars '{" ~ var_name ~ ": \"2021-02-10\"}'."
        ) }}
    {%- endif -%}
    {%- set parsed = modules.datetime.datetime.fromisoformat(text.replace('Z', '+00:00')) -%}
    {%- if parsed.tzinfo is not none -%}
        {%- set parsed = parsed.astimezone(modules.pytz.utc).replace(tzinfo=none) -%}
    {%- endif -%}
    {{ return("cast('" ~ parsed.strftime('%Y-%m-%d %H:%M:%S.%f') ~ "' as timestamp)") }}
{% endmacro %}
