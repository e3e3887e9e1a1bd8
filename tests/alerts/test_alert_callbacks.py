"""The alerts as Airflow and Cosmos call them: real DAG runs (``dag.test()``) of tests/alerts/dags/alerts_fixture.py,
real dbt through Cosmos, a local HTTP server as Slack, the history in a real PostgreSQL.

Each run happens in a subprocess whose DAG bundle is the fixture folder, so the greenery DAGs' rows in the test
session's Airflow database are left alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from slack_stub import Reply, SlackWebhookStub

from tests.conftest import warehouse_connection_json

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DAGS = Path(__file__).resolve().parent / "dags"
BASE_URL = "http://airflow.test:8080"


@dataclass(frozen=True)
class FixtureRun:
    run_id: str
    state: str
    tasks: dict[str, str]
    output: str


@pytest.fixture(scope="module")
def warehouse(shop_database) -> dict[str, str]:
    # Both sources are stale enough to warn (2-6 hours old), none enough to fail freshness.
    _, env = shop_database("alerts_dag", users_age=dt.timedelta(hours=2))
    return env


def run_fixture_dag(warehouse: dict[str, str], plan: list[dict], state_dir: Path) -> list[FixtureRun]:
    """Run the fixture DAG once per plan step, in one subprocess; returns each run's id, state and task states."""
    bundles = [
        {
            "name": "alerts-fixture",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(FIXTURE_DAGS), "refresh_interval": 0},
        }
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG") and key != "SLACK_WEBHOOK_URL"}
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(FIXTURE_DAGS),
        AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST=json.dumps(bundles),
        AIRFLOW_CONN_GREENERY_WAREHOUSE=warehouse_connection_json(warehouse),
        GREENERY_AIRFLOW_BASE_URL=BASE_URL,
        GREENERY_SLACK_BACKOFF_SECONDS="0.05",
        ALERTS_FIXTURE_STATE_DIR=str(state_dir),
    )
    result = subprocess.run(
        [sys.executable, str(FIXTURE_DAGS / "alerts_fixture.py"), json.dumps(plan)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    lines = [
        line.removeprefix("FIXTURE_RUN ") for line in result.stdout.splitlines() if line.startswith("FIXTURE_RUN ")
    ]
    assert result.returncode == 0 and len(lines) == len(plan), output[-5000:]
    runs = [json.loads(line) for line in lines]
    return [FixtureRun(run["run_id"], run["state"], run["tasks"], output) for run in runs]


def _history(warehouse: dict[str, str], query: str, *args: object) -> list[tuple]:
    connection = psycopg2.connect(
        host=warehouse["PGHOST"],
        port=warehouse["PGPORT"],
        user=warehouse["PGUSER"],
        password=warehouse["PGPASSWORD"],
        dbname=warehouse["PGDATABASE"],
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, args)
            return cursor.fetchall()
    finally:
        connection.close()


@dataclass(frozen=True)
class Runs:
    failed: FixtureRun  # dbt_build fails a data test, freshness warns, flaky needs its retry; Slack answers
    slack: SlackWebhookStub
    recovered: FixtureRun  # the next run succeeds while Slack answers 500 to everything
    broken_slack: SlackWebhookStub


@pytest.fixture(scope="module")
def runs(airflow_db, warehouse, tmp_path_factory) -> Iterator[Runs]:
    slack, broken_slack = SlackWebhookStub(), SlackWebhookStub()
    broken_slack.reply_with(*[Reply(500, "internal_error")] * 100)
    plan = [
        {"logical_date": "2024-03-01T06:00:00+00:00", "slack_connection": slack.connection_json()},
        # users_clean has no tests: this build, and so the run, succeeds.
        {
            "logical_date": "2024-03-02T06:00:00+00:00",
            "slack_connection": broken_slack.connection_json(),
            "select": "users_clean",
        },
    ]
    failed, recovered = run_fixture_dag(warehouse, plan, tmp_path_factory.mktemp("fixture_runs"))
    yield Runs(failed, slack, recovered, broken_slack)
    slack.close()
    broken_slack.close()


def test_the_failed_task_sends_exactly_one_message_naming_the_test_rows_and_log(runs) -> None:
    run, slack = runs.failed, runs.slack
    assert run.state == "failed"
    assert run.tasks == {"source_freshness": "success", "dbt_build": "failed", "flaky": "success"}

    failures = [text for text in slack.delivered if text.startswith(":red_circle:")]
    assert len(failures) == 1, slack.delivered
    [failure] = failures
    assert failure.startswith(":red_circle: *Failed:* `alerts_fixture` › `dbt_build`")
    assert "• test `not_null_orders_clean_order_total` on `orders_clean.order_total`: *3 rows failed the test*" in (
        failure
    )
    assert "• model `broken_model`: *error*" in failure
    assert "Logical date 2024-03-01 06:00 UTC · try 1 of 1" in failure
    log_url = f"{BASE_URL}/dags/alerts_fixture/runs/{quote(run.run_id, safe='')}/tasks/dbt_build?try_number=1"
    assert f"<{log_url}|Open the task log>" in failure


def test_a_retry_that_succeeds_sends_nothing_and_warnings_send_one_message(runs) -> None:
    run, slack = runs.failed, runs.slack
    assert "first try only" in run.output  # flaky did fail once
    assert not [text for text in slack.delivered if "flaky" in text]

    warnings = [text for text in slack.delivered if text.startswith(":warning:")]
    assert len(warnings) == 1, slack.delivered
    assert warnings[0].startswith(":warning: *Stale sources:* `alerts_fixture` › `source_freshness`")
    assert "• source `shop.orders`: *warn*" in warnings[0] and "• source `shop.users`: *warn*" in warnings[0]
    assert len(slack.delivered) == 2  # the failure and the warning, nothing for the run's own failure


def test_no_alert_or_log_line_shows_the_webhook_or_a_password(runs, warehouse) -> None:
    sent = [request.payload["text"] for stub in (runs.slack, runs.broken_slack) for request in stub.requests]
    output = runs.failed.output  # both runs' logs, including the alerts Slack refused
    for secret in (runs.slack.token, runs.broken_slack.token, warehouse["PGPASSWORD"]):
        assert all(secret not in text for text in sent)
        assert secret not in output


def test_every_dbt_invocation_of_the_run_is_in_the_history_once(runs, warehouse) -> None:
    run = runs.failed
    invocations = _history(
        warehouse,
        "select task_id, command, status, try_number from dbt_meta.invocations where run_id = %s order by task_id",
        run.run_id,
    )
    assert invocations == [("dbt_build", "build", "error", 1), ("source_freshness", "source freshness", "warn", 1)]
    assert _history(
        warehouse,
        """
        select count(*), count(distinct node_results.unique_id) from dbt_meta.node_results
        inner join dbt_meta.invocations on node_results.invocation_id = invocations.invocation_id
        where invocations.run_id = %s
        """,
        run.run_id,
    ) == [(7, 7)]


def test_a_good_run_after_a_failed_one_says_recovered(runs) -> None:
    run = runs.recovered
    assert run.state == "success", run.tasks
    # Slack answered 500 to each message (the freshness warning, the recovery): retried 3 times, then left in
    # the outbox for the delivery DAG (tests/alerts/test_alert_outbox.py).
    sent = [request.payload["text"] for request in runs.broken_slack.requests]
    assert len(sent) == 2 * 4 and runs.broken_slack.delivered == []
    assert set(text for text in sent if text.startswith(":large_green_circle:")) == {
        f":large_green_circle: *Recovered:* `alerts_fixture` run `{run.run_id}` succeeded; "
        f"the run before it, `{runs.failed.run_id}`, had failed.\n"
        f"<{BASE_URL}/dags/alerts_fixture/runs/{quote(run.run_id, safe='')}|Open the run>"
    }


def test_slack_errors_change_no_task_state(runs) -> None:
    assert runs.recovered.tasks == {"source_freshness": "success", "dbt_build": "success", "flaky": "success"}
    assert "Slack did not take alert recovered:alerts_fixture:" in runs.recovered.output
    assert "(HTTP 500 internal_error); greenery_alert_delivery tries again" in runs.recovered.output
