with

invocations as (

    select * from {{ source('dbt_meta', 'invocations') }}

),

source_freshness as (

    select * from {{ source('dbt_meta', 'source_freshness') }}

),

checks as (

    select
        source_freshness.invocation_id || ':' || source_freshness.unique_id as freshness_check_id,
        source_freshness.invocation_id,
        source_freshness.unique_id,
        source_freshness.source_name,
        source_freshness.table_name,
        source_freshness.status,
        source_freshness.status in ('warn', 'error') as is_stale,
        {{ to_utc_timestamp('source_freshness.max_loaded_at') }} as newest_row_at,
        {{ to_utc_timestamp('source_freshness.snapshotted_at') }} as checked_at,
        cast(source_freshness.age_seconds / 3600 as numeric(10, 2)) as age_hours,
        source_freshness.warn_after,
        source_freshness.error_after,
        source_freshness.error_message,
        invocations.dag_id,
        invocations.run_id,
        invocations.task_id,
        cast(
            {{ to_utc_timestamp('coalesce(source_freshness.snapshotted_at, invocations.started_at)') }} as date
        ) as checked_date

    from source_freshness
    inner join invocations
        on source_freshness.invocation_id = invocations.invocation_id

)

select * from checks
