"""The run history's schema is created by whichever process writes to it first: dbt_build recording a run, the
alert delivery DAG reading its outbox, a run keeping its project state. On a new warehouse they start together,
and each must find the schema made, never fail on the others making it (PostgreSQL's ``create schema if not
exists`` is not safe against a concurrent one)."""

from __future__ import annotations

import threading

import psycopg2

from include.alerts.outbox import OUTBOX
from include.dbt_tasks.project_state import PROJECT_STATES
from include.history import schema
from tests.conftest import connect


def _create_together(env: dict[str, str], creators: list) -> list[psycopg2.Error]:
    """Each creator on its own connection, all released at the same moment; the errors they raised."""
    connections = [connect(env) for _ in creators]
    start, errors = threading.Barrier(len(creators)), []

    def create(connection, creator) -> None:
        start.wait()
        try:
            creator(connection)
        except psycopg2.Error as error:
            errors.append(error)

    threads = [threading.Thread(target=create, args=pair) for pair in zip(connections, creators, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for connection in connections:
        connection.close()
    return errors


def test_every_writer_may_create_the_history_schema_at_the_same_moment(fresh_database) -> None:
    creators = [schema.ensure_tables] + [
        lambda connection, table=table: schema.ensure_table(connection, table) for table in (OUTBOX, PROJECT_STATES)
    ]
    for attempt in range(5):  # each round a new, empty schema, created by 6 connections at once
        _, env = fresh_database(f"ddl_race_{attempt}")
        errors = _create_together(env, creators * 2)
        assert errors == [], f"round {attempt}: {errors[0]}"
