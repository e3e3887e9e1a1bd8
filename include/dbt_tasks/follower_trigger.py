"""The trigger a node task of the ``producer`` execution mode starts in (``include.dbt_tasks.producer``).

A node task never takes a worker while its dbt node succeeds: the scheduler hands it straight to the triggerer
(``start_from_trigger``), this trigger waits for the producer task's result for it (an XCom the producer pushes
as soon as dbt finished the task's nodes) and ends the task there (``TaskSuccessEvent`` / ``TaskSkippedEvent``).
Only what needs a worker resumes on one (``resume_node_task``): a failure (so the task's log shows dbt's error, the
alert goes out and a model retries), a retry or a clear (the node runs on its own), and a producer that ended
without reaching the node.

Kept free of dbt and Cosmos imports: the triggerer imports this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

# The producer's task states after which it publishes nothing more (until it is cleared).
PRODUCER_DONE = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
RESULT_KEY_PREFIX = "node_task_result:"
# Outcomes a producer publishes for a node task.
SUCCESS, FAILED, SKIPPED, NOT_RUN = "success", "failed", "skipped", "not_run"
# What a resumed node task does (``producer.resume_node_task``).
RUN_HERE, REPORT_FAILURE, PRODUCER_GONE = "run_here", "report_failure", "producer_gone"


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def left_out(nodes: Iterable[str], selected: Iterable[str] | None) -> bool:
    """A node task the run's selection (``validate_params``' ``selected``; None: everything) leaves out: it has
    nodes and none of them is selected."""
    nodes = set(nodes)
    return bool(nodes) and selected is not None and not nodes & set(selected)


def result_key(task_id: str) -> str:
    """The producer's XCom key for a node task's result."""
    return RESULT_KEY_PREFIX + task_id


class NodeResultTrigger(BaseTrigger):
    """Waits for the producer's result for one node task and ends the task, or resumes it on a worker.

    ``nodes`` are the task's dbt unique ids; with ``selectable``, a task whose nodes the run's selection left out
    (``validate_params``' XCom) ends skipped at once. ``clear_number`` is the DAG run's (a template, rendered when
    the trigger starts): a result the producer published before the run was last cleared is not this try's.
    """

    template_fields = ("clear_number",)

    def __init__(
        self,
        producer_task_id: str,
        nodes: list[str],
        selectable: bool = False,
        validate_task_id: str | None = None,
        poll_seconds: float = 1.0,
        clear_number: int | str = 0,
    ) -> None:
        super().__init__()
        self.producer_task_id = producer_task_id
        self.nodes = list(nodes)
        self.selectable = selectable
        self.validate_task_id = validate_task_id
        self.poll_seconds = poll_seconds
        self.clear_number = clear_number

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "producer_task_id": self.producer_task_id,
                "nodes": self.nodes,
                "selectable": self.selectable,
                "validate_task_id": self.validate_task_id,
                "poll_seconds": self.poll_seconds,
                "clear_number": self.clear_number,
            },
        )

    async def _xcom(self, task_id: str, key: str) -> Any:
        from airflow.sdk.execution_time.xcom import XCom

        ti = self.task_instance
        return await asyncio.to_thread(
            XCom.get_one, run_id=ti.run_id, key=key, task_id=task_id, dag_id=ti.dag_id, map_index=-1
        )

    async def _producer_state(self) -> str | None:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        ti = self.task_instance
        states = await asyncio.to_thread(
            RuntimeTaskInstance.get_task_states, dag_id=ti.dag_id, task_ids=[self.producer_task_id], run_ids=[ti.run_id]
        )
        state = (states.get(ti.run_id) or {}).get(self.producer_task_id)
        return str(getattr(state, "value", state)) if state is not None else None

    async def _left_out_of_selection(self) -> str | None:
        if not self.selectable or not self.validate_task_id or not self.nodes:
            return None
        chosen = await self._xcom(self.validate_task_id, "return_value") or {}
        if not left_out(self.nodes, chosen.get("selected")):
            return None
        return f"Not in this run's selection ({chosen.get('selection_text')})."

    def _fresh(self, result: Any) -> bool:
        """A result the producer published since the DAG run was last cleared: one from before may be stale (a
        task cleared after a failure still sees the producer's XComs until the producer runs again)."""
        return isinstance(result, dict) and _count(result.get("clear_number")) >= _count(self.clear_number)

    def _outcome_event(self, result: dict[str, Any]) -> TriggerEvent:
        outcome = result.get("outcome")
        for line in result.get("log", []):
            self.log.info("%s", line)
        if outcome == SUCCESS:
            return TaskSuccessEvent()
        if outcome == SKIPPED:
            return TaskSkippedEvent()
        if outcome == NOT_RUN:
            return TriggerEvent({"action": RUN_HERE, "why": result.get("why")})
        return TriggerEvent({"action": REPORT_FAILURE, "result": result})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ti = self.task_instance
        retried = (ti.try_number or 1) > 1
        # On a green run the producer is ahead of the node tasks: its result is there when the trigger starts,
        # and one read ends the task.
        if not retried:
            result = await self._xcom(self.producer_task_id, result_key(ti.task_id))
            if self._fresh(result):
                yield self._outcome_event(result)
                return
        reason = await self._left_out_of_selection()
        if reason:
            self.log.info(reason)
            yield TaskSkippedEvent()
            return
        while True:
            state = await self._producer_state()
            done = state in PRODUCER_DONE
            if retried and done:
                # A retry or a clear: this node runs on its own, on a worker, whatever the producer did.
                self.log.info("Try %s of this task: %s runs on a worker on its own.", ti.try_number, self.nodes)
                yield TriggerEvent({"action": RUN_HERE})
                return
            if not retried and state in ("running", *PRODUCER_DONE):
                result = await self._xcom(self.producer_task_id, result_key(ti.task_id))
                if self._fresh(result):
                    yield self._outcome_event(result)
                    return
            if done:
                if state == "skipped":
                    self.log.info("The producer task %s was skipped: nothing to build.", self.producer_task_id)
                    yield TaskSkippedEvent()
                    return
                if state == "success":
                    # The producer ended without this task's nodes: it stopped before their step (a node failed)
                    # and the task was cleared since, or the run was cleared after the producer's try.
                    yield TriggerEvent({"action": RUN_HERE, "why": f"{self.producer_task_id} did not run it"})
                    return
                yield TriggerEvent({"action": PRODUCER_GONE, "producer_state": state})
                return
            await asyncio.sleep(self.poll_seconds)
