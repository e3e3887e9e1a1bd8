with

invocations as (

    select * from {{ source('dbt_meta', 'invocations') }}

),

node_results as (

    select * from {{ source('dbt_meta', 'node_results') }}

),

builds as (

    select
        node_results.invocation_id || ':' || node_results.unique_id as node_run_id,
        node_results.invocation_id,
        node_results.unique_id,
        node_results.node_name,
        node_results.resource_type,
        node_results.relation_name,
        node_results.status,
        node_results.status = 'error' as is_failed,
        {{ to_utc_timestamp('node_results.started_at') }} as started_at,
        {{ to_utc_timestamp('node_results.completed_at') }} as completed_at,
        node_results.execution_seconds,
        node_results.rows_affected,
        invocations.command,
        invocations.dag_id,
        invocations.run_id,
        invocations.task_id,
        invocations.try_number,
        invocations.dbt_version,
        cast(
            {{ to_utc_timestamp('coalesce(node_results.started_at, invocations.started_at)') }} as date
        ) as run_date

    from node_results
    inner join invocations
        on node_results.invocation_id = invocations.invocation_id
    -- A skipped node did not run: it has no timing to chart.
    where
        node_results.resource_type in ('model', 'snapshot', 'seed')
        and node_results.status <> 'skipped'

)

select * from builds
