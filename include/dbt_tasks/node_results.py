"""What the producer (``dbt_build``) publishes for the node tasks, and how a node task reads it.

The producer keeps one XCom, ``RESULTS_KEY``: the run's clear number, the producer's try and when that try started
(``started_at``), and per node task the outcome of the task's dbt nodes as soon as dbt finished all of them, with when
dbt finished the last one (``finished_at``, seconds since the epoch: the benchmark measures each task's lag from it).
One document for the whole run, so that the node tasks waiting in the triggerer read it once per poll between them
(``include.dbt_tasks.run_watch``) instead of once each.

A result is a node task's only when the producer's try started after the node task's own try was made
(``of_this_try``): at the run's start, or when the run was cleared with ``dbt_build``. A node task cleared without
the producer, or retried, finds only results from before it and builds its node itself. Airflow gives each try of a
task a new id, a UUID7 that holds when it was made (``try_made_at``); the rendered ``{{ dag_run.clear_number }}``
would not do, as Airflow 3.3.2's triggerer renders a trigger's templates with a clear number of 0 whatever the run's.

Kept free of dbt, Cosmos and Airflow imports: the triggerer imports it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

# The producer's XCom with every node task's result.
RESULTS_KEY = "node_results"
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


def try_made_at(ti_id: Any) -> float:
    """When Airflow made this try of a task (seconds since the epoch), from its id: a UUID7 starts with the
    milliseconds since the epoch. 0 for an id that is no UUID7."""
    try:
        found = ti_id if isinstance(ti_id, uuid.UUID) else uuid.UUID(str(ti_id))
    except (TypeError, ValueError):
        return 0.0
    return (found.int >> 80) / 1000 if found.version == 7 else 0.0


def of_this_try(published: Mapping[str, Any] | None, made_at: float) -> bool:
    """True when ``published`` comes from a try of the producer that started after the node task's try was made:
    what an earlier try of the producer published says nothing about a task cleared or retried since."""
    return isinstance(published, Mapping) and float(published.get("started_at") or 0) >= made_at


def task_result(published: Mapping[str, Any] | None, task_id: str, made_at: float) -> dict[str, Any] | None:
    """The producer's result for this try of ``task_id`` (made at ``made_at``), or None."""
    if not of_this_try(published, made_at):
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
