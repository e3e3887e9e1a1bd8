{% macro to_utc_timestamp(column_name) -%}
    cast({{ column_name }} at time zone 'UTC' as timestamp)
{%- endmacro %}
