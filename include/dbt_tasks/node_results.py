"""What the producer (``dbt_build``) publishes for the node tasks, and how a node task reads it.

The producer keeps one XCom, ``RESULTS_KEY``: the run's clear number and try it belongs to, and per node task the
outcome of the task's dbt nodes as soon as dbt finished all of them, with when dbt finished the last one
(``finished_at``, seconds since the epoch: the benchmark measures each task's lag from it). One document for the
whole run, so that the node tasks waiting in the triggerer read it once per poll between them
(``include.dbt_tasks.run_watch``) instead of once each.

Kept free of dbt, Cosmos and Airflow imports: the triggerer imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# The producer's XCom with every node task's result; a node task's own XCom saying a worker took a try of it.
RESULTS_KEY = "node_results"
WORKER_TRY_KEY = "node_task_worker_try"
# Outcomes the producer publishes for a node task.
SUCCESS, FAILED, SKIPPED, NOT_RUN = "success", "failed", "skipped", "not_run"
OUTCOMES = (SUCCESS, FAILED, SKIPPED, NOT_RUN)
# What a node task resumed on a worker does (include.dbt_tasks.resume).
RUN_HERE, REPORT_FAILURE = "run_here", "report_failure"


def count(value: Any) -> int:
    """An integer from a rendered template or a published document (0 for anything else)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def left_out(nodes: Iterable[str], selected: Iterable[str] | None) -> bool:
    """A node task the run's selection (``validate_params``' ``selected``; None: everything) leaves out: it has
    nodes and none of them is selected."""
    nodes = set(nodes)
    return bool(nodes) and selected is not None and not nodes & set(selected)


def document(clear_number: int, try_number: int, started_at: float) -> dict[str, Any]:
    """The producer's XCom before any result: which clear of the run and which try of the producer it is."""
    return {"clear_number": clear_number, "try_number": try_number, "started_at": started_at, "tasks": {}}


def of_this_clear(published: Mapping[str, Any] | None, clear_number: int) -> bool:
    """True when ``published`` comes from the producer's try for the run's current clear: a document from before
    the run was last cleared says nothing about this one."""
    return isinstance(published, Mapping) and count(published.get("clear_number")) >= clear_number


def task_result(published: Mapping[str, Any] | None, task_id: str, clear_number: int) -> dict[str, Any] | None:
    """The producer's result for ``task_id`` in the run's current clear, or None."""
    if not of_this_clear(published, clear_number):
        return None
    result = (published.get("tasks") or {}).get(task_id)
    return result if isinstance(result, dict) and result.get("outcome") in OUTCOMES else None


def result_lines(nodes: Iterable[Mapping[str, Any]], failed_statuses: Iterable[str]) -> list[str]:
    """dbt's result line per node, as the node task's log shows it."""
    failed = set(failed_statuses)
    return [
        f"dbt {node['status']} {node['name']} in {node.get('execution_seconds') or 0:.2f} s"
        + (f": {node['message']}" if node.get("message") and node["status"] in failed else "")
        for node in nodes
    ]
