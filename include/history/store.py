"""Every dbt command's results, kept in the warehouse: the history behind the monitoring models.

After each dbt command a task runs, Cosmos calls ``record_dbt_artifacts`` with the project directory it ran
in. It reads ``target/run_results.json`` (and ``target/sources.json`` after ``dbt source freshness``), hands
them to the alerts (``include.alerts.callbacks.notify_dbt_results``) and writes them to schema ``dbt_meta``
(``GREENERY_DBT_META_SCHEMA``):

- ``invocations``: one row per dbt command (invocation id, DAG, run, task, try, command, start, elapsed,
  status, dbt version);
- ``node_results``: one row per node of a command (model, test, snapshot, seed: status, time, rows, failures,
  message);
- ``source_freshness``: one row per source table checked (newest row, its age, thresholds, status).

Each node row also names the Airflow task that shows its result (``node_tasks``: the producer mode's node
tasks; otherwise the task that ran the command). The tables, their columns and indexes: ``schema``.
Rows are keyed by invocation id (and node unique id), so uploading the same results again changes nothing.
Writing is best effort: a warehouse that cannot be reached is logged and the dbt result stands as it was.

Plain dbt runs can be recorded too, with the libpq environment (``source .local/warehouse.env``):

    python -m include.history upload dbt/greenery/target
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from include import settings
from include.history.artifacts import FRESHNESS_COMMAND, DbtInvocation, NodeResult, read_invocations
from include.history.schema import (
    INVOCATIONS,
    NODE_RESULTS,
    SOURCE_FRESHNESS,
    Table,
    ensure_tables,
    meta_schema,
)
from include.redaction import redact, register_secret

log = logging.getLogger(__name__)

# Commands whose results are history; `docs generate`, `compile`, `ls` and `parse` run nothing worth keeping.
RECORDED_COMMANDS = frozenset({"build", "run", "test", "snapshot", "seed", FRESHNESS_COMMAND})


def upsert_statement(table: Table, values: str = "%s") -> sql.Composed:
    """``insert ... on conflict (key) do update`` of every column of ``table``: a repeated upload of the same
    invocation replaces its rows instead of adding more. ``values`` is what stands after VALUES (``%s`` for
    ``execute_values``)."""
    return sql.SQL(
        "insert into {schema}.{table} ({columns}) values {values} on conflict ({keys}) do update set {updates}, "
        "recorded_at = now()"
    ).format(
        schema=sql.Identifier(meta_schema()),
        table=sql.Identifier(table.name),
        columns=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
        values=sql.SQL(values),
        keys=sql.SQL(", ").join(map(sql.Identifier, table.key)),
        updates=sql.SQL(", ").join(
            sql.SQL("{column} = excluded.{column}").format(column=sql.Identifier(column))
            for column in table.column_names
            if column not in table.key
        ),
    )


def _airflow_facts(context: Mapping[str, Any] | None) -> dict[str, Any]:
    ti = (context or {}).get("ti")
    if ti is None:
        return {"dag_id": None, "run_id": None, "task_id": None, "try_number": None}
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "try_number": getattr(ti, "try_number", None),
    }


def _text(value: str | None) -> str | None:
    return redact(value) if value else value


def _invocation_row(invocation: DbtInvocation, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "invocation_id": invocation.invocation_id,
        "command": invocation.command,
        "status": invocation.status,
        "dbt_version": invocation.dbt_version,
        "selector": _text(invocation.selector),
        "started_at": invocation.started_at,
        "generated_at": invocation.generated_at,
        "elapsed_seconds": invocation.elapsed_seconds,
        "node_count": len(invocation.results),
        **facts,
    }


def _node_result_row(invocation: DbtInvocation, result: NodeResult, task_id: str | None) -> dict[str, Any]:
    return {
        "invocation_id": invocation.invocation_id,
        "unique_id": result.unique_id,
        "resource_type": result.resource_type,
        "node_name": result.name,
        "status": result.status,
        "started_at": result.started_at,
        "completed_at": result.completed_at,
        "execution_seconds": result.execution_seconds,
        "rows_affected": result.rows_affected,
        "failures": result.failures,
        "message": _text(result.message),
        "relation_name": result.relation_name,
        "tested_node": result.tested_node,
        "tested_column": result.tested_column,
        "task_id": task_id,
    }


def _source_freshness_row(invocation: DbtInvocation, result: NodeResult, task_id: str | None) -> dict[str, Any]:
    source_name, _, table_name = result.name.partition(".")
    return {
        "invocation_id": invocation.invocation_id,
        "unique_id": result.unique_id,
        "source_name": source_name,
        "table_name": table_name or source_name,
        "status": result.status,
        "max_loaded_at": result.max_loaded_at,
        "snapshotted_at": result.snapshotted_at,
        "age_seconds": result.age_seconds,
        "warn_after": result.warn_after,
        "error_after": result.error_after,
        "execution_seconds": result.execution_seconds,
        "error_message": _text(result.message),
        "task_id": task_id,
    }


def _upsert(cursor: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        values = [[row[column] for column in table.column_names] for row in rows]
        execute_values(cursor, upsert_statement(table).as_string(cursor), values)


def write_invocations(
    connection: Any,
    invocations: list[DbtInvocation],
    context: Mapping[str, Any] | None = None,
    node_tasks: Mapping[str, str] | None = None,
) -> None:
    """Upsert ``invocations`` and their results in one transaction; a repeated upload leaves one row each.
    ``node_tasks``: the Airflow task that shows each node's result, by unique id, when it is not the one that ran
    the command."""
    facts = _airflow_facts(context)
    node_tasks = node_tasks or {}
    with connection.cursor() as cursor:
        cursor.execute("set local lock_timeout = '10s'; set local statement_timeout = '60s'")
        for invocation in invocations:
            _upsert(cursor, INVOCATIONS, [_invocation_row(invocation, facts)])
            table, row = (
                (SOURCE_FRESHNESS, _source_freshness_row)
                if invocation.command == FRESHNESS_COMMAND
                else (NODE_RESULTS, _node_result_row)
            )
            rows = [row(invocation, r, node_tasks.get(r.unique_id, facts["task_id"])) for r in invocation.results]
            _upsert(cursor, table, rows)
    connection.commit()


def warehouse_connection(conn_id: str = settings.WAREHOUSE_CONN_ID) -> Any:
    """A psycopg2 connection from the Airflow connection ``conn_id`` (the one Cosmos gives dbt)."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    register_secret(connection.password)
    extra = connection.extra_dejson or {}
    return psycopg2.connect(
        host=connection.host or "127.0.0.1",
        port=connection.port or 5432,
        user=connection.login,
        password=connection.password,
        dbname=connection.schema,
        sslmode=extra.get("sslmode", "prefer"),
        connect_timeout=10,
        application_name="greenery_run_history",
    )


def upload(
    invocations: list[DbtInvocation],
    context: Mapping[str, Any] | None = None,
    conn_id: str = settings.WAREHOUSE_CONN_ID,
    dsn: str | None = None,
    node_tasks: Mapping[str, str] | None = None,
) -> bool:
    """Write ``invocations`` to the history tables (created when missing). True on success; never raises.

    ``dsn`` (a libpq string, ``""`` for the libpq environment) replaces the Airflow connection ``conn_id``;
    ``node_tasks`` as in ``write_invocations``.
    """
    invocations = [invocation for invocation in invocations if invocation.command in RECORDED_COMMANDS]
    if not invocations:
        return True
    connection = None
    try:
        connection = psycopg2.connect(dsn, connect_timeout=10) if dsn is not None else warehouse_connection(conn_id)
        ensure_tables(connection)
        write_invocations(connection, invocations, context, node_tasks)
    except Exception as error:
        where = "the libpq environment" if dsn == "" else ("dsn" if dsn else f"connection {conn_id!r}")
        log.warning(
            "Could not record dbt run history in %s (through %s): %s: %s. The dbt result is unaffected.",
            meta_schema(),
            where,
            type(error).__name__,
            redact(str(error)).strip(),
        )
        return False
    finally:
        if connection is not None:
            connection.close()
    log.info(
        "Recorded %d dbt invocation(s) with %d result(s) in %s",
        len(invocations),
        sum(len(invocation.results) for invocation in invocations),
        meta_schema(),
    )
    return True


def record_dbt_artifacts(
    project_dir: str | Path,
    context: Mapping[str, Any] | None = None,
    conn_id: str = settings.WAREHOUSE_CONN_ID,
    node_tasks: Mapping[str, str] | None = None,
    **_: Any,
) -> None:
    """Cosmos ``callback`` of every dbt task: alert on the results, then keep them in ``dbt_meta``.

    Cosmos calls it after each dbt command, before it decides whether the task failed, so failed runs are kept
    too. Never raises: a callback exception would fail the task and hide dbt's own result. The producer passes
    ``node_tasks``, the node task of each node it ran.
    """
    try:
        invocations = read_invocations(Path(project_dir) / "target")
    except Exception:
        log.exception("Could not read the dbt artifacts in %s", project_dir)
        return
    if context is not None:
        # Imported here, not at the top: the alerts import this module (their outbox lives in dbt_meta too).
        from include.alerts.callbacks import notify_dbt_results

        notify_dbt_results(context, invocations)
    upload(invocations, context, conn_id=conn_id, node_tasks=node_tasks)
