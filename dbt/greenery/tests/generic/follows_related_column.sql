{% test follows_related_column(
    model, column_name, related_table, key, field=none, related_where=none, allowed_clock_skew='0 seconds', within=none
) %}

with

tested as (

    select * from {{ model }}

),

related as (

    select
        {{ key }} as related_key,
        {{ field or column_name }} as related_at

    from {{ source_relation(related_table) }}
    {%- if related_where %}

    where {{ related_where }}
    {%- endif %}

)

select
    tested.{{ key }},
    tested.{{ column_name }}

from tested

where exists (

    select 1

    from related

    where
        related.related_key = tested.{{ key }}
        and (
            tested.{{ column_name }} < related.related_at - interval '{{ allowed_clock_skew }}'
            {%- if within %}
            or tested.{{ column_name }} > related.related_at + interval '{{ within }}'
            {%- endif %}
        )

)

{% endtest %}
