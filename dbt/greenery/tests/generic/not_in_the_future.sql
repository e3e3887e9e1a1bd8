{% test not_in_the_future(model, column_name, allowed_clock_skew='1 hour') %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} > current_timestamp + interval '{{ allowed_clock_skew }}'

{% endtest %}
