"""The ``producer`` execution mode on a DAG: one dbt process per run (``dbt_build``), and every node task waiting in
the triggerer for its node's result from the start of the run.

A node task keeps its edges (the Graph shows the lineage, "clear downstream" works) but gets
``trigger_rule=always`` and starts in the triggerer (``start_from_trigger``): the scheduler defers every node task
of a run at once instead of one after its upstream task ended, so a task ends seconds after dbt finished its node
rather than after a chain of scheduler and triggerer hops (bench/RESULTS.md). The rule it was rendered with stays
in its trigger's kwargs, where the trigger applies it whenever it has no result of the producer to take
(``include.dbt_tasks.follower_trigger``).

Airflow decides a run's state from its leaf tasks and counts skipped as success, and a node task stopped by an
upstream failure can only end skipped in the triggerer. So the mode adds a last task, ``fail_run``
(``trigger_rule=one_failed``, downstream of every task whose failure stops what follows it): skipped by the scheduler
on a green run, without a worker; after such a failure it fails, and the run with it. A task whose failure the DAG
lets the run go on after — ``source_freshness``, unless ``GREENERY_FRESHNESS_BLOCKS=1`` — fails alone and the run
stays green, as in the LOCAL mode.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import BaseOperator, TaskGroup, TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import StartTriggerArgs

from include import settings
from include.dbt_tasks.cosmos_config import SNAPSHOT_POOL, uses_producer
from include.dbt_tasks.follower_trigger import NodeResultTrigger
from include.dbt_tasks.node_tasks import NODE_STEPS, NodeTask, node_tasks
from include.dbt_tasks.producer import DbtProducerOperator
from include.dbt_tasks.resume import resume_node_task
from include.dbt_tasks.steps import dbt_queue
from include.dbt_tasks.task_ids import FAIL_RUN_TASK_ID, PRODUCER_TASK_ID
from include.dbt_tasks.upstream_gate import FAILED, RULE_KWARG, RunGraph, state_name

log = logging.getLogger(__name__)

# Trigger rules under which a task runs after an upstream task failed (when another one succeeded).
_TOLERANT_RULES = frozenset({"all_done", "all_done_min_one_success", "always", "one_success", "one_done"})


def follow_producer(
    tasks: Iterable[Any], selectable: bool, manifest: Mapping[str, Any] | None = None
) -> list[NodeTask]:
    """Make every dbt task of ``tasks`` a node task of the producer: it waits in the triggerer from the start of the
    run and resumes on a worker only when it must (``include.dbt_tasks.resume``). Returns what the producer
    publishes for."""
    tasks = list(tasks)
    followers = node_tasks(tasks, manifest)
    by_id = {task.task_id: task for task in tasks}
    for follower in followers:
        node_task = by_id[follower.task_id]
        rule = str(getattr(node_task.trigger_rule, "value", node_task.trigger_rule))
        node_task.trigger_rule = TriggerRule.ALWAYS
        node_task.start_from_trigger = True
        by_node = follower.step in NODE_STEPS
        node_task.start_trigger_args = StartTriggerArgs(
            trigger_cls=f"{NodeResultTrigger.__module__}.{NodeResultTrigger.__qualname__}",
            trigger_kwargs={
                # Freshness and docs are skipped only when the run builds nothing, which the producer publishes.
                "nodes": sorted(follower.nodes) if by_node else [],
                "selectable": selectable and by_node,
                RULE_KWARG: rule,
            },
            next_method="resume_node_task",
            next_kwargs=None,
            timeout=None,
        )
        node_task.resume_node_task = functools.partial(resume_node_task, node_task)
    return followers


def _fail_run(**context: Any) -> None:
    ti = context["ti"]
    found = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]) or {}
    states = found.get(ti.run_id, found)
    failed = sorted(task_id for task_id, state in states.items() if state_name(state) == FAILED)
    raise AirflowFailException(
        f"The run fails because {', '.join(failed) or 'a task'} failed; the tasks it stopped ended skipped. See the "
        "failed task's log. This task only gives the run its state: clear the failed task with its downstream."
    )


def _failure_goes_on(task_id: str, graph: RunGraph) -> bool:
    """Whether every task right after ``task_id`` runs although it failed (its rule tolerates a failure)."""
    after = [other for other, above in graph.upstream.items() if task_id in above]
    return bool(after) and all(graph.rules[other] in _TOLERANT_RULES for other in after)


def fail_run_task(dag: Any) -> BaseOperator:
    """The run's last task (module docstring): downstream of every task of ``dag`` whose failure stops the run."""
    graph = RunGraph.of(dag)
    upstream = [task for task in dag.tasks if not _failure_goes_on(task.task_id, graph)]
    fail_run = task(
        _fail_run,
        task_id=FAIL_RUN_TASK_ID,
        dag=dag,
        trigger_rule=TriggerRule.ONE_FAILED,
        # It alerts nobody and never retries: the failed task alerted already.
        retries=0,
        on_failure_callback=None,
        doc_md="Fails the run when any task of it failed (a node task stopped by a failure ends skipped, which "
        "Airflow counts as success); skipped otherwise. include/dbt_tasks/producer_mode.py",
    )().operator
    for other in upstream:
        other >> fail_run
    return fail_run


def one_dbt_process(
    anchor: BaseOperator | TaskGroup, operator_args: dict[str, Any] | None = None, selectable: bool = False
) -> BaseOperator | None:
    """In the ``producer`` execution mode, run the dbt steps of ``anchor``'s DAG in one process, in the task
    ``dbt_build``, make every dbt task of the DAG follow it and add ``fail_run``; in the other modes, nothing.
    ``anchor`` is the task the producer runs after (``validate_params``), or a group of the DAG. ``operator_args``'
    ``vars`` and ``full_refresh`` are handed to dbt as in the node tasks."""
    if not uses_producer():
        return None
    anchor = getattr(anchor, "operator", anchor)  # the task behind a TaskFlow call's XComArg
    dag = anchor.dag
    if not settings.DBT_MANIFEST_PATH.is_file():
        # The producer maps node tasks to dbt nodes from the manifest; Cosmos' dbt ls fallback has none to share.
        log.warning(
            "The producer execution mode needs the dbt manifest (%s; `make manifest` writes it): %s runs each dbt "
            "node in its own task instead, as the local mode does.",
            settings.DBT_MANIFEST_PATH,
            dag.dag_id,
        )
        return None
    followers = follow_producer(dag.tasks, selectable)
    args = operator_args or {}
    producer = DbtProducerOperator(
        task_id=PRODUCER_TASK_ID,
        dag=dag,
        steps=tuple({follower.step for follower in followers}),
        dbt_vars=args.get("vars"),
        full_refresh=args.get("full_refresh", False),
        selectable=selectable,
        # It runs the snapshots: it holds the one slot for all of its run, so snapshots never overlap.
        pool=SNAPSHOT_POOL,
        queue=dbt_queue(),
        doc_md="All of this run's dbt commands in one dbt process; each node task shows its node's result "
        "(include/dbt_tasks/producer.py).",
    )
    if isinstance(anchor, BaseOperator):
        anchor >> producer
    fail_run_task(dag)
    return producer
