"""Where a node task of the producer mode resumes when its trigger hands it to a worker
(``include.dbt_tasks.follower_trigger``): to report the failure dbt gave its node in ``dbt_build`` — dbt's
message and failing-row count in the task's log, the failure alert, a retry for a model — or to run its node on
its own, as in the LOCAL mode."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.alerts.callbacks import notify_dbt_results
from include.dbt_tasks.node_results import REPORT_FAILURE, RUN_HERE
from include.dbt_tasks.retries import is_dropped_connection
from include.dbt_tasks.task_ids import PRODUCER_TASK_ID
from include.history.artifacts import DbtInvocation, NodeResult

log = logging.getLogger(__name__)

# Task types whose failure a retry may heal; a data test fails for good unless its connection dropped.
_RETRIED_TYPES = ("DbtRunLocalOperator", "DbtSnapshotLocalOperator", "DbtSeedLocalOperator")


def failure_invocation(result: Mapping[str, Any]) -> DbtInvocation:
    """The producer's result for a node task as the dbt invocation the alerts read."""
    nodes = tuple(
        NodeResult(
            unique_id=item["unique_id"],
            resource_type=item["unique_id"].split(".")[0],
            name=item["name"],
            status=item["status"],
            message=item.get("message"),
            failures=item.get("failures"),
            execution_seconds=item.get("execution_seconds"),
        )
        for item in result.get("nodes", [])
    )
    return DbtInvocation(
        invocation_id=result.get("invocation_id") or "",
        command=result.get("command") or "build",
        dbt_version=None,
        started_at=None,
        generated_at=None,
        elapsed_seconds=None,
        selector=None,
        results=nodes,
    )


def resume_node_task(task: Any, context: Mapping[str, Any], event: Mapping[str, Any]) -> Any:
    """The ``next_method`` of a node task's start trigger. ``task`` is the task as the DAG file defined it; the one
    that runs is the context's, with its templates rendered."""
    task = context.get("task") or task
    action = event.get("action")
    if action == RUN_HERE:
        log.info("Running this task's dbt command here, on its own%s.", f": {event['why']}" if event.get("why") else "")
        return task.execute(context)
    if action != REPORT_FAILURE:
        raise AirflowFailException(f"Unknown resume event {dict(event)!r}: clear this task to run it on its own.")
    result = event["result"]
    invocation = failure_invocation(result)
    notify_dbt_results(context, [invocation])
    failed = invocation.failed
    for node in failed:
        rows = f", {node.failures} failing row(s)" if node.failures else ""
        log.error("dbt %s %s: %s%s", node.status, node.name, (node.message or "").strip(), rows)
    if failed:
        names = ", ".join(node.name for node in failed)
        message = f"dbt failed {names} in {PRODUCER_TASK_ID} (invocation {invocation.invocation_id}): " + "; ".join(
            (node.message or node.status).strip().splitlines()[0] for node in failed
        )
    else:
        message = f"{result.get('why') or 'dbt failed'} in {PRODUCER_TASK_ID}: its retry runs it here, on its own."
    if task.task_type in _RETRIED_TYPES or all(is_dropped_connection(node.message) for node in failed):
        raise AirflowException(message)
    raise AirflowFailException(message)
