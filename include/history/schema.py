"""The ``dbt_meta`` tables of the run history: each table's columns written once, and the DDL built from them.

``store`` writes the rows, ``retention`` deletes the old ones, ``health`` reads them for the dbt health page; the
alert outbox and the project states keep their own tables beside them (``ensure_table``). dbt's
``create_dbt_meta_tables`` macro creates the same three history tables on a warehouse no Airflow run has written
to yet (tests/history/test_run_history.py compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from include import settings

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


@dataclass(frozen=True)
class Index:
    """An index of a history table, for the dbt health page's queries and the daily pruning."""

    name: str
    table: str
    columns: tuple[str, ...]


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
        # The Airflow task that shows this node's result: the invocation's own task, except in the producer mode,
        # where dbt_build runs the node and its node task shows the result (added later: null in older rows).
        ("task_id", "text"),
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
        ("task_id", "text"),  # as in node_results
    ),
    key=("invocation_id", "unique_id"),
)
TABLES = (INVOCATIONS, NODE_RESULTS, SOURCE_FRESHNESS)
# A run's invocations (the page, rerun_failed_of), the oldest ones (pruning), and one node's results newest first
# (trends). The primary keys serve the joins and the cascade of a pruned invocation.
INDEXES = (
    Index("invocations_dag_run_idx", INVOCATIONS.name, ("dag_id", "run_id")),
    Index("invocations_started_at_idx", INVOCATIONS.name, ("started_at",)),
    Index("node_results_node_started_idx", NODE_RESULTS.name, ("unique_id", "started_at")),
    Index("source_freshness_node_checked_idx", SOURCE_FRESHNESS.name, ("unique_id", "snapshotted_at")),
)


def meta_schema() -> str:
    return settings.DBT_META_SCHEMA.value()


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
    tables that live beside the run history (the alert outbox, the project states). Safe when run concurrently,
    with itself or ``ensure_tables``: on a new warehouse the first writers start together."""
    schema = schema or meta_schema()
    with connection.cursor() as cursor:
        # ``create schema if not exists`` fails on a concurrent one (a unique violation in pg_namespace).
        cursor.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
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


def _add_missing_indexes(cursor: Any, schema: str) -> None:
    """Create the ``INDEXES`` the schema lacks. Only a missing one is created: ``create index`` locks its table
    against writers even when the index exists."""
    cursor.execute("select indexname from pg_indexes where schemaname = %s", (schema,))
    present = {row[0] for row in cursor.fetchall()}
    for index in INDEXES:
        if index.name not in present:
            cursor.execute(
                sql.SQL("create index if not exists {} on {}.{} ({})").format(
                    sql.Identifier(index.name),
                    sql.Identifier(schema),
                    sql.Identifier(index.table),
                    sql.SQL(", ").join(map(sql.Identifier, index.columns)),
                )
            )


def ensure_tables(connection: Any, schema: str | None = None) -> None:
    """Create the history schema, tables and indexes if they are missing, and add the columns that tables created
    by an older version lack (idempotent, safe when run concurrently)."""
    schema = schema or meta_schema()
    with connection.cursor() as cursor:
        cursor.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        cursor.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        for table in TABLES:
            cursor.execute(create_statement(table, schema))
            add_missing_columns(cursor, table, schema)
        _add_missing_indexes(cursor, schema)
    connection.commit()
