{% macro to_money(column_name) -%}
    cast({{ column_name }} as numeric(12, 2))
{%- endmacro %}
