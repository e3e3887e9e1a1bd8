"""Every dbt command's results, kept in the warehouse: the history behind the monitoring models.

After each dbt command a task runs, Cosmos calls ``record_dbt_artifacts`` with the project directory it ran
in. It reads ``target/run_results.json`` (and ``target/sources.json`` after ``dbt source freshness``), hands
them to the alerts (``include.alerts.notify_dbt_results``) and writes them to schema ``dbt_meta``
(``GREENERY_DBT_META_SCHEMA``):

- ``invocations``: one row per dbt command (invocation id, DAG, run, task, try, command, start, elapsed,
  status, dbt version);
- ``node_results``: one row per node of a command (model, test, snapshot, seed: status, time, rows, failures,
  message);
- ``source_freshness``: one row per source table checked (newest row, its age, thresholds, status).

Rows are keyed by invocation id (and node unique id), so uploading the same results again changes nothing.
Writing is best effort: a warehouse that cannot be reached is logged and the dbt result stands as it was.

Plain dbt runs can be recorded too, with the libpq environment (``source .local/warehouse.env``):

    python -m include.run_history upload dbt/greenery/target
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from include import alerts, settings
from include.dbt_artifacts import FRESHNESS_COMMAND, DbtInvocation, read_invocations

log = logging.getLogger(__name__)

META_SCHEMA_ENV = "GREENERY_DBT_META_SCHEMA"
# Commands whose results are history; `docs generate`, `compile`, `ls` and `parse` run nothing worth keeping.
RECORDED_COMMANDS = frozenset({"build", "run", "test", "snapshot", "seed", FRESHNESS_COMMAND})
# Any fixed number: it serialises the CREATE IF NOT EXISTS of concurrent first writers (here and in dbt's
# create_dbt_meta_tables macro), which would otherwise race on the catalog.
DDL_LOCK_KEY = 7_352_018

# The same tables as dbt/greenery/macros/monitoring/create_dbt_meta_tables.sql (a test compares them).
DDL = """
create schema if not exists {schema};

create table if not exists {schema}.invocations (
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

create table if not exists {schema}.node_results (
    invocation_id text not null references {schema}.invocations (invocation_id) on delete cascade,
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
    recorded_at timestamptz not null default now(),
    primary key (invocation_id, unique_id)
);

create table if not exists {schema}.source_freshness (
    invocation_id text not null references {schema}.invocations (invocation_id) on delete cascade,
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
    recorded_at timestamptz not null default now(),
    primary key (invocation_id, unique_id)
);
"""


def meta_schema() -> str:
    return os.environ.get(META_SCHEMA_ENV, "dbt_meta").strip() or "dbt_meta"


def ensure_tables(connection: Any, schema: str | None = None) -> None:
    """Create the history schema and tables if they are missing (idempotent, safe when run concurrently)."""
    schema_id = sql.Identifier(schema or meta_schema())
    with connection.cursor() as cursor:
        cursor.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        cursor.execute(sql.SQL(DDL).format(schema=schema_id))
    connection.commit()


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
    return alerts.redact(value) if value else value


def write_invocations(
    connection: Any, invocations: list[DbtInvocation], context: Mapping[str, Any] | None = None
) -> None:
    """Upsert ``invocations`` and their results in one transaction; a repeated upload leaves one row each."""
    schema = sql.Identifier(meta_schema())
    facts = _airflow_facts(context)
    with connection.cursor() as cursor:
        cursor.execute("set local lock_timeout = '10s'; set local statement_timeout = '60s'")
        for invocation in invocations:
            cursor.execute(
                sql.SQL(
                    """
                    insert into {schema}.invocations (
                        invocation_id, command, status, dbt_version, selector, started_at, generated_at,
                        elapsed_seconds, node_count, dag_id, run_id, task_id, try_number
                    ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    on conflict (invocation_id) do update set
                        command = excluded.command, status = excluded.status,
                        dbt_version = excluded.dbt_version, selector = excluded.selector,
                        started_at = excluded.started_at, generated_at = excluded.generated_at,
                        elapsed_seconds = excluded.elapsed_seconds, node_count = excluded.node_count,
                        dag_id = excluded.dag_id, run_id = excluded.run_id, task_id = excluded.task_id,
                        try_number = excluded.try_number, recorded_at = now()
                    """
                ).format(schema=schema),
                (
                    invocation.invocation_id,
                    invocation.command,
                    invocation.status,
                    invocation.dbt_version,
                    _text(invocation.selector),
                    invocation.started_at,
                    invocation.generated_at,
                    invocation.elapsed_seconds,
                    len(invocation.results),
                    facts["dag_id"],
                    facts["run_id"],
                    facts["task_id"],
                    facts["try_number"],
                ),
            )
            if invocation.command == FRESHNESS_COMMAND:
                _write_freshness(cursor, schema, invocation)
            else:
                _write_node_results(cursor, schema, invocation)
    connection.commit()


def _write_node_results(cursor: Any, schema: sql.Identifier, invocation: DbtInvocation) -> None:
    rows = [
        (
            invocation.invocation_id,
            result.unique_id,
            result.resource_type,
            result.name,
            result.status,
            result.started_at,
            result.completed_at,
            result.execution_seconds,
            result.rows_affected,
            result.failures,
            _text(result.message),
            result.relation_name,
            result.tested_node,
            result.tested_column,
        )
        for result in invocation.results
    ]
    if not rows:
        return
    execute_values(
        cursor,
        sql.SQL(
            """
            insert into {schema}.node_results (
                invocation_id, unique_id, resource_type, node_name, status, started_at, completed_at,
                execution_seconds, rows_affected, failures, message, relation_name, tested_node, tested_column
            ) values %s
            on conflict (invocation_id, unique_id) do update set
                resource_type = excluded.resource_type, node_name = excluded.node_name,
                status = excluded.status, started_at = excluded.started_at,
                completed_at = excluded.completed_at, execution_seconds = excluded.execution_seconds,
                rows_affected = excluded.rows_affected, failures = excluded.failures,
                message = excluded.message, relation_name = excluded.relation_name,
                tested_node = excluded.tested_node, tested_column = excluded.tested_column, recorded_at = now()
            """
        )
        .format(schema=schema)
        .as_string(cursor),
        rows,
    )


def _write_freshness(cursor: Any, schema: sql.Identifier, invocation: DbtInvocation) -> None:
    rows = []
    for result in invocation.results:
        source_name, _, table_name = result.name.partition(".")
        rows.append(
            (
                invocation.invocation_id,
                result.unique_id,
                source_name,
                table_name or source_name,
                result.status,
                result.max_loaded_at,
                result.snapshotted_at,
                result.age_seconds,
                result.warn_after,
                result.error_after,
                result.execution_seconds,
                _text(result.message),
            )
        )
    if not rows:
        return
    execute_values(
        cursor,
        sql.SQL(
            """
            insert into {schema}.source_freshness (
                invocation_id, unique_id, source_name, table_name, status, max_loaded_at, snapshotted_at,
                age_seconds, warn_after, error_after, execution_seconds, error_message
            ) values %s
            on conflict (invocation_id, unique_id) do update set
                source_name = excluded.source_name, table_name = excluded.table_name,
                status = excluded.status, max_loaded_at = excluded.max_loaded_at,
                snapshotted_at = excluded.snapshotted_at, age_seconds = excluded.age_seconds,
                warn_after = excluded.warn_after, error_after = excluded.error_after,
                execution_seconds = excluded.execution_seconds, error_message = excluded.error_message,
                recorded_at = now()
            """
        )
        .format(schema=schema)
        .as_string(cursor),
        rows,
    )


def _airflow_connection(conn_id: str) -> Any:
    """A psycopg2 connection from the Airflow connection ``conn_id`` (the one Cosmos gives dbt)."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    alerts.register_secret(connection.password)
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
) -> bool:
    """Write ``invocations`` to the history tables (created when missing). True on success; never raises.

    ``dsn`` (a libpq string, ``""`` for the libpq environment) replaces the Airflow connection ``conn_id``.
    """
    invocations = [invocation for invocation in invocations if invocation.command in RECORDED_COMMANDS]
    if not invocations:
        return True
    connection = None
    try:
        connection = psycopg2.connect(dsn, connect_timeout=10) if dsn is not None else _airflow_connection(conn_id)
        ensure_tables(connection)
        write_invocations(connection, invocations, context)
    except Exception as error:
        where = "the libpq environment" if dsn == "" else ("dsn" if dsn else f"connection {conn_id!r}")
        log.warning(
            "Could not record dbt run history in %s (through %s): %s: %s. The dbt result is unaffected.",
            meta_schema(),
            where,
            type(error).__name__,
            alerts.redact(str(error)).strip(),
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
    **_: Any,
) -> None:
    """Cosmos ``callback`` of every dbt task: alert on the results, then keep them in ``dbt_meta``.

    Cosmos calls it after each dbt command, before it decides whether the task failed, so failed runs are kept
    too. Never raises: a callback exception would fail the task and hide dbt's own result.
    """
    try:
        invocations = read_invocations(Path(project_dir) / "target")
    except Exception:
        log.exception("Could not read the dbt artifacts in %s", project_dir)
        return
    if context is not None:
        alerts.notify_dbt_results(context, invocations)
    upload(invocations, context, conn_id=conn_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.run_history", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    upload_parser = commands.add_parser("upload", help="record the dbt artifacts of a target directory")
    upload_parser.add_argument(
        "target_dir", nargs="?", default=str(settings.DBT_PROJECT_DIR / "target"), help="default: %(default)s"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    invocations = read_invocations(args.target_dir)
    recorded = [invocation for invocation in invocations if invocation.command in RECORDED_COMMANDS]
    if not recorded:
        print(f"No dbt results to record in {args.target_dir} (run_results.json or sources.json).")
        return 1 if not invocations else 0
    return 0 if upload(recorded, dsn="") else 1


if __name__ == "__main__":
    sys.exit(main())
