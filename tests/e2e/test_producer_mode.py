"""``GREENERY_COSMOS_EXECUTION_MODE=producer`` on ``make up``'s platform with the real scheduler and triggerer: a
green daily run whose node tasks never reach a worker, a run on bad raw data whose failing test task fails with
dbt's message and alerts a local HTTP Slack server while the rest of the run goes on, and a clear of that task,
after the data is fixed, that runs it on a worker (include/dbt_tasks/producer.py)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from include.dbt_tasks.producer import PRODUCER_TASK_ID
from tests.alerts.slack_stub import SlackWebhookStub
from tests.conftest import started_platform
from tests.e2e.test_platform import FINISHED, AirflowApi, _warehouse

pytestmark = pytest.mark.timeout(30 * 60)

DAILY = "greenery_daily"
PRICE_TEST_TASK = "models.greenery_products_source_test"
BAD_PRODUCT_PRICE = -4.5


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackWebhookStub]:
    stub = SlackWebhookStub()
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, slack: SlackWebhookStub) -> Iterator[dict[str, Any]]:
    with started_platform(
        tmp_path_factory.mktemp("producer"),
        GREENERY_COSMOS_EXECUTION_MODE="producer",
        # Airflow 3.3.2 cannot clear a task of a run whose queued-at deadline is still pending (HTTP 500,
        # apache/airflow#70368); the lateness alert is tested on the default platform.
        GREENERY_DAILY_DEADLINE_MINUTES="0",
        AIRFLOW_CONN_SLACK_ALERTS=slack.connection_json(),
    ) as started:
        yield started


@pytest.fixture(scope="module")
def api(platform: dict[str, Any]) -> AirflowApi:
    return AirflowApi(platform["url"])


def _finished_run(api: AirflowApi, run_id: str, timeout: float = 15 * 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/api/v2/dags/{DAILY}/dagRuns/{urllib.parse.quote(run_id)}")
        if run["state"] in ("success", "failed"):
            return run
        assert time.monotonic() < deadline, f"{run_id} still {run['state']} after {timeout:.0f} s"
        time.sleep(3)


def _tasks(api: AirflowApi, run_id: str) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in api.task_instances(DAILY, urllib.parse.quote(run_id))}


def _log(api: AirflowApi, run_id: str, task_id: str, try_number: int) -> str:
    request = urllib.request.Request(
        f"{api.base_url}/api/v2/dags/{DAILY}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/"
        f"{urllib.parse.quote(task_id)}/logs/{try_number}?full_content=true",
        headers={"Authorization": f"Bearer {api.token}", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.dumps(json.loads(response.read()))


@pytest.fixture(scope="module")
def green_run(api: AirflowApi) -> dict:
    """The daily run the scheduler starts on its own when the platform comes up (catchup is off)."""
    deadline = time.monotonic() + 5 * 60
    while not (runs := api.get(f"/api/v2/dags/{DAILY}/dagRuns?run_type=scheduled&limit=5")["dag_runs"]):
        assert time.monotonic() < deadline, "the scheduler started no greenery_daily run within 5 minutes"
        time.sleep(3)
    return _finished_run(api, runs[0]["dag_run_id"])


def test_a_green_run_builds_every_node_in_one_dbt_process_and_no_node_task_reaches_a_worker(
    api: AirflowApi, green_run: dict, platform: dict[str, Any]
) -> None:
    tasks = _tasks(api, green_run["dag_run_id"])
    assert green_run["state"] == "success", {t: ti["state"] for t, ti in tasks.items() if ti["state"] != "success"}
    node_tasks = {task_id: ti for task_id, ti in tasks.items() if task_id not in ("validate_params", PRODUCER_TASK_ID)}
    assert len(node_tasks) > 60
    assert {ti["state"] for ti in node_tasks.values()} == {"success"}
    # A task that reached a worker went through the executor's queue first; these were ended by the triggerer.
    on_workers = sorted(task_id for task_id, ti in node_tasks.items() if ti["queued_when"] or ti["pid"])
    assert on_workers == []
    assert tasks[PRODUCER_TASK_ID]["queued_when"] and tasks[PRODUCER_TASK_ID]["try_number"] == 1
    with _warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from analytics_core.fct_orders")
        assert cursor.fetchone()[0] > 0
        # The run history holds the producer's commands like any task's.
        cursor.execute(
            "select command from dbt_meta.invocations where run_id = %s and task_id = %s order by started_at",
            (green_run["dag_run_id"], PRODUCER_TASK_ID),
        )
        assert [row[0] for row in cursor.fetchall()] == ["source freshness", "build", "build"]


@pytest.fixture(scope="module")
def bad_price_run(api: AirflowApi, green_run: dict, platform: dict[str, Any]) -> dict:
    with _warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute("select product_id, price from raw.products order by product_id limit 1")
        product_id, price = cursor.fetchone()
        cursor.execute("update raw.products set price = %s where product_id = %s", (BAD_PRODUCT_PRICE, product_id))
    run = api.post(f"/api/v2/dags/{DAILY}/dagRuns", {"logical_date": None})
    return {**_finished_run(api, run["dag_run_id"]), "fix": (price, product_id)}


def test_a_failing_test_fails_its_task_with_dbts_message_alerts_and_stops_only_what_reads_it(
    api: AirflowApi, bad_price_run: dict, slack: SlackWebhookStub
) -> None:
    run_id = bad_price_run["dag_run_id"]
    tasks = _tasks(api, run_id)
    assert bad_price_run["state"] == "failed"
    failed = sorted(task_id for task_id, ti in tasks.items() if ti["state"] == "failed")
    assert failed == [PRICE_TEST_TASK]
    assert tasks[PRICE_TEST_TASK]["try_number"] == 1  # a data failure is never retried
    assert tasks["models.stg_greenery__products.run"]["state"] == "upstream_failed"
    assert tasks["models.stg_greenery__users.run"]["state"] == "success"
    assert tasks[PRODUCER_TASK_ID]["state"] == "success"
    log = _log(api, run_id, PRICE_TEST_TASK, 1)
    assert "source_not_negative_greenery_products_price" in log and "failing row" in log
    alerts = [text for text in slack.delivered if "source_not_negative_greenery_products_price" in text]
    assert alerts, slack.delivered
    assert PRICE_TEST_TASK in alerts[0]


def test_clearing_the_failed_test_after_fixing_the_data_runs_it_and_its_downstream_on_a_worker(
    api: AirflowApi, bad_price_run: dict, platform: dict[str, Any]
) -> None:
    run_id = bad_price_run["dag_run_id"]
    with _warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute("update raw.products set price = %s where product_id = %s", bad_price_run["fix"])
    api.post(
        f"/api/v2/dags/{DAILY}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [PRICE_TEST_TASK],
            "include_downstream": True,
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    run = _finished_run(api, run_id)
    tasks = _tasks(api, run_id)
    assert run["state"] == "success", {t: ti["state"] for t, ti in tasks.items() if ti["state"] != "success"}
    cleared = tasks[PRICE_TEST_TASK]
    assert cleared["try_number"] == 2 and cleared["queued_when"]  # it ran its own dbt test on a worker
    assert "Running this task's dbt command here" in _log(api, run_id, PRICE_TEST_TASK, 2)
    assert tasks["models.stg_greenery__products.run"]["state"] == "success"
    assert {ti["state"] for ti in tasks.values()} <= FINISHED
