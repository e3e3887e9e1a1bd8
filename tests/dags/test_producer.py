"""The producer execution mode's bookkeeping (include/dbt_tasks/producer.py): which dbt nodes end which node task,
when a task's result is published, and what a node task that resumes on a worker does with it. The whole mode on
the real scheduler and triggerer: tests/e2e/test_platform.py."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent

from include import settings
from include.dbt_tasks.follower_trigger import (
    FAILED,
    NOT_RUN,
    PRODUCER_GONE,
    REPORT_FAILURE,
    RUN_HERE,
    SUCCESS,
    NodeResultTrigger,
    result_key,
)
from include.dbt_tasks.producer import (
    BUILD,
    FRESHNESS,
    SNAPSHOT,
    DbtProducerOperator,
    NodeTask,
    _Publisher,
    _step_nodes,
    node_tasks,
    resume_node_task,
)


class RecordingTi:
    """Keeps what the producer pushes, as Airflow's XCom would."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        assert key not in self.pushed, f"{key} pushed twice"
        self.pushed[key] = value


@pytest.fixture(scope="module")
def manifest(dbt_manifest: Path) -> dict:
    return json.loads(settings.DBT_MANIFEST_PATH.read_text())


def test_every_model_snapshot_and_test_ends_exactly_one_node_task(daily, manifest) -> None:
    found = node_tasks(daily.tasks, manifest)
    by_step = Counter(task.step for task in found)
    assert by_step[FRESHNESS] == 1 and by_step["docs"] == 1
    owners = Counter(node for task in found if task.step in (SNAPSHOT, BUILD) for node in task.nodes)
    buildable = {
        unique_id
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "snapshot", "test")
        and not node["original_file_path"].startswith("analyses")
    }
    assert set(owners) == buildable
    assert {node for node, count in owners.items() if count > 1} == set()
    freshness = next(task for task in found if task.step == FRESHNESS)
    assert freshness.nodes and all(node.startswith("source.greenery.greenery.") for node in freshness.nodes)


def _publisher(*followers: NodeTask) -> tuple[_Publisher, RecordingTi]:
    ti = RecordingTi()
    names = {node: node.split(".")[2] for follower in followers for node in follower.nodes}
    return _Publisher(ti, list(followers), names), ti


def test_a_task_is_published_as_soon_as_dbt_finished_all_of_its_nodes() -> None:
    model = NodeTask("models.fct_orders.run", frozenset({"model.greenery.fct_orders"}), BUILD)
    tests = NodeTask(
        "models.fct_orders.test", frozenset({"test.greenery.unique_fct_orders.1", "test.greenery.fresh.2"}), BUILD
    )
    publisher, ti = _publisher(model, tests)
    publisher.invocation_id = "inv-1"
    publisher.node_finished("model.greenery.fct_orders", "success", "SELECT 10", 0, 0.5)
    assert ti.pushed[result_key(model.task_id)]["outcome"] == SUCCESS
    publisher.node_finished("test.greenery.unique_fct_orders.1", "pass", "", 0, 0.1)
    assert result_key(tests.task_id) not in ti.pushed  # one of its two tests is still running
    publisher.node_finished("test.greenery.fresh.2", "fail", "Got 3 results, configured to fail if != 0", 3, 0.2)
    result = ti.pushed[result_key(tests.task_id)]
    assert result["outcome"] == FAILED and result["invocation_id"] == "inv-1"
    assert [node["failures"] for node in result["nodes"]] == [3, None]
    assert any("Got 3 results" in line for line in result["log"])


def test_after_a_step_the_tasks_dbt_did_not_finish_are_published_as_not_run() -> None:
    ran = NodeTask("snapshots.a.snapshot", frozenset({"snapshot.greenery.a"}), SNAPSHOT)
    missed = NodeTask("snapshots.a.test", frozenset({"test.greenery.unique_a.1"}), SNAPSHOT)
    later = NodeTask("models.b.run", frozenset({"model.greenery.b"}), BUILD)
    publisher, ti = _publisher(ran, missed, later)
    publisher.node_finished("snapshot.greenery.a", "success", "", 0, 1.0)
    publisher.finish_step(SNAPSHOT)
    assert ti.pushed[result_key(missed.task_id)]["outcome"] == NOT_RUN  # it runs its own dbt on a worker
    assert result_key(later.task_id) not in ti.pushed  # another step's task waits for that step


def _context(task: Any) -> dict[str, Any]:
    return {"task": task, "ti": None, "dag_run": None}


def _failure(status: str, message: str, failures: int | None = None) -> dict[str, Any]:
    node = {"unique_id": "test.greenery.x.1", "name": "x", "status": status, "message": message, "failures": failures}
    return {"action": REPORT_FAILURE, "result": {"outcome": FAILED, "nodes": [node], "invocation_id": "inv"}}


def test_a_failed_data_test_fails_its_task_for_good_and_a_failed_model_retries(daily) -> None:
    test_task = daily.get_task("models.fct_orders.test")
    with pytest.raises(AirflowFailException, match="dbt failed x in dbt_build"):
        resume_node_task(test_task, _context(test_task), _failure("fail", "Got 2 results", 2))
    # The same test whose connection dropped is retried like a model.
    dropped = "could not connect to server: Connection refused"
    with pytest.raises(AirflowException) as raised:
        resume_node_task(test_task, _context(test_task), _failure("error", dropped))
    assert not isinstance(raised.value, AirflowFailException)
    model_task = daily.get_task("models.fct_orders.run")
    with pytest.raises(AirflowException) as raised:
        resume_node_task(model_task, _context(model_task), _failure("error", "relation does not exist"))
    assert not isinstance(raised.value, AirflowFailException)


def test_a_node_task_whose_producer_ended_says_so(daily) -> None:
    task = daily.get_task("models.fct_orders.run")
    with pytest.raises(AirflowFailException, match="dbt_build ended failed before dbt reached"):
        resume_node_task(task, _context(task), {"action": PRODUCER_GONE, "producer_state": "failed"})


def test_a_node_dbt_skipped_though_its_upstream_tasks_passed_is_built_by_its_own_task() -> None:
    # dbt build skips a model whose unit test failed; Airflow sees no failed upstream task, so the task builds it.
    model = NodeTask("models.a.run", frozenset({"model.greenery.a"}), BUILD)
    publisher, ti = _publisher(model)
    publisher.node_finished("unit_test.greenery.a.a_sums_orders", "fail", "actual differs from expected", 0, 0.1)
    publisher.node_finished("model.greenery.a", "skipped", "", 0, 0.0)
    assert ti.pushed[result_key(model.task_id)]["outcome"] == NOT_RUN
    # The unit test has no task: the producer reports it itself.
    assert publisher.orphan_failures() == ["a_sums_orders"]


def test_a_retried_producer_builds_only_the_node_tasks_still_waiting(daily, manifest, monkeypatch) -> None:
    # The try before was killed after the staging layer: what ended is not built again, and a task whose upstream
    # task failed is left to its own trigger (it resumes on a worker once that upstream passes).
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    followers = node_tasks(daily.tasks, manifest)
    states = {task_id: "success" for task_id in daily.task_ids}
    states |= {task_id: "deferred" for task_id in daily.task_ids if task_id.startswith("models.fct_")}
    states |= {"models.dim_users.run": "up_for_retry", "models.dim_users.test": None, "docs_generate": None}
    states |= {"models.fct_orders.run": "deferred", "models.fct_orders.test": None}
    asked = {}

    def get_task_states(dag_id, task_ids, run_ids):
        asked.update(dag_id=dag_id, task_ids=set(task_ids))
        return {run_ids[0]: {task_id: states[task_id] for task_id in task_ids}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
    ti = type("Ti", (), {"dag_id": daily.dag_id, "run_id": "r"})()
    producer = type("Producer", (), {"dag": daily})()
    pending = DbtProducerOperator._unfinished(producer, ti, followers)
    waiting = {f.task_id for f in pending}
    assert asked == {"dag_id": "greenery_daily", "task_ids": set(daily.task_ids)}
    assert "models.fct_orders.run" in waiting and "models.fct_page_views.run" in waiting
    assert not {"models.stg_greenery__orders.run", "models.dim_users.run"} & waiting  # ended, or retries alone
    # dim_users failed: its test and everything below it wait for it, not for this producer.
    assert "models.dim_users.test" not in waiting and "docs_generate" not in waiting
    nodes = _step_nodes(None, pending)
    assert nodes[SNAPSHOT] == [] and "model.greenery.fct_orders" in nodes[BUILD]
    assert "model.greenery.stg_greenery__orders" not in nodes[BUILD]
    # With a selection, only the nodes both pick.
    assert _step_nodes(["model.greenery.fct_orders"], pending) == {SNAPSHOT: [], BUILD: ["model.greenery.fct_orders"]}
    assert _step_nodes(["snapshot.greenery.orders_snapshot", "model.greenery.a"]) == {
        SNAPSHOT: ["snapshot.greenery.orders_snapshot"],
        BUILD: ["snapshot.greenery.orders_snapshot", "model.greenery.a"],
    }


class _FakeTi:
    dag_id, run_id, task_id = "greenery_daily", "r", "models.fct_orders.run"

    def __init__(self, try_number: int = 1) -> None:
        self.try_number = try_number


def _trigger_events(trigger: NodeResultTrigger, results: list[Any], states: list[str | None]) -> tuple[list, dict]:
    """Run the trigger to its first event, its XCom reads answered from ``results`` and its producer-state reads
    from ``states`` (the last answer repeats)."""
    calls = Counter()

    async def xcom(task_id: str, key: str) -> Any:
        calls[key] += 1
        if key == "return_value":
            return {"selected": ["model.greenery.other"], "selection_text": "select=other"}
        return results[min(calls[key], len(results)) - 1]

    async def producer_state() -> str | None:
        calls["state"] += 1
        return states[min(calls["state"], len(states)) - 1]

    trigger._xcom, trigger._producer_state = xcom, producer_state

    async def first() -> list:
        async for event in trigger.run():
            return [event]
        return []

    return asyncio.run(first()), calls


def _trigger(try_number: int = 1, clear_number: int | str = 0, selectable: bool = False) -> NodeResultTrigger:
    trigger = NodeResultTrigger(
        "dbt_build",
        ["model.greenery.fct_orders"],
        selectable=selectable,
        validate_task_id="validate_params",
        poll_seconds=0,
        clear_number=clear_number,
    )
    trigger.task_instance = _FakeTi(try_number)
    return trigger


def test_a_node_task_ends_in_the_triggerer_on_one_read_when_its_result_is_there() -> None:
    events, calls = _trigger_events(_trigger(), [{"outcome": SUCCESS, "clear_number": 0}], ["running"])
    assert isinstance(events[0], TaskSuccessEvent) and calls == {result_key(_FakeTi.task_id): 1}


def test_a_result_from_before_the_run_was_cleared_is_never_used() -> None:
    stale = {"outcome": FAILED, "clear_number": 1, "nodes": []}
    # The producer ran again since the clear: its new result ends the task.
    events, _ = _trigger_events(
        _trigger(clear_number="2"), [stale, None, {"outcome": SUCCESS, "clear_number": 2}], [None, "running"]
    )
    assert isinstance(events[0], TaskSuccessEvent)
    # The producer was not cleared: its old result says nothing about this try, which runs on a worker.
    events, _ = _trigger_events(_trigger(clear_number="2"), [stale], ["success"])
    assert events[0].payload["action"] == RUN_HERE


def test_a_node_task_outside_the_selection_is_skipped_and_a_retry_waits_for_the_producer() -> None:
    events, _ = _trigger_events(_trigger(selectable=True), [None], ["running"])
    assert isinstance(events[0], TaskSkippedEvent)
    # A retry ignores the result it failed on and runs its node on a worker once the producer has ended.
    failed = {"outcome": FAILED, "clear_number": 0, "nodes": []}
    events, calls = _trigger_events(_trigger(try_number=2), [failed], ["running", "running", "success"])
    assert events[0].payload["action"] == RUN_HERE and calls["state"] == 3
    assert calls[result_key(_FakeTi.task_id)] == 0
    # A producer that failed for good before it reached the node: the task says so at once.
    events, _ = _trigger_events(_trigger(), [None], ["failed"])
    assert events[0].payload["action"] == PRODUCER_GONE
