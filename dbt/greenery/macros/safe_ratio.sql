{% macro safe_ratio(numerator, denominator, scale=4) -%}
    round(cast({{ numerator }} as numeric) / nullif({{ denominator }}, 0), {{ scale }})
{%- endmacro %}
