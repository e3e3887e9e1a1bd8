{% test spans_at_most(model, column_name, group_by, max_interval) %}

select
    {{ group_by }},
    min({{ column_name }}) as first_at,
    max({{ column_name }}) as last_at

from {{ model }}

group by {{ group_by }}

having max({{ column_name }}) - min({{ column_name }}) > interval '{{ max_interval }}'

{% endtest %}
