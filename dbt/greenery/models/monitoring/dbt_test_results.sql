with

invocations as (

    select * from {{ source('dbt_meta', 'invocations') }}

),

node_results as (

    select * from {{ source('dbt_meta', 'node_results') }}

),

tests as (

    select
        node_results.invocation_id || ':' || node_results.unique_id as test_run_id,
        node_results.invocation_id,
        node_results.unique_id,
        node_results.node_name as test_name,
        node_results.resource_type as test_type,
        node_results.tested_node,
        node_results.tested_column,
        node_results.status,
        node_results.status in ('fail', 'error') as is_failed,
        node_results.status = 'warn' as is_warned,
        node_results.failures as failing_rows,
        node_results.message,
        {{ to_utc_timestamp('node_results.started_at') }} as started_at,
        node_results.execution_seconds,
        invocations.command,
        invocations.dag_id,
        invocations.run_id,
        invocations.task_id,
        invocations.try_number,
        cast(
            {{ to_utc_timestamp('coalesce(node_results.started_at, invocations.started_at)') }} as date
        ) as run_date

    from node_results
    inner join invocations
        on node_results.invocation_id = invocations.invocation_id
    where
        node_results.resource_type in ('test', 'unit_test')
        and node_results.status <> 'skipped'

)

select * from tests
