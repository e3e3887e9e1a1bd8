"""The trigger every node task of the ``producer`` execution mode starts in (``include.dbt_tasks.producer_mode``).

A node task waits in the triggerer from the start of its run (``trigger_rule=always``, ``start_from_trigger``) and
ends as soon as the producer, ``dbt_build``, publishes what dbt did with its nodes: ``success`` or ``skipped`` right
there (``TaskSuccessEvent`` / ``TaskSkippedEvent``), so a green run takes no worker for it. Only what needs a worker
resumes on one (``include.dbt_tasks.resume``): a node dbt failed (its log shows dbt's message, the alert goes out,
a model retries) and a node that has to run on its own.

Where no result of the producer applies — a retry, a task cleared without the producer (a result is a try's only
when the producer's try started after it was made: ``include.dbt_tasks.node_results.of_this_try``), a node dbt did
not run —
the task waits for its upstream tasks as the scheduler would have under the rule it was rendered with
(``include.dbt_tasks.upstream_gate``): it runs its node alone on a worker once they let it, and ends skipped,
naming the failed upstream task, when a failure stops it. A refused trigger form or a producer that failed for good
ends it skipped within a poll, with one line that says why. ``decide`` holds all of that; the triggers of one run
share one read of it per poll (``include.dbt_tasks.run_watch``).

Kept free of dbt and Cosmos imports: the triggerer imports this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from include.dbt_tasks import run_watch
from include.dbt_tasks.node_results import (
    FAILED,
    REPORT_FAILURE,
    RUN_HERE,
    SKIPPED,
    SUCCESS,
    left_out,
    of_this_try,
    task_result,
    try_made_at,
)
from include.dbt_tasks.task_ids import PRODUCER_TASK_ID, VALIDATE_TASK_ID
from include.dbt_tasks.upstream_gate import FAILURES, FINISHED, RUN, UPSTREAM_FAILED, WAIT, RunGraph
from include.history.artifacts import FAILED_STATUSES


@dataclass(frozen=True)
class Decision:
    """How a node task ends: ``SUCCESS`` or ``SKIPPED`` in the triggerer, ``RUN_HERE`` or ``REPORT_FAILURE`` on a
    worker. ``why`` is the line its log shows, ``lines`` dbt's result lines."""

    action: str
    why: str = ""
    lines: list[str] = field(default_factory=list)
    result: Mapping[str, Any] | None = None


def _skip(why: str, lines: list[str] | None = None) -> Decision:
    return Decision(SKIPPED, why, lines or [])


def _failed_nodes(published: Mapping[str, Any] | None, task_ids: list[str]) -> list[str]:
    tasks = (published or {}).get("tasks") or {}
    return sorted(
        node["name"]
        for task_id in task_ids
        for node in (tasks.get(task_id) or {}).get("nodes", [])
        if node.get("status") in FAILED_STATUSES
    )


def _form(task_id: str, nodes: list[str], selectable: bool, snapshot: run_watch.Snapshot) -> Decision | None:
    """Ends the task when ``validate_params`` refused the form or the run's selection leaves it out; None when the
    form lets it go on, or is not checked yet (``Decision(WAIT)``)."""
    state = snapshot.states.get(VALIDATE_TASK_ID)
    if state in FAILURES or state in ("skipped", "removed"):
        return _skip(f"{VALIDATE_TASK_ID} {state}: this run builds nothing. Its log says why.")
    if state != "success" or snapshot.plan is None:
        return Decision(WAIT)
    selected = snapshot.plan.get("selected")
    if selected == []:
        return _skip(f"Nothing to build in this run: {snapshot.plan.get('selection_text')}.")
    if selectable and left_out(nodes, selected):
        return _skip(f"Not in this run's selection ({snapshot.plan.get('selection_text')}).")
    return None


def _gate(task_id: str, snapshot: run_watch.Snapshot, note: str) -> Decision | None:
    graph = snapshot.graph
    effective = snapshot.effective_states()
    outcome = graph.outcome(task_id, effective) if graph is not None else RUN
    if outcome == WAIT:
        return None
    if outcome == RUN:
        return Decision(RUN_HERE, note)
    if outcome == UPSTREAM_FAILED:
        failed = graph.failed_above(task_id, effective)
        nodes = _failed_nodes(snapshot.published, failed)
        what = f" (dbt: {', '.join(nodes)})" if nodes else ""
        return _skip(
            f"Not built: upstream task {', '.join(failed) or 'of this task'} failed{what}. Clear the failed task "
            "with its downstream once it is fixed."
        )
    return _skip("Not built: its upstream tasks were skipped.")


def decide(
    task_id: str,
    nodes: list[str],
    selectable: bool,
    made_at: float,
    snapshot: run_watch.Snapshot,
) -> Decision | None:
    """How this try of the node task ``task_id``, made at ``made_at``, ends now, or None to wait for the next
    snapshot."""
    states = snapshot.states
    if VALIDATE_TASK_ID in states:
        form = _form(task_id, nodes, selectable, snapshot)
        if form is not None:
            return None if form.action == WAIT else form
    producer = states.get(PRODUCER_TASK_ID)
    result = task_result(snapshot.published, task_id, made_at)
    if result is not None:
        outcome, lines = result["outcome"], list(result.get("log") or [])
        if outcome == SUCCESS:
            return Decision(SUCCESS, "", lines)
        if outcome == SKIPPED:
            return _skip(result.get("why") or "dbt skipped it.", lines)
        if outcome == FAILED:
            return Decision(REPORT_FAILURE, "", lines, result)
        note = result.get("why") or f"dbt did not run it in {PRODUCER_TASK_ID}"  # NOT_RUN: the gate decides
    elif producer not in FINISHED:
        return None  # the producer has not reached this task yet, or runs again for it
    elif producer != "success" and (snapshot.published is None or of_this_try(snapshot.published, made_at)):
        return _skip(
            f"{PRODUCER_TASK_ID} ended {producer} before dbt reached this task's nodes: see its log. Clear "
            f"{PRODUCER_TASK_ID} with its downstream to build them."
        )
    else:
        note = f"{PRODUCER_TASK_ID} ran before this try of the task (a retry, or a clear without it)"
    return _gate(task_id, snapshot, note)


class NodeResultTrigger(BaseTrigger):
    """Waits for what ends one node task (module docstring).

    ``nodes``: the task's dbt unique ids; ``selectable``: the run's selection (``validate_params``) may leave it out;
    ``rule``: the trigger rule the task was rendered with (``upstream_gate``).
    """

    def __init__(self, nodes: list[str], selectable: bool = False, rule: str = "all_success") -> None:
        super().__init__()
        self.nodes = list(nodes)
        self.selectable = selectable
        self.rule = rule

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"nodes": self.nodes, "selectable": self.selectable, "rule": self.rule},
        )

    def _graph(self) -> RunGraph | None:
        dag = getattr(getattr(self.task_instance, "task", None), "dag", None)
        return RunGraph.of(dag) if dag is not None else None

    def _event(self, decision: Decision) -> TriggerEvent:
        for line in decision.lines:
            self.log.info("%s", line)
        if decision.why:
            self.log.info("%s", decision.why)
        if decision.action == SUCCESS:
            return TaskSuccessEvent()
        if decision.action == SKIPPED:
            return TaskSkippedEvent()
        if decision.action == RUN_HERE:
            return TriggerEvent({"action": RUN_HERE, "why": decision.why})
        return TriggerEvent({"action": REPORT_FAILURE, "result": dict(decision.result or {})})

    async def run(self, reader: run_watch.Reader | None = None) -> AsyncIterator[TriggerEvent]:
        ti = self.task_instance
        reader = reader or run_watch.TaskSdkReader()
        made_at = try_made_at(ti.id)
        watch = run_watch.subscribe(ti.dag_id, ti.run_id, reader=reader)
        if watch.graph is None:  # the first trigger of the run hands over the DAG the triggerer gave it
            watch.graph = self._graph()
        try:
            version = -1
            while True:
                snapshot = await watch.next(version)
                version = snapshot.version
                decision = decide(ti.task_id, self.nodes, self.selectable, made_at, snapshot)
                if decision is not None:
                    yield self._event(decision)
                    return
        finally:
            run_watch.unsubscribe(watch)
