"""Every dbt command's results, kept in the warehouse: the history behind the monitoring models.

After each dbt command a task runs, Cosmos calls ``include.dbt_tasks.dbt_results.record_dbt_artifacts`` with the
project directory it ran in. It reads ``target/run_results.json`` (and ``target/sources.json`` after ``dbt source
freshness``), hands them to the alerts and writes them here (``upload``), to schema ``dbt_meta``
(``GREENERY_DBT_META_SCHEMA``):

- ``invocations``: one row per dbt command (invocation id, DAG, run, task, try, command, start, elapsed,
  status, dbt version);
- ``node_results``: one row per node of a command (model, test, snapshot, seed: status, time, rows, failures,
  message);
- ``source_freshness``: one row per source table checked (newest row, its age, thresholds, status).

Rows are keyed by invocation id (and node unique id), so uploading the same results again changes nothing.
Writing is best effort: a warehouse that cannot be reached is logged and the dbt result stands as it was.

Plain dbt runs can be recorded too, with the libpq environment (``source .local/warehouse.env``):

    python -m include.history upload dbt/greenery/target
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from include import settings
from include.history.artifacts import FRESHNESS_COMMAND, DbtInvocation, NodeResult
from include.redaction import redact, register_secret

log = logging.getLogger(__name__)

# Commands whose results are history; `docs generate`, `compile`, `ls` and `parse` run nothing worth keeping.
RECORDED_COMMANDS = frozenset({"build", "run", "test", "snapshot", "seed", FRESHNESS_COMMAND})
# Any fixed number: it serialises the CREATE IF NOT EXISTS of concurrent first writers (here and in dbt's
# create_dbt_meta_tables macro), which would otherwise race on the catalog.
DDL_LOCK_KEY = 7_352_018


@dataclass(frozen=True)
class Table:
    """One ``dbt_meta`` table: its columns (name, type) in order, its key, and what its rows reference. The DDL,
    the INSERT and its ON CONFLICT are all built from this, so a column is named once."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    references_invocation: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


# The same tables as dbt/greenery/macros/monitoring/create_dbt_meta_tables.sql (a test compares them); every
# table also gets ``recorded_at``, the time of the last upload of its row.
INVOCATIONS = Table(
    "invocations",
    (
        ("invocation_id", "text not null"),
        ("command", "text not null"),
        ("status", "text not null"),
        ("dbt_version", "text"),
        ("selector", "text"),
        ("started_at", "timestamptz"),
        ("generated_at", "timestamptz"),
        ("elapsed_seconds", "double precision"),
        ("node_count", "integer not null"),
        ("dag_id", "text"),
        ("run_id", "text"),
        ("task_id", "text"),
        ("try_number", "integer"),
    ),
    key=("invocation_id",),
    references_invocation=False,
)
NODE_RESULTS = Table(
    "node_results",
    (
        ("invocation_id", "text not null"),
        ("unique_id", "text not null"),
        ("resource_type", "text not null"),
        ("node_name", "text not null"),
        ("status", "text not null"),
        ("started_at", "timestamptz"),
        ("completed_at", "timestamptz"),
        ("execution_seconds", "double precision"),
        ("rows_affected", "bigint"),
        ("failures", "integer"),
        ("message", "text"),
        ("relation_name", "text"),
        ("tested_node", "text"),
        ("tested_column", "text"),
    ),
    key=("invocation_id", "unique_id"),
)
SOURCE_FRESHNESS = Table(
    "source_freshness",
    (
        ("invocation_id", "text not null"),
        ("unique_id", "text not null"),
        ("source_name", "text not null"),
        ("table_name", "text not null"),
        ("status", "text not null"),
        ("max_loaded_at", "timestamptz"),
        ("snapshotted_at", "timestamptz"),
        ("age_seconds", "double precision"),
        ("warn_after", "text"),
        ("error_after", "text"),
        ("execution_seconds", "double precision"),
        ("error_message", "text"),
    ),
    key=("invocation_id", "unique_id"),
)
TABLES = (INVOCATIONS, NODE_RESULTS, SOURCE_FRESHNESS)


def create_statement(table: Table, schema: str) -> sql.Composed:
    """``create table if not exists`` for ``table`` in ``schema``."""
    parts = [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(column_type)) for name, column_type in table.columns]
    parts.append(sql.SQL("recorded_at timestamptz not null default now()"))
    parts.append(sql.SQL("primary key ({})").format(sql.SQL(", ").join(map(sql.Identifier, table.key))))
    if table.references_invocation:
        parts.append(
            sql.SQL("foreign key (invocation_id) references {}.{} (invocation_id) on delete cascade").format(
                sql.Identifier(schema), sql.Identifier(INVOCATIONS.name)
            )
        )
    return sql.SQL("create table if not exists {}.{} ({})").format(
        sql.Identifier(schema), sql.Identifier(table.name), sql.SQL(", ").join(parts)
    )


def ensure_table(connection: Any, table: Table, schema: str | None = None) -> None:
    """Create ``table`` (and its schema) if missing, add the columns an older copy lacks, and commit: for the
    tables that live beside the run history (the alert outbox, the project states)."""
    schema = schema or meta_schema()
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        cursor.execute(create_statement(table, schema))
        add_missing_columns(cursor, table, schema)
    connection.commit()


def add_missing_columns(cursor: Any, table: Table, schema: str) -> None:
    """Add the columns of ``table`` that its copy in ``schema`` lacks (a table created by an older version). The
    table is altered only when a column is missing: ``alter table`` takes a lock that waits for every reader. A
    column added this way needs a default or must allow null."""
    cursor.execute(
        "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
        (schema, table.name),
    )
    present = {row[0] for row in cursor.fetchall()}
    missing = [(name, column_type) for name, column_type in table.columns if name not in present]
    if present and missing:
        cursor.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        cursor.execute(
            sql.SQL("alter table {}.{} {}").format(
                sql.Identifier(schema),
                sql.Identifier(table.name),
                sql.SQL(", ").join(
                    sql.SQL("add column if not exists {} {}").format(sql.Identifier(name), sql.SQL(column_type))
                    for name, column_type in missing
                ),
            )
        )


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


def meta_schema() -> str:
    return settings.DBT_META_SCHEMA.value()


def ensure_tables(connection: Any, schema: str | None = None) -> None:
    """Create the history schema and tables if they are missing (idempotent, safe when run concurrently)."""
    schema = schema or meta_schema()
    with connection.cursor() as cursor:
        cursor.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        cursor.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        for table in TABLES:
            cursor.execute(create_statement(table, schema))
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


def _node_result_row(invocation: DbtInvocation, result: NodeResult) -> dict[str, Any]:
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
    }


def _source_freshness_row(invocation: DbtInvocation, result: NodeResult) -> dict[str, Any]:
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
    }


def _upsert(cursor: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        values = [[row[column] for column in table.column_names] for row in rows]
        execute_values(cursor, upsert_statement(table).as_string(cursor), values)


def write_invocations(
    connection: Any, invocations: list[DbtInvocation], context: Mapping[str, Any] | None = None
) -> None:
    """Upsert ``invocations`` and their results in one transaction; a repeated upload leaves one row each."""
    facts = _airflow_facts(context)
    with connection.cursor() as cursor:
        cursor.execute("set local lock_timeout = '10s'; set local statement_timeout = '60s'")
        for invocation in invocations:
            _upsert(cursor, INVOCATIONS, [_invocation_row(invocation, facts)])
            if invocation.command == FRESHNESS_COMMAND:
                _upsert(cursor, SOURCE_FRESHNESS, [_source_freshness_row(invocation, r) for r in invocation.results])
            else:
                _upsert(cursor, NODE_RESULTS, [_node_result_row(invocation, r) for r in invocation.results])
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
) -> bool:
    """Write ``invocations`` to the history tables (created when missing). True on success; never raises.

    ``dsn`` (a libpq string, ``""`` for the libpq environment) replaces the Airflow connection ``conn_id``.
    """
    invocations = [invocation for invocation in invocations if invocation.command in RECORDED_COMMANDS]
    if not invocations:
        return True
    connection = None
    try:
        connection = psycopg2.connect(dsn, connect_timeout=10) if dsn is not None else warehouse_connection(conn_id)
        ensure_tables(connection)
        write_invocations(connection, invocations, context)
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
