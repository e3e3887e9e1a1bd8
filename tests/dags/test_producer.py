"""The producer execution mode's bookkeeping: which dbt nodes end which node task (include/dbt_tasks/node_tasks.py),
when and how a task's result is published (include/dbt_tasks/publisher.py), what a node task that resumes on a worker
does with it (include/dbt_tasks/resume.py), and what a retried producer builds (include/dbt_tasks/producer.py). How
the node tasks end in the triggerer: tests/dags/test_follower_trigger.py; the whole mode on the real scheduler and
triggerer: tests/e2e/test_platform.py."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include import settings
from include.dbt_tasks.node_results import (
    FAILED,
    NOT_RUN,
    REPORT_FAILURE,
    RESULTS_KEY,
    RUN_HERE,
    SUCCESS,
    task_result,
)
from include.dbt_tasks.node_tasks import BUILD, FRESHNESS, SNAPSHOT, NodeTask, node_tasks, step_nodes
from include.dbt_tasks.producer import DbtProducerOperator
from include.dbt_tasks.publisher import Publisher
from include.dbt_tasks.resume import resume_node_task


class RecordingTi:
    """Keeps what the producer pushes, as Airflow's XCom would (the last value of each key)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.pushed: dict[str, Any] = {}
        self.pushes: Counter = Counter()
        self.delay = delay
        self.try_number = 1

    def xcom_push(self, key: str, value: Any) -> None:
        time.sleep(self.delay)
        self.pushed[key] = json.loads(json.dumps(value))  # what a reader gets back: JSON
        self.pushes[key] += 1


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


def _publisher(*followers: NodeTask, delay: float = 0.0) -> tuple[Publisher, RecordingTi]:
    ti = RecordingTi(delay)
    names = {node: node.split(".")[2] for follower in followers for node in follower.nodes}
    return Publisher(ti, list(followers), names), ti


def _results(ti: RecordingTi) -> dict[str, Any]:
    return ti.pushed[RESULTS_KEY]["tasks"]


def test_a_task_is_published_as_soon_as_dbt_finished_all_of_its_nodes_with_when(monkeypatch) -> None:
    model = NodeTask("models.fct_orders.run", frozenset({"model.greenery.fct_orders"}), BUILD)
    tests = NodeTask(
        "models.fct_orders.test", frozenset({"test.greenery.unique_fct_orders.1", "test.greenery.fresh.2"}), BUILD
    )
    publisher, ti = _publisher(model, tests)
    publisher.invocation_id = "inv-1"
    with publisher:
        # Before any result: this try of the producer says which clear of the run it serves.
        assert ti.pushed[RESULTS_KEY]["tasks"] == {} and ti.pushed[RESULTS_KEY]["clear_number"] == 0
        before = time.time()
        publisher.node_finished("model.greenery.fct_orders", "success", "SELECT 10", 0, 0.5)
        publisher.node_finished("test.greenery.unique_fct_orders.1", "pass", "", 0, 0.1)
        assert tests.task_id not in publisher.published()["tasks"]  # one of its two tests is still running
        publisher.node_finished("test.greenery.fresh.2", "fail", "Got 3 results, configured to fail if != 0", 3, 0.2)
    results = _results(ti)
    assert results[model.task_id]["outcome"] == SUCCESS
    assert before <= results[model.task_id]["finished_at"] <= results[tests.task_id]["finished_at"] <= time.time()
    result = results[tests.task_id]
    assert result["outcome"] == FAILED and result["invocation_id"] == "inv-1"
    assert [node["failures"] for node in result["nodes"]] == [3, None]
    assert any("Got 3 results" in line for line in result["log"])
    assert task_result(ti.pushed[RESULTS_KEY], tests.task_id, 0) == result


def test_results_that_arrive_during_a_push_go_out_together_in_the_next_one() -> None:
    followers = [NodeTask(f"models.m{i}.run", frozenset({f"model.greenery.m{i}"}), BUILD) for i in range(40)]
    publisher, ti = _publisher(*followers, delay=0.05)
    with publisher:
        threads = [
            threading.Thread(target=publisher.node_finished, args=(f"model.greenery.m{i}", "success", "", 0, 0.1))
            for i in range(40)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert set(_results(ti)) == {f.task_id for f in followers}  # the last push has everything
    assert ti.pushes[RESULTS_KEY] < 20  # dbt's threads never waited for one push per result


def test_after_a_step_the_tasks_dbt_did_not_finish_are_published_as_not_run() -> None:
    ran = NodeTask("snapshots.a.snapshot", frozenset({"snapshot.greenery.a"}), SNAPSHOT)
    missed = NodeTask("snapshots.a.test", frozenset({"test.greenery.unique_a.1"}), SNAPSHOT)
    later = NodeTask("models.b.run", frozenset({"model.greenery.b"}), BUILD)
    publisher, _ = _publisher(ran, missed, later)
    publisher.node_finished("snapshot.greenery.a", "success", "", 0, 1.0)
    publisher.finish_step(SNAPSHOT)
    published = publisher.published()["tasks"]
    assert published[missed.task_id]["outcome"] == NOT_RUN  # its trigger decides from its upstream tasks
    assert later.task_id not in published  # another step's task waits for that step


def test_a_node_dbt_skipped_is_left_to_its_task_and_an_orphan_failure_to_the_producer() -> None:
    model = NodeTask("models.a.run", frozenset({"model.greenery.a"}), BUILD)
    publisher, _ = _publisher(model)
    publisher.node_finished("unit_test.greenery.a.a_sums_orders", "fail", "actual differs from expected", 0, 0.1)
    publisher.node_finished("model.greenery.a", "skipped", "", 0, 0.0)
    assert publisher.published()["tasks"][model.task_id]["outcome"] == NOT_RUN
    # The unit test has no task: the producer reports it itself.
    assert publisher.orphan_failures() == ["a_sums_orders"]


class _ResumeTi:
    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _context(task: Any) -> dict[str, Any]:
    return {"task": task, "ti": _ResumeTi(), "dag_run": type("DagRun", (), {"clear_number": 0})()}


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


def test_a_node_task_told_to_run_here_runs_its_own_dbt_command(daily) -> None:
    class Task:
        task_type = "DbtRunLocalOperator"

        def execute(self, context: Any) -> str:
            return "ran"

    context = _context(Task())
    assert resume_node_task(daily.get_task("models.fct_orders.run"), context, {"action": RUN_HERE}) == "ran"


def test_a_retried_producer_builds_only_the_node_tasks_still_waiting(daily, manifest, monkeypatch) -> None:
    # The try before was killed after the staging layer: what ended is not built again, and a task whose upstream
    # task failed is left to its own trigger (it runs on a worker once that upstream passes).
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    followers = node_tasks(daily.tasks, manifest)
    states = {task_id: "success" for task_id in daily.task_ids}
    states |= {task_id: "deferred" for task_id in daily.task_ids if task_id.startswith("models.fct_")}
    states |= {"models.dim_users.run": "up_for_retry", "models.dim_users.test": "deferred", "docs_generate": None}
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
    nodes = step_nodes(None, pending)
    assert nodes[SNAPSHOT] == [] and "model.greenery.fct_orders" in nodes[BUILD]
    assert "model.greenery.stg_greenery__orders" not in nodes[BUILD]
    # With a selection, only the nodes both pick.
    assert step_nodes(["model.greenery.fct_orders"], pending) == {SNAPSHOT: [], BUILD: ["model.greenery.fct_orders"]}
    assert step_nodes(["snapshot.greenery.orders_snapshot", "model.greenery.a"]) == {
        SNAPSHOT: ["snapshot.greenery.orders_snapshot"],
        BUILD: ["snapshot.greenery.orders_snapshot", "model.greenery.a"],
    }
