"""Which failed dbt commands retry: real dbt runs whose connection was refused or cut by the server retry, tests
included; a test that failed on the data, a stale source or a broken model's SQL fail at once."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psycopg2
import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.dbt_tasks.retries import fail_unless_connection_dropped, is_dropped_connection
from include.history.artifacts import read_invocations
from include.local_platform.pgcluster import free_port
from tests.conftest import DBT, run_dbt

# A project of one model and one slow test, so that the test's query is still running when the server cuts it.
SLOW_PROJECT = {
    "dbt_project.yml": 'name: slow\nversion: "1.0.0"\nprofile: slow\nflags:\n  send_anonymous_usage_stats: false\n',
    "profiles.yml": (
        "slow:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: \"{{ env_var('PGHOST') }}\"\n"
        "      port: \"{{ env_var('PGPORT') | as_number }}\"\n      user: \"{{ env_var('PGUSER') }}\"\n"
        "      password: \"{{ env_var('PGPASSWORD') }}\"\n      dbname: \"{{ env_var('PGDATABASE') }}\"\n"
        "      schema: slow\n      threads: 1\n"
    ),
    "models/numbers.sql": "select 1 as id",
    "tests/numbers_take_a_while.sql": (
        "with slow as materialized (select id, pg_sleep(30) as slept from {{ ref('numbers') }})\n"
        "select id from slow where id < 0"
    ),
}


def test_the_messages_of_a_dropped_connection_are_recognised_and_others_are_not() -> None:
    for message in (
        'Database Error\n  connection to server at "127.0.0.1", port 5433 failed: Connection refused',
        "Database Error in test x\n  terminating connection due to administrator command",
        "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
        "could not serialize access due to concurrent update",
        "FATAL:  the database system is shutting down",
    ):
        assert is_dropped_connection(message), message
    for message in (
        "Got 3 results, configured to fail if != 0",
        'Database Error in model broken_model\n  column "nope" does not exist',
        None,
        "",
    ):
        assert not is_dropped_connection(message), message


def test_a_test_failing_on_data_a_broken_model_and_a_stale_source_fail_without_retry(fixture_artifacts) -> None:
    with pytest.raises(AirflowFailException) as failed:
        fail_unless_connection_dropped(fixture_artifacts.build_target.parent)
    message = str(failed.value)
    assert "not_null_orders_clean_order_total: Got 3 results" in message
    assert "broken_model:" in message
    assert message.endswith("Not retried: a retry cannot heal it.")

    with pytest.raises(AirflowFailException, match="users"):
        fail_unless_connection_dropped(fixture_artifacts.freshness_target.parent)


def test_a_dbt_command_that_could_not_reach_the_warehouse_is_left_to_airflow_to_retry(
    fixture_artifacts, tmp_path: Path
) -> None:
    nobody_listens = {**fixture_artifacts.env, "PGPORT": str(free_port())}
    refused = run_dbt(["test"], nobody_listens, tmp_path)
    assert refused.returncode != 0
    assert "Connection refused" in refused.stdout, refused.stdout[-3000:]

    # dbt gave up before any node ran, so no node result blames the data: the callback leaves the try to fail as
    # usual, and Airflow retries it.
    assert not [result for invocation in read_invocations(tmp_path / "target") for result in invocation.failed]
    fail_unless_connection_dropped(tmp_path)  # no AirflowFailException


def _terminate_once_running(dsn: str, needle: str, dbt: subprocess.Popen) -> bool:
    """Cut the connection of the query containing ``needle`` once it runs, as a server restart would; False if
    ``dbt`` ended before that query ran."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True  # a transaction would see one snapshot of pg_stat_activity
    try:
        with conn.cursor() as cur:
            while dbt.poll() is None:
                cur.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where query like %s and pid <> pg_backend_pid()",
                    (f"%{needle}%",),
                )
                if cur.fetchall():
                    return True
                time.sleep(0.2)
    finally:
        conn.close()
    return False


def test_a_data_test_whose_connection_the_server_cut_is_left_to_airflow_to_retry(
    fresh_database, pg_cluster, tmp_path: Path
) -> None:
    dbname, env = fresh_database("cut")
    project = tmp_path / "project"
    for name, text in SLOW_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    build = subprocess.Popen(
        [DBT, "build", "--project-dir", str(project), "--profiles-dir", str(project)],
        cwd=project,
        env={**os.environ, **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        cut = _terminate_once_running(pg_cluster.dsn(dbname), "pg_sleep(30)", build)
        output, _ = build.communicate(timeout=300)
    finally:
        build.kill()
    assert cut, f"the slow test never ran:\n{output[-3000:]}"
    assert build.returncode != 0
    # libpq reports either the server's notice or the closed socket, depending on which it reads first.
    assert (
        "terminating connection due to administrator command" in output
        or "server closed the connection unexpectedly" in output
    ), output[-3000:]

    [cut_test] = [result for invocation in read_invocations(project / "target") for result in invocation.failed]
    assert cut_test.name == "numbers_take_a_while"
    fail_unless_connection_dropped(project)  # no AirflowFailException: retried
