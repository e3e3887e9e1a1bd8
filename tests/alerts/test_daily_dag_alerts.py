"""End to end through the real greenery_daily DAG: bad raw rows make a data test fail, and Slack (a local
server) gets exactly one message naming the test, its failing rows, its owner and the task's log.

One DAG run with the DAG's own ``dag.test()`` harness (tests/e2e/conftest.py): ``validate_params`` (whose
validated window every dbt task reads) and the source-test task of ``promos`` run for real; every other task is
marked successful without running, which keeps the test short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import psycopg2
import pytest
from slack_stub import SlackWebhookStub

from tests.dags.conftest import dbt_manifest  # noqa: F401  (shared session fixture)
from tests.e2e.conftest import DagRunResult, run_dag

FAILING_TASK = "models.greenery_promos_source_test"
BASE_URL = "http://airflow.test:8080"


@pytest.fixture(scope="module")
def failed_daily_run(pg_cluster, module_database_factory, airflow_db, dbt_manifest) -> Iterator[tuple]:  # noqa: F811
    from include.greenery_data import apply_schema, load_generated

    dbname, _ = module_database_factory("alerts_daily")
    conn = psycopg2.connect(pg_cluster.dsn(dbname))
    try:
        apply_schema(conn)
        load_generated(conn, scale=1, days=1)
        with conn, conn.cursor() as cursor:
            # Three promotions with a negative discount: the source test not_negative on promos.discount fails.
            cursor.execute(
                "insert into raw.promos (promo_id, discount, status) values"
                " ('bad-1', -5, 'active'), ('bad-2', -10, 'active'), ('bad-3', -1, 'inactive')"
            )
    finally:
        conn.close()
    warehouse = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": pg_cluster.port,
        "login": pg_cluster.user,
        "password": pg_cluster.password,
        "schema": dbname,
    }
    slack = SlackWebhookStub()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", json.dumps(warehouse))
        env.setenv("AIRFLOW_CONN_SLACK_ALERTS", slack.connection_json())
        env.setenv("GREENERY_AIRFLOW_BASE_URL", BASE_URL)
        result = run_dag("greenery_daily", only={"validate_params", FAILING_TASK})
    yield result, slack, pg_cluster.dsn(dbname)
    slack.close()


def test_a_failing_data_test_sends_exactly_one_message(failed_daily_run) -> None:
    result, slack, _ = failed_daily_run
    assert result.state == "failed"
    assert result.tasks[FAILING_TASK] == "failed"

    [message] = slack.delivered
    assert message.startswith(f":red_circle: *Failed:* `greenery_daily` › `{FAILING_TASK}`")
    # The raw tables' owner (meta.owner of the source in dbt/greenery), mentioned in Slack; sources have no
    # dbt group, so the alert went to slack_alerts.
    assert message.splitlines()[1] == "Owners: <@U0GREENDATA>"
    assert (
        "• test `source_not_negative_greenery_promos_discount` on `greenery.promos.discount`: *3 rows failed the test*"
    ) in message
    log_url = f"{BASE_URL}/dags/greenery_daily/runs/{quote(result.run_id, safe='')}/tasks/{FAILING_TASK}?try_number=1"
    assert f"<{log_url}|Open the task log>" in message
    # A data test keeps the DAG's retries for a dropped connection, but a failure on the data is not retried.
    assert "try 1, not retried" in message


def test_the_failed_test_is_in_the_run_history(failed_daily_run) -> None:
    result, _, dsn = failed_daily_run
    assert isinstance(result, DagRunResult)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(
            """
            select node_results.node_name, node_results.status, node_results.failures
            from dbt_meta.node_results
            inner join dbt_meta.invocations on node_results.invocation_id = invocations.invocation_id
            where invocations.run_id = %s and node_results.resource_type = 'test' and node_results.status <> 'pass'
            """,
            (result.run_id,),
        )
        assert cursor.fetchall() == [("source_not_negative_greenery_promos_discount", "fail", 3)]
    conn.close()
