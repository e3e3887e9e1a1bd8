{% test matches_related_column(model, column_name, to, key, field=none, to_where=none) %}

with

tested as (

    select * from {{ model }}

),

related as (

    select
        {{ key }} as related_key,
        {{ field or column_name }} as related_value

    from {{ to }}
    {%- if to_where %}

    where {{ to_where }}
    {%- endif %}

)

select
    tested.{{ key }},
    tested.{{ column_name }},
    related.related_value

from tested

inner join related
    on tested.{{ key }} = related.related_key

where tested.{{ column_name }} is distinct from related.related_value

{% endtest %}
