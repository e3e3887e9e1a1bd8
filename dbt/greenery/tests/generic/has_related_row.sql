{% test has_related_row(model, related_table, key, related_where=none, condition=none) %}

{%- set keys = [key] if key is string else key %}

with

tested as (

    select * from {{ model }}

),

related as (

    select * from {{ source_relation(related_table) }}
    {%- if related_where %}

    where {{ related_where }}
    {%- endif %}

)

select
    {%- for column in keys %}
    tested.{{ column }}{{ "," if not loop.last }}
    {%- endfor %}

from tested

where not exists (

    select 1

    from related

    where
        {%- for column in keys %}
        related.{{ column }} = tested.{{ column }}{{ " and" if not loop.last or condition }}
        {%- endfor %}
        {%- if condition %}
        ({{ condition }})
        {%- endif %}

)

{% endtest %}
