{% test expression_is_true(model, expression, column_name=none) %}

select *
from {{ model }}
{%- if column_name %}
where not ({{ column_name }} {{ expression }})
{%- else %}
where not ({{ expression }})
{%- endif %}

{% endtest %}
