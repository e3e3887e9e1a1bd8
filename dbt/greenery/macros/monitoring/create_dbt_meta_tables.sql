{% macro create_dbt_meta_tables() %}
    {#- The same tables as include/history/schema.py (DDL), which Airflow writes after each dbt command; a test
        compares the two. Here so that the monitoring models build on a warehouse no Airflow run has written to.
        The advisory lock (the key run_history uses) serialises concurrent first creations. -#}
    {%- set schema = adapter.quote(env_var('GREENERY_DBT_META_SCHEMA', 'dbt_meta')) -%}
    select pg_advisory_xact_lock(7352018);

    create schema if not exists {{ schema }};

    create table if not exists {{ schema }}.invocations (
        invocation_id text primary key,
        command text not null,
        status text not null,
        dbt_version text,
        selector text,
        started_at timestamptz,
        generated_at timestamptz,
        elapsed_seconds double precision,
        node_count integer not null,
        dag_id text,
        run_id text,
        task_id text,
        try_number integer,
        recorded_at timestamptz not null default now()
    );

    create table if not exists {{ schema }}.node_results (
        invocation_id text not null references {{ schema }}.invocations (invocation_id) on delete cascade,
        unique_id text not null,
        resource_type text not null,
        node_name text not null,
        status text not null,
        started_at timestamptz,
        completed_at timestamptz,
        execution_seconds double precision,
        rows_affected bigint,
        failures integer,
        message text,
        relation_name text,
        tested_node text,
        tested_column text,
        task_id text,
        recorded_at timestamptz not null default now(),
        primary key (invocation_id, unique_id)
    );

    create table if not exists {{ schema }}.source_freshness (
        invocation_id text not null references {{ schema }}.invocations (invocation_id) on delete cascade,
        unique_id text not null,
        source_name text not null,
        table_name text not null,
        status text not null,
        max_loaded_at timestamptz,
        snapshotted_at timestamptz,
        age_seconds double precision,
        warn_after text,
        error_after text,
        execution_seconds double precision,
        error_message text,
        task_id text,
        recorded_at timestamptz not null default now(),
        primary key (invocation_id, unique_id)
    )
{% endmacro %}
