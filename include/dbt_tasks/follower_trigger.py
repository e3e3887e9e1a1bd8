"""The trigger every node task of the ``producer`` execution mode starts in (``include.dbt_tasks.producer_mode``).

A node task waits in the triggerer from the start of its run (``trigger_rule=always``, ``start_from_trigger``) and
ends as soon as the producer, ``dbt_build``, publishes what dbt did with its nodes: ``success`` or ``skipped`` right
there (``TaskSuccessEvent`` / ``TaskSkippedEvent``), so a green run takes no worker for it. Only what needs a worker
resumes on one (``include.dbt_tasks.resume``): a node dbt failed (its log shows dbt's message, the alert goes out,
a model retries) and a node that has to run on its own.

Where no result of the producer applies — a retry, a task cleared without the producer, a node dbt did not run —
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
    WORKER_TRY_KEY,
    count,
    left_out,
    of_this_clear,
    task_result,
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
    clear_number: int,
    retry: bool,
    snapshot: run_watch.Snapshot,
) -> Decision | None:
    """How the node task ``task_id`` ends now, or None to wait for the next snapshot. ``retry``: a worker already
    took a try of it since the run was last cleared (its ``WORKER_TRY_KEY``), so no result of the producer is
    this try's."""
    states = snapshot.states
    if VALIDATE_TASK_ID in states:
        form = _form(task_id, nodes, selectable, snapshot)
        if form is not None:
            return None if form.action == WAIT else form
    producer = states.get(PRODUCER_TASK_ID)
    producer_done = producer in FINISHED
    note = ""
    if not retry:
        result = task_result(snapshot.published, task_id, clear_number)
        if result is not None:
            outcome, lines = result["outcome"], list(result.get("log") or [])
            if outcome == SUCCESS:
                return Decision(SUCCESS, "", lines)
            if outcome == SKIPPED:
                return _skip(result.get("why") or "dbt skipped it.", lines)
            if outcome == FAILED:
                return Decision(REPORT_FAILURE, "", lines, result)
            note = result.get("why") or f"dbt did not run it in {PRODUCER_TASK_ID}"  # NOT_RUN: the gate decides
        elif not producer_done:
            return None  # the producer has not reached this task yet
        elif producer != "success" and (snapshot.published is None or of_this_clear(snapshot.published, clear_number)):
            return _skip(
                f"{PRODUCER_TASK_ID} ended {producer} before dbt reached this task's nodes: see its log. Clear "
                f"{PRODUCER_TASK_ID} with its downstream to build them."
            )
        else:
            note = f"{PRODUCER_TASK_ID} did not build it in this clear of the run"
    elif not producer_done:
        return None  # a retry runs its node on its own once the producer has ended, as it always did
    else:
        note = "a retry runs its node on its own"
    return _gate(task_id, snapshot, note)


class NodeResultTrigger(BaseTrigger):
    """Waits for what ends one node task (module docstring).

    ``nodes``: the task's dbt unique ids; ``selectable``: the run's selection (``validate_params``) may leave it out;
    ``rule``: the trigger rule the task was rendered with (``upstream_gate``); ``clear_number``: the DAG run's (a
    template, rendered when the trigger starts): a result the producer published before the run was last cleared is
    not this try's.
    """

    template_fields = ("clear_number",)

    def __init__(
        self, nodes: list[str], selectable: bool = False, rule: str = "all_success", clear_number: int | str = 0
    ) -> None:
        super().__init__()
        self.nodes = list(nodes)
        self.selectable = selectable
        self.rule = rule
        self.clear_number = clear_number

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"nodes": self.nodes, "selectable": self.selectable, "rule": self.rule, "clear_number": self.clear_number},
        )

    def _graph(self) -> RunGraph | None:
        dag = getattr(getattr(self.task_instance, "task", None), "dag", None)
        return RunGraph.of(dag) if dag is not None else None

    async def _retry(self, reader: run_watch.Reader) -> bool:
        ti = self.task_instance
        if (ti.try_number or 1) <= 1:
            return False
        worker_try = await reader.xcom(ti.dag_id, ti.run_id, ti.task_id, WORKER_TRY_KEY)
        return isinstance(worker_try, dict) and count(worker_try.get("clear_number")) >= count(self.clear_number)

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
        retry = await self._retry(reader)
        if retry:
            self.log.info(
                "Try %s of this task: it runs its node on its own once its upstream tasks allow.", ti.try_number
            )
        watch = run_watch.subscribe(ti.dag_id, ti.run_id, reader=reader)
        if watch.graph is None:  # the first trigger of the run hands over the DAG the triggerer gave it
            watch.graph = self._graph()
        try:
            version = -1
            while True:
                snapshot = await watch.next(version)
                version = snapshot.version
                decision = decide(ti.task_id, self.nodes, self.selectable, count(self.clear_number), retry, snapshot)
                if decision is not None:
                    yield self._event(decision)
                    return
        finally:
            run_watch.unsubscribe(watch)
