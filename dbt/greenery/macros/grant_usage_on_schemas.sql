{% macro grant_usage_on_schemas(schemas) %}
    {#-
        Lets the reporting roles into the schemas this run built; the `grants` config of the marts says which
        relations in them they may read.
    -#}
    {%- set roles = env_var('GREENERY_REPORTING_ROLES', '').split(',') | map('trim') | reject('equalto', '') | list -%}
    {%- for schema in schemas -%}
        {%- for role in roles %}
            grant usage on schema {{ adapter.quote(schema) }} to {{ adapter.quote(role) }};
        {%- endfor -%}
    {%- endfor -%}
{% endmacro %}
