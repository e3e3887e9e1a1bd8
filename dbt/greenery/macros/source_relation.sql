{% macro source_relation(source_table) -%}
    {#- At parse time there is no graph to look in, and the SQL is not run: the name stands in. -#}
    {%- if not execute -%}
        {{ return(source_table) }}
    {%- endif -%}
    {%- set source_name, table_name = source_table.split('.') -%}
    {%- for node in graph.sources.values() -%}
        {%- if node.source_name == source_name and node.name == table_name -%}
            {{ return(node.relation_name) }}
        {%- endif -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("No source table " ~ source_table ~ " (expected source_name.table_name)") }}
{%- endmacro %}
