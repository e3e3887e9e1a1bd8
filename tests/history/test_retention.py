"""dbt_meta keeps GREENERY_HISTORY_RETENTION_DAYS (90) days: the daily run's freshness check prunes what is older,
with its node results and freshness checks, on a real PostgreSQL; the tables of an older version get the new column
and the indexes the page's queries use."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pendulum
import pytest
from airflow.sdk import DAG

from include import settings
from include.history import retention, schema
from include.settings import ConfigurationError
from tests.conftest import connect, warehouse_connection_json
from tests.dags.conftest import parsed_manifest
from tests.history.generated_history import generate


def _counts(connection) -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in schema.TABLES:
            cursor.execute(f"select count(*) from dbt_meta.{table.name}")
            counts[table.name] = cursor.fetchone()[0]
        cursor.execute("select min(started_at) from dbt_meta.invocations")
        counts["oldest"] = cursor.fetchone()[0]
    connection.commit()
    return counts


@pytest.fixture
def history(fresh_database):
    """Three days of both DAGs' history that ended 92 days ago, and the last two days."""
    _, env = fresh_database("retention")
    manifest = json.loads(parsed_manifest().read_text())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    connection = connect(env)
    old = generate(connection, manifest, days=3, now=now - dt.timedelta(days=92))
    new = generate(connection, manifest, days=2, now=now)
    yield connection, env, old, new
    connection.close()


def test_pruning_deletes_the_runs_older_than_the_retention_with_their_results(history) -> None:
    connection, _, old, new = history
    before = _counts(connection)

    deleted = retention.prune(connection, days=90)

    after = _counts(connection)
    assert deleted == old.invocations
    assert after["invocations"] == before["invocations"] - old.invocations == new.invocations
    assert (after["node_results"], after["source_freshness"]) == (new.node_results, new.freshness_checks)
    assert before["source_freshness"] == old.freshness_checks + new.freshness_checks > after["source_freshness"]
    assert after["oldest"] > new.now - dt.timedelta(days=3)
    assert retention.prune(connection, days=90) == 0  # nothing more to delete


def test_the_daily_runs_callback_prunes_to_the_setting_through_the_warehouse_connection(
    history, monkeypatch, caplog
) -> None:
    connection, env, _, new = history
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", warehouse_connection_json(env))
    monkeypatch.setenv(settings.HISTORY_RETENTION_DAYS.name, "1")
    caplog.set_level(logging.INFO, logger=retention.__name__)

    retention.prune_run_history("/tmp/project", context=None)

    assert _counts(connection)["oldest"] > new.now - dt.timedelta(days=1)
    [message] = [record.getMessage() for record in caplog.records if record.name == retention.__name__]
    assert message.startswith("Pruned the dbt run history in dbt_meta: deleted ")
    assert message.endswith(
        " dbt invocation(s), with their results, older than 1 days (GREENERY_HISTORY_RETENTION_DAYS)."
    )


def test_a_warehouse_that_cannot_be_reached_is_logged_not_raised(monkeypatch, caplog, pg_cluster) -> None:
    connection = {"conn_type": "postgres", "host": "127.0.0.1", "port": pg_cluster.port, "login": "nobody"}
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", json.dumps({**connection, "schema": "nowhere"}))
    caplog.set_level(logging.WARNING, logger=retention.__name__)

    retention.prune_run_history("/tmp/project", context=None)

    [warning] = [record.getMessage() for record in caplog.records if record.name == retention.__name__]
    assert warning.startswith("Could not prune the dbt run history in dbt_meta: OperationalError")
    assert warning.endswith("The next daily run tries again.")


def test_the_retention_is_a_bounded_setting_of_90_days() -> None:
    assert settings.HISTORY_RETENTION_DAYS.value({}) == 90
    assert settings.HISTORY_RETENTION_DAYS.value({"GREENERY_HISTORY_RETENTION_DAYS": " 30 "}) == 30
    for bad in ("0", "forever", "3661"):
        with pytest.raises(ConfigurationError) as error:
            settings.HISTORY_RETENTION_DAYS.value({"GREENERY_HISTORY_RETENTION_DAYS": bad})
        assert str(error.value) == f"GREENERY_HISTORY_RETENTION_DAYS={bad!r} must be a whole number from 1 to 3660."


def test_the_freshness_task_prunes_before_it_decides_to_fail(monkeypatch) -> None:
    from include.dbt_tasks import steps

    parsed_manifest()
    with DAG("retention_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        task = steps.source_freshness("retention_probe")
    assert task.callback == [steps.RECORD_DBT_RESULTS, steps.PRUNE_RUN_HISTORY, steps.FAIL_UNLESS_CONNECTION_DROPPED]
    assert "pruned to its last 90 days" in task.doc_md

    # A bad value stops the DAG parse with the setting's own message.
    monkeypatch.setenv(settings.HISTORY_RETENTION_DAYS.name, "0")
    with (
        DAG("retention_probe_bad", schedule=None, start_date=pendulum.datetime(2026, 1, 1)),
        pytest.raises(ConfigurationError, match="GREENERY_HISTORY_RETENTION_DAYS='0' must be a whole number"),
    ):
        steps.source_freshness("retention_probe_bad")


def test_tables_of_an_older_version_get_the_new_column_and_the_indexes(fresh_database) -> None:
    _, env = fresh_database("old_history")
    connection = connect(env)
    try:
        schema.ensure_tables(connection)
        with connection.cursor() as cursor:
            cursor.execute("alter table dbt_meta.node_results drop column task_id")
            for index in schema.INDEXES:
                cursor.execute(f"drop index dbt_meta.{index.name}")
        connection.commit()

        schema.ensure_tables(connection)

        with connection.cursor() as cursor:
            cursor.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'dbt_meta' and table_name = 'node_results' and column_name = 'task_id'"
            )
            assert cursor.fetchall() == [("task_id",)]
            cursor.execute("select indexname from pg_indexes where schemaname = 'dbt_meta' and indexname like '%_idx'")
            assert sorted(row[0] for row in cursor.fetchall()) == sorted(index.name for index in schema.INDEXES)
    finally:
        connection.close()
