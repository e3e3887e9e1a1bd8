"""How a node task of the producer mode ends, decided in the triggerer (include/dbt_tasks/follower_trigger.py) from
one shared read of its run (include/dbt_tasks/run_watch.py) and the rule it was rendered with
(include/dbt_tasks/upstream_gate.py). The real DAG's graph, states as Airflow would report them. The same on the real
scheduler and triggerer: tests/e2e/test_platform.py."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent

from include.dbt_tasks import run_watch
from include.dbt_tasks.follower_trigger import NodeResultTrigger, decide
from include.dbt_tasks.node_results import (
    FAILED,
    NOT_RUN,
    REPORT_FAILURE,
    RESULTS_KEY,
    RUN_HERE,
    SKIPPED,
    SUCCESS,
    document,
    try_made_at,
)
from include.dbt_tasks.upstream_gate import RunGraph

SOURCE_TEST = "models.greenery_products_source_test"
STAGING = "models.stg_greenery__products.run"
STAGING_TEST = "models.stg_greenery__products.test"
USERS = "models.stg_greenery__users.run"
ORDERS = "models.fct_orders.run"


@pytest.fixture(scope="module")
def graph(daily) -> RunGraph:
    return RunGraph.of(daily)


@pytest.fixture(scope="module")
def all_deferred(daily) -> dict[str, str | None]:
    """A producer-mode run a few seconds in: the form checked, dbt_build running, every node task deferred."""
    states = {task_id: "deferred" for task_id in daily.task_ids}
    return states | {"validate_params": "success", "dbt_build": "running", "fail_run": None}


# When the run's node task tries were made, and when the producer's try started (seconds since the epoch).
RUN_MADE, PRODUCER_STARTED = 1_000.0, 1_002.0


def _published(started_at: float = PRODUCER_STARTED, **results: dict[str, Any]) -> dict[str, Any]:
    published = document(0, 1, started_at)
    published["tasks"] = results
    return published


def _result(outcome: str, *nodes: dict[str, Any], why: str = "") -> dict[str, Any]:
    return {"outcome": outcome, "nodes": list(nodes), "log": [f"dbt {outcome}"], "why": why, "finished_at": 1.0}


def _snapshot(graph: RunGraph, states: dict, published: dict | None = None, plan: dict | None = None):
    plan = {"selected": None, "selection_text": None} if plan is None else plan
    return run_watch.Snapshot(0, states, published, plan, 0.0, graph)


def _decide(task_id: str, snapshot, made_at: float = RUN_MADE, nodes=("model.greenery.x",)):
    return decide(task_id, list(nodes), True, made_at, snapshot)


def test_a_task_ends_as_soon_as_the_producer_published_its_result(graph, all_deferred) -> None:
    snapshot = _snapshot(graph, all_deferred, _published(**{ORDERS: _result(SUCCESS)}))
    decision = _decide(ORDERS, snapshot)
    assert decision.action == SUCCESS and decision.lines == ["dbt success"]
    # The others wait for theirs, whatever their upstream tasks are doing.
    assert _decide(USERS, snapshot) is None
    failed = _snapshot(graph, all_deferred, _published(**{ORDERS: _result(FAILED)}))
    assert _decide(ORDERS, failed).action == REPORT_FAILURE  # a worker shows dbt's error and sends the alert


def test_a_refused_form_skips_every_node_task_at_once_with_one_line(graph, all_deferred) -> None:
    states = all_deferred | {"validate_params": "failed", "dbt_build": "upstream_failed"}
    for task_id in (ORDERS, "source_freshness", "docs_generate"):
        decision = _decide(task_id, _snapshot(graph, states, None, {}))
        assert decision.action == SKIPPED
        assert decision.why == "validate_params failed: this run builds nothing. Its log says why."
    # Before the form is checked, nothing is decided.
    assert _decide(ORDERS, _snapshot(graph, all_deferred | {"validate_params": "running"}, None, None)) is None


def test_the_selection_and_an_empty_run_skip_with_their_reason(graph, all_deferred) -> None:
    plan = {"selected": ["model.greenery.other"], "selection_text": "--select other"}
    decision = _decide(ORDERS, _snapshot(graph, all_deferred, None, plan), nodes=["model.greenery.fct_orders"])
    assert (decision.action, decision.why) == (SKIPPED, "Not in this run's selection (--select other).")
    nothing = {"selected": [], "selection_text": "nothing to rerun: no dbt node failed in run r"}
    decision = _decide("docs_generate", _snapshot(graph, all_deferred, None, nothing), nodes=[])
    assert decision.why == "Nothing to build in this run: nothing to rerun: no dbt node failed in run r."


def test_a_node_dbt_skipped_below_a_failure_ends_skipped_naming_it_and_never_reaches_a_worker(
    graph, all_deferred
) -> None:
    failing = {"unique_id": "test.greenery.price.1", "name": "source_not_negative_price", "status": "fail"}
    published = _published(
        **{SOURCE_TEST: _result(FAILED, failing), STAGING: _result(NOT_RUN), STAGING_TEST: _result(NOT_RUN)}
    )
    # The failed test's task is still reporting its failure on a worker: the model below it waits.
    assert _decide(STAGING, _snapshot(graph, all_deferred, published)) is None
    states = all_deferred | {SOURCE_TEST: "failed"}
    decision = _decide(STAGING, _snapshot(graph, states, published))
    assert decision.action == SKIPPED
    assert decision.why.startswith(f"Not built: upstream task {SOURCE_TEST} failed (dbt: source_not_negative_price).")
    # One step further down: the same failure is named, while the model above it is still deferred (a failed task
    # stays failed, so what it stops ends at once, not one level after the other) and once it was skipped.
    decision = _decide(STAGING_TEST, _snapshot(graph, states, published))
    assert decision.action == SKIPPED and SOURCE_TEST in decision.why
    states |= {STAGING: "skipped"}
    decision = _decide(STAGING_TEST, _snapshot(graph, states, published))
    assert decision.action == SKIPPED and SOURCE_TEST in decision.why


def test_a_node_dbt_skipped_although_its_upstream_passed_runs_on_its_own(graph, all_deferred) -> None:
    # A failing unit test skips its model in dbt build; Airflow sees no failed upstream task.
    published = _published(**{STAGING: _result(NOT_RUN, why="dbt build did not run every node of this task")})
    states = all_deferred | {SOURCE_TEST: "success"}
    decision = _decide(STAGING, _snapshot(graph, states, published))
    assert (decision.action, decision.why) == (RUN_HERE, "dbt build did not run every node of this task")


def test_a_producer_that_failed_for_good_skips_what_it_did_not_reach(graph, all_deferred) -> None:
    states = all_deferred | {"dbt_build": "failed"}
    decision = _decide(ORDERS, _snapshot(graph, states, _published()))
    assert decision.action == SKIPPED and decision.why.startswith("dbt_build ended failed before dbt reached")
    # While it retries, the node tasks wait for its next try.
    assert _decide(ORDERS, _snapshot(graph, all_deferred | {"dbt_build": "up_for_retry"}, _published())) is None


def test_a_result_from_before_the_run_was_cleared_is_never_used(graph, all_deferred, daily) -> None:
    cleared_at = PRODUCER_STARTED + 60  # the run is cleared a minute after its producer started
    stale = _published(**{ORDERS: _result(FAILED)})
    # The producer runs again for this clear: the task waits for its new result, then takes it.
    assert _decide(ORDERS, _snapshot(graph, all_deferred, stale), made_at=cleared_at) is None
    fresh = _published(cleared_at + 1, **{ORDERS: _result(SUCCESS)})
    assert _decide(ORDERS, _snapshot(graph, all_deferred, fresh), made_at=cleared_at).action == SUCCESS
    # Cleared without the producer: it waits for its upstream tasks in this clear, then runs on a worker, although
    # the producer's result for it (from before the clear) was a pass.
    stale = _published(**{ORDERS: _result(SUCCESS)})
    upstream = daily.get_task(ORDERS).get_flat_relative_ids(upstream=True)
    states = all_deferred | {"dbt_build": "success"} | {task_id: "success" for task_id in upstream}
    states[sorted(daily.get_task(ORDERS).upstream_task_ids)[0]] = "deferred"
    assert _decide(ORDERS, _snapshot(graph, states, stale), made_at=cleared_at) is None
    states |= {task_id: "success" for task_id in upstream}
    decision = _decide(ORDERS, _snapshot(graph, states, stale), made_at=cleared_at)
    assert decision.action == RUN_HERE and "ran before this try of the task" in decision.why
    # A producer that failed in an earlier clear does not skip what was cleared since.
    states["dbt_build"] = "failed"
    assert _decide(ORDERS, _snapshot(graph, states, stale), made_at=cleared_at).action == RUN_HERE


def test_a_try_is_dated_by_its_uuid7_id() -> None:
    made = uuid.UUID(int=(1_765_000_000_123 << 80) | (0x7 << 76) | (0x2 << 62) | 42)
    assert made.version == 7
    assert try_made_at(made) == try_made_at(str(made)) == 1_765_000_000.123
    assert try_made_at(uuid.uuid4()) == 0.0 and try_made_at("not an id") == 0.0 and try_made_at(None) == 0.0


def test_a_retry_ignores_the_result_it_failed_on_and_follows_its_upstream_tasks(graph, all_deferred, daily) -> None:
    published = _published(**{STAGING: _result(FAILED)})
    retried_at = PRODUCER_STARTED + 30  # Airflow makes the retry's try when the first one failed
    # It runs on its own once the producer has ended (as before), and its upstream tasks let it.
    assert _decide(STAGING, _snapshot(graph, all_deferred, published), made_at=retried_at) is None
    states = all_deferred | {"dbt_build": "success", SOURCE_TEST: "success"}
    states |= {task_id: "success" for task_id in daily.get_task(STAGING).get_flat_relative_ids(upstream=True)}
    assert _decide(STAGING, _snapshot(graph, states, published), made_at=retried_at).action == RUN_HERE


def test_a_stale_source_does_not_stop_the_snapshots_and_a_skipped_selection_does_not_stop_what_follows(
    graph, all_deferred
) -> None:
    states = all_deferred | {"dbt_build": "success", "source_freshness": "failed"}
    effective = graph.effective_states(states)
    snapshot = next(t for t in graph.upstream if t.startswith("snapshots.") and "source_freshness" in graph.upstream[t])
    assert graph.outcome(snapshot, effective) == "run"
    # A task skipped because the selection left it out is no failure: the selected task below it runs.
    states = all_deferred | {"dbt_build": "success", SOURCE_TEST: "skipped"}
    assert graph.effective_states(states)[SOURCE_TEST] == "skipped"
    assert graph.outcome(STAGING, graph.effective_states(states)) == "run"


# -- the trigger itself, with the shared read of its run -------------------------------------------------------------


class FakeRun:
    """A run's task states and XComs as the Task SDK would return them, counting the reads."""

    def __init__(self, states: dict[str, str | None], xcoms: dict[tuple[str, str], Any] | None = None) -> None:
        self.states_now, self.xcoms = dict(states), dict(xcoms or {})
        self.calls: Counter = Counter()

    async def states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        self.calls["states"] += 1
        return dict(self.states_now)

    async def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        self.calls[key] += 1
        return self.xcoms.get((task_id, key))


def _uuid7(at: float) -> uuid.UUID:
    """An id as Airflow gives a try of a task: a UUID7 made at ``at`` (seconds since the epoch)."""
    return uuid.UUID(int=(round(at * 1000) << 80) | (0x7 << 76) | (0x2 << 62))


class _Ti:
    dag_id, run_id = "greenery_daily", "manual__1"

    def __init__(self, task_id: str, task: Any, try_number: int = 1, made_at: float = RUN_MADE) -> None:
        self.task_id, self.task, self.try_number, self.id = task_id, task, try_number, _uuid7(made_at)


def _trigger(daily, task_id: str, try_number: int = 1, made_at: float = RUN_MADE) -> NodeResultTrigger:
    trigger = NodeResultTrigger(**daily.get_task(task_id).start_trigger_args.trigger_kwargs)
    trigger.task_instance = _Ti(task_id, daily.get_task(task_id), try_number, made_at)
    return trigger


async def _first_event(trigger: NodeResultTrigger, run: FakeRun) -> Any:
    async for event in trigger.run(reader=run):
        return event
    return None


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_watch, "FAST_SECONDS", 0.01)
    monkeypatch.setattr(run_watch, "SLOW_SECONDS", 0.02)


def test_the_triggers_of_a_run_share_one_read_of_it_per_poll(daily, all_deferred, quick_polls) -> None:
    followers = [t.task_id for t in daily.tasks if t.start_from_trigger]
    assert len(followers) > 60
    run = FakeRun(all_deferred, {("validate_params", "return_value"): {"selected": None}})

    async def scenario() -> list[Any]:
        waiting = [asyncio.ensure_future(_first_event(_trigger(daily, task_id), run)) for task_id in followers]
        await asyncio.sleep(0.2)  # everyone waits: the producer has published nothing
        published = document(0, 1, PRODUCER_STARTED)
        published["tasks"] = {task_id: _result(SUCCESS) for task_id in followers}
        run.xcoms[("dbt_build", RESULTS_KEY)] = published
        return await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)

    events = asyncio.run(scenario())
    assert all(isinstance(event, TaskSuccessEvent) for event in events)
    # One read of the results per poll for the whole run, not one per trigger and poll.
    polls = run.calls[RESULTS_KEY]
    assert 2 <= polls < 60, run.calls
    assert run.calls["states"] <= polls and run.calls["return_value"] == 1
    assert run_watch._WATCHES == {}  # the last trigger to leave stopped the watch


def test_a_retried_or_cleared_try_takes_only_what_a_later_try_of_the_producer_published(
    daily, all_deferred, quick_polls
) -> None:
    states = all_deferred | {"dbt_build": "success"}
    states |= {task_id: "success" for task_id in daily.get_task(STAGING).get_flat_relative_ids(upstream=True)}
    xcoms = {("dbt_build", RESULTS_KEY): _published(**{STAGING: _result(FAILED)})}
    retry = _trigger(daily, STAGING, try_number=2, made_at=PRODUCER_STARTED + 30)
    event = asyncio.run(_first_event(retry, FakeRun(states, xcoms)))
    assert event.payload["action"] == RUN_HERE
    # The run cleared with dbt_build: this try takes what the producer's new try published.
    cleared_at = PRODUCER_STARTED + 60
    fresh = _published(cleared_at + 2, **{STAGING: _result(SKIPPED, why="Not in this run's selection.")})
    xcoms |= {("dbt_build", RESULTS_KEY): fresh}
    cleared = _trigger(daily, STAGING, try_number=3, made_at=cleared_at)
    event = asyncio.run(_first_event(cleared, FakeRun(states, xcoms)))
    assert isinstance(event, TaskSkippedEvent)


def test_the_trigger_survives_a_read_that_fails(daily, all_deferred, quick_polls) -> None:
    class Flaky(FakeRun):
        async def states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
            self.calls["tries"] += 1
            if self.calls["tries"] < 3:
                raise ConnectionError("supervisor busy")
            return await super().states(dag_id, run_id)

    published = _published(**{ORDERS: _result(SUCCESS)})
    run = Flaky(all_deferred, {("dbt_build", RESULTS_KEY): published, ("validate_params", "return_value"): {}})
    event = asyncio.run(asyncio.wait_for(_first_event(_trigger(daily, ORDERS), run), timeout=10))
    assert isinstance(event, TaskSuccessEvent) and run.calls["tries"] >= 3


def test_the_trigger_serialises_what_it_needs(daily) -> None:
    trigger = _trigger(daily, ORDERS)
    path, kwargs = trigger.serialize()
    assert path == "include.dbt_tasks.follower_trigger.NodeResultTrigger"
    assert kwargs == {
        "nodes": ["model.greenery.fct_orders"],
        "selectable": True,
        "rule": "none_failed",
    }
