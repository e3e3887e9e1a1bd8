"""``GREENERY_COSMOS_EXECUTION_MODE=producer`` on ``make up``'s platform with the real scheduler and triggerer: a
green daily run whose node tasks never reach a worker, beside an hourly run whose snapshots never overlap it; a
run on bad raw data whose failing test task fails with dbt's message and alerts a local HTTP Slack server while
the rest of the run goes on, and a clear of that task, after the data is fixed, that runs it on a worker; a
producer killed in the middle of its build, whose retry builds only what had not finished
(include/dbt_tasks/producer.py)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from include.dbt_tasks.producer import PRODUCER_TASK_ID
from tests.alerts.slack_stub import SlackWebhookStub
from tests.conftest import started_platform
from tests.e2e.test_platform import FINISHED, AirflowApi, _dbt_nodes_waiting_on_the_lock, _warehouse

pytestmark = pytest.mark.timeout(30 * 60)

DAILY, HOURLY = "greenery_daily", "greenery_hourly_snapshot"
PRICE_TEST_TASK = "models.greenery_products_source_test"
BAD_PRODUCT_PRICE = -4.5


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


def _finished_run(api: AirflowApi, run_id: str, timeout: float = 15 * 60, dag_id: str = DAILY) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")
        if run["state"] in ("success", "failed"):
            return run
        assert time.monotonic() < deadline, f"{run_id} still {run['state']} after {timeout:.0f} s"
        time.sleep(3)


def _tasks(api: AirflowApi, run_id: str, dag_id: str = DAILY) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in api.task_instances(dag_id, urllib.parse.quote(run_id))}


def _log(api: AirflowApi, run_id: str, task_id: str, try_number: int) -> str:
    request = urllib.request.Request(
        f"{api.base_url}/api/v2/dags/{DAILY}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/"
        f"{urllib.parse.quote(task_id)}/logs/{try_number}?full_content=true",
        headers={"Authorization": f"Bearer {api.token}", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.dumps(json.loads(response.read()))


@pytest.fixture(scope="module")
def green_runs(api: AirflowApi) -> dict[str, dict]:
    """The daily and hourly runs the scheduler starts on its own when the platform comes up (catchup is off), at
    the same time."""
    found = {}
    deadline = time.monotonic() + 5 * 60
    for dag_id in (DAILY, HOURLY):
        while not (runs := api.get(f"/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled&limit=5")["dag_runs"]):
            assert time.monotonic() < deadline, f"the scheduler started no {dag_id} run within 5 minutes"
            time.sleep(3)
        found[dag_id] = runs[0]
    return {dag_id: _finished_run(api, run["dag_run_id"], dag_id=dag_id) for dag_id, run in found.items()}


@pytest.fixture(scope="module")
def green_run(green_runs: dict[str, dict]) -> dict:
    return green_runs[DAILY]


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
    # The marts' assets, which the node tasks ended in the triggerer cannot record, come from the producer.
    events = api.get(f"/api/v2/assets/events?source_dag_id={DAILY}&limit=500")["asset_events"]
    uris = {event["uri"] for event in events if event["source_run_id"] == green_run["dag_run_id"]}
    assert any(uri.endswith("/analytics_product/product_funnel") for uri in uris), uris
    assert not any("/analytics_staging/" in uri for uri in uris), uris  # only the marts, as in local mode
    with _warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from analytics_core.fct_orders")
        assert cursor.fetchone()[0] > 0
        # The run history holds the producer's commands like any task's.
        cursor.execute(
            "select command from dbt_meta.invocations where run_id = %s and task_id = %s order by started_at",
            (green_run["dag_run_id"], PRODUCER_TASK_ID),
        )
        assert [row[0] for row in cursor.fetchall()] == ["source freshness", "build", "build"]


def test_the_hourly_and_daily_snapshot_steps_started_together_never_overlap(
    api: AirflowApi, green_runs: dict[str, dict]
) -> None:
    # Each DAG's producer runs its snapshots and holds the one dbt_snapshots slot while it runs; the node tasks
    # in the triggerer hold none. Every task that took a worker in that pool ran alone.
    on_workers = [
        (ti["start_date"], ti["end_date"], f"{dag_id}.{ti['task_id']}")
        for dag_id, run in green_runs.items()
        for ti in _tasks(api, run["dag_run_id"], dag_id).values()
        if ti["pool"] == "dbt_snapshots" and ti["queued_when"]
    ]
    assert {name.split(".")[0] for _, _, name in on_workers} == {DAILY, HOURLY}, on_workers
    assert {run["state"] for run in green_runs.values()} == {"success"}
    spans = sorted(on_workers)
    assert [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]] == []
    hourly = _tasks(api, green_runs[HOURLY]["dag_run_id"], HOURLY)
    assert {ti["state"] for ti in hourly.values()} == {"success"}
    assert [task_id for task_id, ti in hourly.items() if ti["queued_when"]] == [PRODUCER_TASK_ID]


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
    log = _log(api, run_id, PRICE_TEST_TASK, 2)
    assert "Running this task's dbt command here" in log
    # On the parse dbt_build kept on this machine: the run's window does not make dbt parse the project again.
    assert "dbt project loaded (nothing had changed since its last parse on this machine)" in log
    assert tasks["models.stg_greenery__products.run"]["state"] == "success"
    assert {ti["state"] for ti in tasks.values()} <= FINISHED


@pytest.fixture(scope="module")
def killed_run(api: AirflowApi, platform: dict[str, Any], green_runs: dict[str, dict]) -> dict:
    """A daily run whose producer is SIGKILLed while dbt builds: a session holds fct_page_views (built by the green
    run) locked, so dbt's build waits on it with the staging layer done; the producer's task process is killed,
    the lock released, and Airflow retries the producer (after the DAG's retry delay)."""
    lock = _warehouse(platform)
    with lock.cursor() as cursor:
        cursor.execute("lock table analytics_product.fct_page_views in access exclusive mode")
    try:
        run = api.post(f"/api/v2/dags/{DAILY}/dagRuns", {"logical_date": None})
        waiting: set[str] = set()
        deadline = time.monotonic() + 10 * 60
        while "model.greenery.fct_page_views" not in waiting:
            assert time.monotonic() < deadline, f"dbt never reached fct_page_views; waiting: {waiting}"
            waiting |= _dbt_nodes_waiting_on_the_lock(platform)
            time.sleep(0.5)
        producer = _tasks(api, run["dag_run_id"])[PRODUCER_TASK_ID]
        assert producer["state"] == "running" and producer["pid"], producer
        os.kill(producer["pid"], signal.SIGKILL)
    finally:
        lock.close()
    return {**_finished_run(api, run["dag_run_id"]), "waiting": waiting}


def test_a_killed_producer_is_retried_and_builds_only_what_had_not_finished(
    api: AirflowApi, killed_run: dict, platform: dict[str, Any]
) -> None:
    run_id = killed_run["dag_run_id"]
    tasks = _tasks(api, run_id)
    assert "model.greenery.fct_page_views" in killed_run["waiting"]
    assert killed_run["state"] == "success", {t: ti["state"] for t, ti in tasks.items() if ti["state"] != "success"}
    assert tasks[PRODUCER_TASK_ID]["try_number"] == 2
    # No node task noticed: each waited in the triggerer for its result, from either try of the producer.
    node_tasks = {task_id: ti for task_id, ti in tasks.items() if task_id not in ("validate_params", PRODUCER_TASK_ID)}
    assert [task_id for task_id, ti in node_tasks.items() if ti["try_number"] != 1 or ti["queued_when"]] == []
    with _warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute(
            "select i.command, n.unique_id from dbt_meta.invocations i join dbt_meta.node_results n using "
            "(invocation_id) where i.run_id = %s and i.task_id = %s and i.try_number = 2",
            (run_id, PRODUCER_TASK_ID),
        )
        rebuilt = {unique_id for command, unique_id in cursor.fetchall()}
        # The retry built the page views and what reads them, not the staging layer the first try had finished.
        assert "model.greenery.fct_page_views" in rebuilt
        assert not {"model.greenery.stg_greenery__events", "model.greenery.stg_greenery__users"} & rebuilt
        cursor.execute(
            "select command from dbt_meta.invocations where run_id = %s and task_id = %s and try_number = 2",
            (run_id, PRODUCER_TASK_ID),
        )
        assert [row[0] for row in cursor.fetchall()] == ["build"]  # freshness and snapshots had ended
        # Every page view that had arrived before the run is in the mart exactly once.
        cursor.execute("select count(*), count(distinct event_id) from analytics_product.fct_page_views")
        rows, keys = cursor.fetchone()
        assert rows == keys
        cursor.execute(
            "select count(*) from raw.events where event_type = 'page_view' and _loaded_at < %s and event_id not in "
            "(select event_id from analytics_product.fct_page_views)",
            (killed_run["start_date"],),
        )
        assert cursor.fetchone()[0] == 0
    assert "building what had not finished" in _log(api, run_id, PRODUCER_TASK_ID, 2)
