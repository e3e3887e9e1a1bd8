"""The producer execution mode's bookkeeping (include/dbt_tasks/producer.py): which dbt nodes end which node task,
when a task's result is published, and what a node task that resumes on a worker does with it. The whole mode on
the real scheduler and triggerer: tests/e2e/test_producer_mode.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include import settings
from include.dbt_tasks.follower_trigger import (
    FAILED,
    NOT_RUN,
    PRODUCER_GONE,
    REPORT_FAILURE,
    SUCCESS,
    result_key,
)
from include.dbt_tasks.producer import (
    BUILD,
    FRESHNESS,
    SNAPSHOT,
    NodeTask,
    _Publisher,
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
