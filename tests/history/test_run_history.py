"""The run history in the warehouse: every dbt invocation's results in dbt_meta, written idempotently, a write
failure logged and never raised, and the monitoring models on top of it."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from include import settings
from include.history import store
from include.history.artifacts import read_invocations

REPO_ROOT = Path(__file__).resolve().parents[2]


def _dsn(env: dict[str, str]) -> str:
    keys = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"}
    return " ".join(f"{key}={env[name]}" for key, name in keys.items())


def _rows(env: dict[str, str], query: str) -> list[tuple]:
    connection = psycopg2.connect(_dsn(env))
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.fixture
def history_database(fresh_database) -> dict[str, str]:
    _, env = fresh_database("history")
    return env


def test_each_invocation_is_recorded_once_however_often_it_is_uploaded(fixture_artifacts, history_database) -> None:
    invocations = read_invocations(fixture_artifacts.build_target) + read_invocations(
        fixture_artifacts.freshness_target
    )

    for _ in range(2):  # a retried upload
        assert store.upload(invocations, dsn=_dsn(history_database)) is True

    assert sorted(_rows(history_database, "select command, status, node_count from dbt_meta.invocations")) == [
        ("build", "error", 7),
        ("source freshness", "error", 2),
    ]
    assert _rows(history_database, "select count(*), count(distinct unique_id) from dbt_meta.node_results") == [(7, 7)]
    assert sorted(
        _rows(
            history_database,
            "select node_name, status, failures, tested_node, tested_column from dbt_meta.node_results "
            "where resource_type = 'test'",
        )
    ) == [
        ("accepted_values_orders_clean_status__placed__shipped", "warn", 2, "orders_clean", "status"),
        ("not_null_orders_clean_order_total", "fail", 3, "orders_clean", "order_total"),
        ("unique_orders_clean_order_id", "pass", 0, "orders_clean", "order_id"),
    ]
    freshness = _rows(
        history_database,
        "select table_name, status, round(age_seconds / 3600), warn_after, error_after "
        "from dbt_meta.source_freshness order by table_name",
    )
    assert freshness == [("orders", "warn", 3, "1 hour", "30 days"), ("users", "error", 48, "1 hour", "1 day")]


def test_a_warehouse_that_cannot_be_reached_is_logged_not_raised(fixture_artifacts, caplog, pg_cluster) -> None:
    caplog.set_level(logging.WARNING)
    invocations = read_invocations(fixture_artifacts.build_target)
    dsn = f"host=127.0.0.1 port={pg_cluster.port} user={pg_cluster.user} password=wrong-pw-1234 dbname=nowhere"

    assert store.upload(invocations, dsn=dsn) is False

    [warning] = [record for record in caplog.records if record.name == store.__name__]
    assert warning.getMessage().startswith("Could not record dbt run history in dbt_meta (through dsn): Operational")
    assert "The dbt result is unaffected." in warning.getMessage()
    assert "wrong-pw-1234" not in warning.getMessage()


def test_the_history_holds_no_password(fixture_artifacts, history_database, monkeypatch) -> None:
    monkeypatch.setenv("PGPASSWORD", history_database["PGPASSWORD"])
    [build] = read_invocations(fixture_artifacts.build_target)
    leaky = f"connection to postgresql://greenery:{history_database['PGPASSWORD']}@db/greenery failed"
    build = dataclasses.replace(build, results=tuple(dataclasses.replace(r, message=leaky) for r in build.results))

    assert store.upload([build], dsn=_dsn(history_database)) is True

    messages = [message for (message,) in _rows(history_database, "select message from dbt_meta.node_results")]
    assert messages and all(history_database["PGPASSWORD"] not in message for message in messages)
    assert "postgresql://greenery:***@db/greenery" in messages[0]


def test_the_command_line_records_a_plain_dbt_run(fixture_artifacts, history_database) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "include.history", "upload", str(fixture_artifacts.build_target)],
        env={**os.environ, **history_database},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert "Recorded 1 dbt invocation(s) with 7 result(s) in dbt_meta" in result.stderr + result.stdout
    assert _rows(history_database, "select dag_id, count(*) from dbt_meta.invocations group by 1") == [(None, 1)]


def _dbt_greenery(args: list[str], env: dict[str, str], work_dir: Path) -> subprocess.CompletedProcess:
    """Plain dbt on the greenery project, its artifacts and logs outside the repository."""
    paths = ["--project-dir", str(settings.DBT_PROJECT_DIR), "--profiles-dir", str(settings.DBT_PROFILES_DIR)]
    outputs = ["--target-path", str(work_dir / "target"), "--log-path", str(work_dir / "logs")]
    return subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args, *paths, *outputs],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _columns(env: dict[str, str]) -> list[tuple]:
    return _rows(
        env,
        """
        select table_name, column_name, data_type, is_nullable, column_default
        from information_schema.columns where table_schema = 'dbt_meta' order by table_name, ordinal_position
        """,
    ) + _rows(
        env,
        """
        select conrelid::regclass::text, contype, pg_get_constraintdef(oid)
        from pg_constraint where connamespace = 'dbt_meta'::regnamespace order by 1, 2, 3
        """,
    )


def test_monitoring_models_build_on_a_fresh_warehouse_and_show_the_history(
    fixture_artifacts, fresh_database, tmp_path
) -> None:
    _, created_by_dbt = fresh_database("monitoring")
    _, created_by_airflow = fresh_database("history_ddl")

    # No Airflow run has written history yet: the models create the tables and build empty.
    first = _dbt_greenery(["build", "--select", "path:models/monitoring"], created_by_dbt, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    assert _rows(created_by_dbt, "select count(*) from analytics_monitoring.dbt_test_results") == [(0,)]

    # dbt's macro and the history store create the same tables.
    store.ensure_tables(psycopg2.connect(_dsn(created_by_airflow)))
    assert _columns(created_by_dbt) == _columns(created_by_airflow)

    invocations = read_invocations(fixture_artifacts.build_target) + read_invocations(
        fixture_artifacts.freshness_target
    )
    assert store.upload(invocations, dsn=_dsn(created_by_dbt))
    # Same target path: dbt parses the project once (partial parse).
    second = _dbt_greenery(["build", "--select", "path:models/monitoring"], created_by_dbt, tmp_path)
    assert second.returncode == 0, second.stdout[-3000:]

    assert _rows(
        created_by_dbt,
        "select test_name, failing_rows, is_failed from analytics_monitoring.dbt_test_results where is_failed",
    ) == [("not_null_orders_clean_order_total", 3, True)]
    assert sorted(_rows(created_by_dbt, "select node_name, is_failed from analytics_monitoring.dbt_model_timings")) == [
        ("broken_model", True),
        ("orders_clean", False),
        ("users_clean", False),
    ]
    assert sorted(
        _rows(
            created_by_dbt,
            "select table_name, is_stale, round(age_hours) from analytics_monitoring.source_freshness_history",
        )
    ) == [("orders", True, 3), ("users", True, 48)]
