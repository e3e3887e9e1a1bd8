"""The pieces the greenery DAG files assemble: schedules, default arguments, and the dbt steps
(source freshness, snapshots, models with their tests, docs).

Settings (``include.settings``, read when a DAG file is parsed): ``GREENERY_DAILY_HOUR``, the UTC hour of the
daily run; ``GREENERY_FRESHNESS_BLOCKS=1``, a failed ``dbt source freshness`` stops the daily build (by default
it fails its own task, which alerts, and the build goes on).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, TaskGroup, TriggerRule
from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable
from cosmos import settings as cosmos_settings
from cosmos.airflow.graph import exclude_detached_tests_if_needed
from cosmos.airflow.task_group import DbtTaskGroup
from cosmos.constants import DbtResourceType, InvocationMode
from cosmos.dbt.graph import DbtNode
from cosmos.operators.local import DbtDocsLocalOperator, DbtSourceLocalOperator, DbtTestLocalOperator

from include import settings
from include.alerts.callbacks import on_task_failure
from include.dbt_tasks.cosmos_config import (
    EXECUTION_CONFIG,
    LOCAL_EXECUTION_CONFIG,
    PROJECT_CONFIG,
    SNAPSHOT_POOL,
    profile_config,
    render_config,
    uses_producer,
)
from include.dbt_tasks.docs import publish_docs
from include.dbt_tasks.parsed_project import share_parse
from include.dbt_tasks.retries import CALLBACK as FAIL_UNLESS_CONNECTION_DROPPED
from include.dbt_tasks.selection import skip_unless_selected, skip_when_nothing_to_build

log = logging.getLogger(__name__)

OWNER = "analytics"
# Cosmos calls this after every dbt command (also a failed one): it keeps the results in the warehouse's
# dbt_meta schema and sends the warning alerts (stale sources, tests that ended in warn).
RECORD_DBT_RESULTS = "include.history.store.record_dbt_artifacts"
# docs_generate of the daily DAG keeps a green full run's manifest for only=changed/fresher.
RECORD_PROJECT_STATE = "include.dbt_tasks.project_state.record_project_state"
# The daily run's freshness check prunes dbt_meta to GREENERY_HISTORY_RETENTION_DAYS, once its results are kept.
PRUNE_RUN_HISTORY = "include.history.retention.prune_run_history"
SOURCE_NAME = "greenery"
MARTS_PATH = "models/marts/"


def daily_schedule() -> CronTriggerTimetable:
    """Every day at ``GREENERY_DAILY_HOUR`` UTC. A run's logical date is its trigger time and its data interval
    the 24 hours before it; it processes the UTC day that ended in that interval (``params.resolve_window``), so
    the run of day D is the one at D+1 ``GREENERY_DAILY_HOUR``:00 (``include.dbt_tasks.backfill``)."""
    hour = settings.DAILY_HOUR.value()
    return CronTriggerTimetable(f"0 {hour} * * *", timezone="UTC", interval=dt.timedelta(days=1))


def hourly_schedule() -> CronTriggerTimetable:
    # Half past, so the hourly run does not queue for the snapshot pool behind the daily run on the hour.
    return CronTriggerTimetable("30 * * * *", timezone="UTC", interval=dt.timedelta(hours=1))


def freshness_blocks() -> bool:
    return settings.FRESHNESS_BLOCKS.value()


def default_args(alert_on_failure: bool = True) -> dict[str, Any]:
    """Owner, retries and the failure alert of every task: a dbt model that failed on a dropped connection or a
    lock usually succeeds a few minutes later, so dbt tasks retry twice with a growing pause
    (``GREENERY_RETRY_DELAY_SECONDS``, then twice that; a test or a
    freshness check only when its connection dropped: ``include.dbt_tasks.retries``). Airflow calls
    ``on_failure_callback`` only when the last try failed."""
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=settings.RETRY_DELAY_SECONDS.value()),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=10),
    }
    if alert_on_failure:
        args["on_failure_callback"] = on_task_failure
    return args


def _cache_dir(name: str) -> Path | None:
    """Where a standalone dbt task keeps dbt's partial-parse file between runs (Cosmos does this for groups)."""
    if not cosmos_settings.enable_cache:
        return None
    path = Path(cosmos_settings.cache_dir) / name
    (path / "target").mkdir(parents=True, exist_ok=True)
    return path


def dbt_queue() -> str:
    """The executor queue of every task that runs dbt (``GREENERY_DBT_QUEUE``): on CeleryExecutor the workers that
    serve it are the ones with dbt's project and warehouse access; the other tasks keep Airflow's default queue.
    LocalExecutor and KubernetesExecutor ignore queues."""
    return settings.DBT_QUEUE.value()


def _group_operator_args(operator_args: dict[str, Any] | None) -> dict[str, Any]:
    return {"callback": RECORD_DBT_RESULTS, "queue": dbt_queue(), **(operator_args or {})}


def _callbacks(callback: Any) -> list[Any]:
    if not callback:
        return []
    return list(callback) if isinstance(callback, list | tuple) else [callback]


def _dbt_operator_args(operator_args: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "project_dir": str(settings.DBT_PROJECT_DIR),
        "profile_config": profile_config(),
        "invocation_mode": InvocationMode.DBT_RUNNER,
        "install_deps": False,
        **_group_operator_args(operator_args),
    }


def source_freshness(
    dag_id: str, operator_args: dict[str, Any] | None = None, selectable: bool = False
) -> BaseOperator:
    """``dbt source freshness`` for every greenery source table, as one task, which then prunes the run history
    (``include.history.retention``). ``selectable``: skipped when the run builds no node
    (``include.dbt_tasks.run_plan``)."""
    args = _dbt_operator_args(operator_args)
    if selectable:
        args["pre_execute"] = skip_when_nothing_to_build
    # Waiting a few minutes does not make a late source fresh (the alert is what matters): retried only when
    # the connection dropped. That check raises, so the pruning comes before it.
    args["callback"] = [*_callbacks(args["callback"]), PRUNE_RUN_HISTORY, FAIL_UNLESS_CONNECTION_DROPPED]
    retention_days = settings.HISTORY_RETENTION_DAYS.value()  # a bad value stops the DAG parse, naming it
    task = DbtSourceLocalOperator(
        task_id="source_freshness",
        select=f"source:{SOURCE_NAME}",
        emit_datasets=False,
        cache_dir=_cache_dir(f"{dag_id}__source_freshness"),
        doc_md="`dbt source freshness`: how old the newest row of each raw table is. A warning or error "
        "alerts; with GREENERY_FRESHNESS_BLOCKS=1 an error also stops the build. Then the dbt run history "
        f"(dbt_meta) is pruned to its last {retention_days} days.",
        **args,
    )
    share_parse([task])
    return task


def _tests_retry_only_on_dropped_connections(group: TaskGroup) -> None:
    """A failing data test does not heal by retrying: it fails at once so the alert goes out immediately. A test
    whose connection dropped retries like a model. (WATCHER's test sensors only read the producer's result.)"""
    for task in group.iter_tasks():
        kind = type(task).__name__
        if kind == "DbtTestLocalOperator":
            task.callback = [*_callbacks(task.callback), FAIL_UNLESS_CONNECTION_DROPPED]
        elif kind.startswith("DbtTest"):
            task.retries = 0


def _selectable_args(operator_args: dict[str, Any], selectable: bool) -> dict[str, Any]:
    return {**operator_args, "pre_execute": skip_unless_selected} if selectable else operator_args


def _run_after_skipped_upstream(group: TaskGroup) -> None:
    """A selected node runs even when the nodes before it were left out of the run's selection (skipped); a
    failure upstream still stops it (``upstream_failed``). Rules set on purpose elsewhere are kept."""
    for task in group.iter_tasks():
        if task.trigger_rule == TriggerRule.ALL_SUCCESS:
            task.trigger_rule = TriggerRule.NONE_FAILED


def _assets_only_from_marts(group: TaskGroup) -> None:
    """Emit Airflow assets from the mart tasks only: the marts are what other DAGs and dashboards consume, and
    working out a task's assets costs Cosmos a parse of dbt artifacts per task (bench/RESULTS.md)."""
    for task in group.iter_tasks():
        node = getattr(task, "extra_context", {}).get("dbt_node_config") or {}
        if getattr(task, "emit_datasets", False) and not node.get("original_file_path", "").startswith(MARTS_PATH):
            task.emit_datasets = False


def _task_name(node: DbtNode) -> str:
    return node.name


def _source_tests(
    dag: Any,
    task_group: TaskGroup,
    node: DbtNode,
    task_args: dict[str, Any],
    detached_from_parent: dict[str, list[DbtNode]] | None = None,
    **_: Any,
) -> BaseOperator | None:
    """Render a source as the task that runs its data tests, upstream of the staging models that read it
    (freshness is checked once for all sources by ``source_freshness``). Tests between two sources run in
    their own task once both sources passed, as Cosmos does for models."""
    if not node.has_test:
        return None
    task_args = dict(task_args)
    exclude_detached_tests_if_needed(node, task_args, detached_from_parent)
    return DbtTestLocalOperator(
        task_id=f"{node.name}_source_test",
        dag=dag,
        task_group=task_group,
        select=f"source:{node.resource_name}",
        extra_context={"dbt_node_config": node.context_dict},
        **{**task_args, "emit_datasets": False},
    )


def snapshot_group(operator_args: dict[str, Any] | None = None, selectable: bool = False) -> DbtTaskGroup:
    """Every dbt snapshot, one task each, all in the one-slot ``dbt_snapshots`` pool. ``selectable``: each task
    skips itself when the run's ``select``/``exclude`` left its node out (``include.dbt_tasks.selection``)."""
    group = DbtTaskGroup(
        group_id="snapshots",
        project_config=PROJECT_CONFIG,
        profile_config=profile_config(),
        execution_config=LOCAL_EXECUTION_CONFIG,
        render_config=render_config(
            select=["resource_type:snapshot"],
            emit_datasets=False,
            normalize_task_id=_task_name,
            normalize_task_display_name=_task_name,
        ),
        operator_args=_selectable_args({**_group_operator_args(operator_args), "pool": SNAPSHOT_POOL}, selectable),
    )
    _tests_retry_only_on_dropped_connections(group)
    share_parse(group.iter_tasks())
    if selectable:
        _run_after_skipped_upstream(group)
    return group


def model_group(operator_args: dict[str, Any] | None = None, selectable: bool = False) -> DbtTaskGroup:
    """Every model, one task each with its tests in a task right after it; a source's tests run before the
    models that read it. A failed test stops only what depends on its model. ``selectable``: as for
    ``snapshot_group``."""
    group = DbtTaskGroup(
        group_id="models",
        project_config=PROJECT_CONFIG,
        profile_config=profile_config(),
        execution_config=EXECUTION_CONFIG,
        render_config=render_config(
            select=["path:models"],
            # Exposures are documentation (the dashboard that reads the marts), not something to run.
            exclude=["resource_type:exposure"],
            node_converters={DbtResourceType.SOURCE: _source_tests},
            normalize_task_id=_task_name,
            normalize_task_display_name=_task_name,
        ),
        operator_args=_selectable_args(_group_operator_args(operator_args), selectable),
    )
    _tests_retry_only_on_dropped_connections(group)
    _assets_only_from_marts(group)
    share_parse(group.iter_tasks())
    if selectable:
        _run_after_skipped_upstream(group)
    return group


def docs_generate(dag_id: str, operator_args: dict[str, Any] | None = None, selectable: bool = False) -> BaseOperator:
    """``dbt docs generate``, published where Cosmos' Airflow plugin serves it (Browse > dbt Docs). It runs
    after the models unless one failed (models left out of a selection are skipped, which is fine).
    ``selectable``: skipped when the run builds no node; after a green run that built every node (or every
    changed one) it also keeps the run's state for ``only=changed``/``fresher`` (``project_state``)."""
    args = _dbt_operator_args(operator_args)
    callbacks = [*_callbacks(args.pop("callback")), publish_docs]
    if selectable:
        args["pre_execute"] = skip_when_nothing_to_build
        callbacks.append(RECORD_PROJECT_STATE)
    task = DbtDocsLocalOperator(
        task_id="docs_generate",
        callback=callbacks,
        trigger_rule=TriggerRule.NONE_FAILED,
        emit_datasets=False,
        cache_dir=_cache_dir(f"{dag_id}__docs_generate"),
        doc_md=f"`dbt docs generate`, copied to {settings.DBT_DOCS_URL.value() or settings.DBT_DOCS_DIR} and served "
        "under Browse > dbt Docs (greenery).",
        **args,
    )
    share_parse([task])
    return task


def freshness_then_snapshots(validated: BaseOperator, freshness: BaseOperator, snapshots: TaskGroup) -> None:
    """Order the start of the daily run: validate, then freshness, then snapshots.

    By default a failed freshness check does not stop the snapshots: they wait for it to finish and run if the
    parameters were valid (trigger rule ``all_done_min_one_success`` over both). With
    ``GREENERY_FRESHNESS_BLOCKS=1`` they need it to succeed.
    """
    validated >> freshness >> snapshots
    blocks = freshness_blocks()
    if not blocks:
        validated >> snapshots
    for root in snapshots.roots:
        root.trigger_rule = TriggerRule.ALL_SUCCESS if blocks else TriggerRule.ALL_DONE_MIN_ONE_SUCCESS


def one_dbt_process(
    anchor: BaseOperator | TaskGroup, operator_args: dict[str, Any] | None = None, selectable: bool = False
) -> BaseOperator | None:
    """In the ``producer`` execution mode, run the dbt steps of ``anchor``'s DAG in one process, in the task
    ``dbt_build``, and make every dbt task of the DAG follow it (``include.dbt_tasks.producer``); in the other
    modes, nothing. ``anchor`` is the task the producer runs after (``validate_params``), or a group of the DAG.
    ``operator_args``' ``vars`` and ``full_refresh`` are handed to dbt as in the node tasks."""
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
    from include.dbt_tasks.producer import PRODUCER_TASK_ID, DbtProducerOperator, follow_producer

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
    return producer
