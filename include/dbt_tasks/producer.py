"""The ``producer`` execution mode's one dbt process per DAG run: the task ``dbt_build`` (``DbtProducerOperator``).

``GREENERY_COSMOS_EXECUTION_MODE=producer``, the default (``local`` and ``watcher`` stay selectable; the figures are
in bench/RESULTS.md). The DAG keeps every node task of the LOCAL mode, with the same ids, dependencies and assets
(``include.dbt_tasks.producer_mode`` makes them wait in the triggerer); ``dbt_build`` loads the project once and runs
the run's dbt commands in its own process (``dbtRunner``), one after another: ``source freshness``, ``snapshot``,
``build`` (everything but the snapshots) and ``docs generate``, as bare dbt would. It holds the ``dbt_snapshots``
pool slot throughout, so no two snapshot commands ever overlap, across DAGs.

As each node finishes, dbt tells the producer (an event callback), and once every node of a node task has finished
the producer publishes that task's result (``include.dbt_tasks.publisher``), which ends the task in the triggerer.
When a dbt step fails in a way that stops what comes after it in LOCAL mode (a snapshot fails; freshness fails with
``GREENERY_FRESHNESS_BLOCKS=1``; a node fails, so no docs), the producer stops there too, and the node tasks it did
not reach decide from their upstream tasks (``include.dbt_tasks.follower_trigger``).

A retry of the producer itself (its process killed, dbt cut off from the warehouse) builds only the node tasks still
waiting for a result; the marts' asset events, which node tasks ended in the triggerer cannot record, are the
producer's (docs/dags.md).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from cosmos.dataset import compute_model_outlet_uris, get_dataset_alias_name, get_dataset_namespace
from cosmos.dbt.project import create_symlinks

from include import settings
from include.dbt_tasks import parsed_project
from include.dbt_tasks.cosmos_config import profile_config
from include.dbt_tasks.dbt_results import record_dbt_artifacts
from include.dbt_tasks.docs import publish_docs
from include.dbt_tasks.node_results import FAILED, SKIPPED, SUCCESS, count, left_out
from include.dbt_tasks.node_tasks import (
    BUILD,
    DOCS,
    FRESHNESS,
    NODE_STEPS,
    SNAPSHOT,
    SOURCE_NAME,
    STEPS,
    NodeTask,
    node_tasks,
    read_manifest,
    step_nodes,
)
from include.dbt_tasks.project_state import record_project_state
from include.dbt_tasks.publisher import Publisher
from include.dbt_tasks.selection import node_selector
from include.dbt_tasks.task_ids import VALIDATE_TASK_ID
from include.history.artifacts import node_name
from include.history.retention import prune_run_history

log = logging.getLogger(__name__)

# A node task in these states has not ended: a retry of the producer still builds its nodes.
_WAITING_STATES = frozenset({None, "none", "scheduled", "deferred"})


class DbtProducerOperator(BaseOperator):
    """Runs ``steps`` of dbt in one process and publishes each node task's result (module docstring)."""

    template_fields = ("dbt_vars", "full_refresh")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        steps: tuple[str, ...],
        dbt_vars: Mapping[str, str] | None = None,
        full_refresh: bool | str = False,
        selectable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = set(steps) - set(STEPS)
        if unknown:
            raise ValueError(f"Unknown dbt steps {sorted(unknown)}: use some of {STEPS}")
        self.steps = tuple(step for step in STEPS if step in steps)
        self.dbt_vars = dict(dbt_vars or {})
        self.full_refresh = full_refresh
        self.selectable = selectable
        # The node tasks that end in the triggerer emit no assets (Airflow records outlets only for a task that
        # ends on a worker), so the producer emits theirs, through an alias of its own, as Cosmos' tasks do.
        self.asset_alias: str | None = None
        if any(getattr(task, "emit_datasets", False) for task in self.dag.tasks):
            self.asset_alias = get_dataset_alias_name(self.dag, None, self.task_id)
            self.outlets = [*self.outlets, AssetAlias(self.asset_alias)]

    def execute(self, context: Mapping[str, Any]) -> dict[str, Any]:
        ti = context["ti"]
        manifest = read_manifest()
        followers = node_tasks(self.dag.tasks, manifest)
        clear_number = count(getattr(context.get("dag_run"), "clear_number", 0))
        names = {uid: node_name(manifest, uid) for kind in ("nodes", "sources") for uid in manifest.get(kind, {})}
        with Publisher(ti, followers, names, clear_number, ti.try_number or 1) as publisher:
            ran = self._build(context, manifest, followers, publisher)
        if orphans := publisher.orphan_failures():
            raise AirflowFailException(
                f"dbt failed {', '.join(orphans)}, which no node task stands for: see this log. The node tasks "
                "show the rest of the run."
            )
        return {"steps": ran, "results_pushed": publisher.pushes}

    def _build(
        self, context: Mapping[str, Any], manifest: Mapping[str, Any], followers: list[NodeTask], publisher: Publisher
    ) -> list[str]:
        ti = context["ti"]
        selected = self._selected(ti)
        if selected == []:
            for step in self.steps:
                publisher.finish_step(step, SKIPPED, "Nothing to build in this run.")
            log.info("Nothing to build in this run: every dbt task ends skipped.")
            return []
        unselected = [f for f in followers if f.step in NODE_STEPS and left_out(f.nodes, selected)]
        publisher.skip(unselected, "Not in this run's selection.")
        pending = [f for f in followers if f not in unselected]
        steps, nodes = self.steps, step_nodes(selected)
        if (ti.try_number or 1) > 1:
            # A retry (the try before was killed, or lost its warehouse connection), or the run was cleared: what
            # ended is not built again.
            pending = self._unfinished(ti, pending)
            steps = tuple(step for step in self.steps if any(f.step == step for f in pending))
            nodes = step_nodes(selected, pending)
            log.info("Try %s: building what had not finished: %s", ti.try_number, [f.task_id for f in pending])
            if not pending:
                log.info("Every node task of this run has ended: nothing is left to build (clear them to rebuild).")
                return []
        publisher.pending = {f.task_id: f for f in pending}
        with (
            tempfile.TemporaryDirectory(prefix="greenery-dbt-") as tmp,
            profile_config().ensure_profile() as (profile_path, env_vars),
        ):
            project = Path(tmp)
            create_symlinks(settings.DBT_PROJECT_DIR, project, ignore_dbt_packages=False)
            (project / "target").mkdir()
            shutil.copy2(profile_path, project / "profiles.yml")
            os.environ.update(env_vars)
            ran = self._run_steps(project, publisher, steps, nodes, manifest, context)
            self._emit_assets(context, project / "target" / "manifest.json", publisher, followers)
        return ran

    def _emit_assets(
        self, context: Mapping[str, Any], manifest_path: Path, publisher: Publisher, followers: list[NodeTask]
    ) -> None:
        """Asset events for the nodes dbt built whose node tasks emit assets (the marts), with the URIs Cosmos'
        own tasks give them."""
        if self.asset_alias is None:
            return
        emitting = {task.task_id for task in self.dag.tasks if getattr(task, "emit_datasets", False)}
        nodes = {node for f in followers if f.task_id in emitting and f.step in NODE_STEPS for node in f.nodes}
        built = sorted(
            uid for uid, result in publisher.results.items() if uid in nodes and result["status"] == "success"
        )
        namespace = get_dataset_namespace(profile_config()) if built else None
        if not namespace:
            return
        uris = compute_model_outlet_uris(manifest_path, namespace)
        alias = AssetAlias(self.asset_alias)
        emitted = [uri for uid in built for uri in uris.get(uid, [])]
        for uri in emitted:
            context["outlet_events"][alias].add(Asset(uri))
        log.info("Emitting %d asset(s) for the marts dbt built: %s", len(emitted), emitted)

    def _unfinished(self, ti: Any, followers: list[NodeTask]) -> list[NodeTask]:
        """The node tasks still waiting for a result whose upstream tasks are all done or waiting too (one whose
        upstream failed or retries on a worker is left to its own trigger)."""
        found = RuntimeTaskInstance.get_task_states(
            dag_id=ti.dag_id, task_ids=list(self.dag.task_ids), run_ids=[ti.run_id]
        )
        states = {
            task_id: str(getattr(state, "value", state)) if state is not None else None
            for task_id, state in (found.get(ti.run_id) or {}).items()
        }
        waiting = {task_id for task_id in self.dag.task_ids if states.get(task_id) in _WAITING_STATES}
        fine = waiting | {task_id for task_id, state in states.items() if state in ("success", "skipped")}
        return [
            follower
            for follower in followers
            if follower.task_id in waiting
            and self.dag.get_task(follower.task_id).get_flat_relative_ids(upstream=True) <= fine
        ]

    def _selected(self, ti: Any) -> list[str] | None:
        if not self.selectable:
            return None
        chosen = ti.xcom_pull(task_ids=VALIDATE_TASK_ID) or {}
        selected = chosen.get("selected")
        return None if selected is None else list(selected)

    def _common_args(self, project: Path) -> list[str]:
        args = ["--project-dir", str(project), "--profiles-dir", str(project), "--target-path", str(project / "target")]
        args += ["--threads", str(settings.DBT_THREADS.value())]
        if self.dbt_vars:
            args += ["--vars", json.dumps(self.dbt_vars)]
        return args

    def _full_refresh(self) -> bool:
        return str(self.full_refresh).strip().lower() in ("true", "1")

    def _arguments(self, step: str, selection: list[str] | None) -> list[str]:
        if step == FRESHNESS:
            return ["source", "freshness", "--select", f"source:{SOURCE_NAME}"]
        if step == SNAPSHOT:
            # The snapshots with their tests, as the snapshot group's tasks run them.
            return ["build", "--select", *(selection or ["resource_type:snapshot"])]
        if step == BUILD:
            args = ["build", "--exclude", "resource_type:snapshot", "resource_type:exposure"]
            if selection is not None:
                args += ["--select", *selection]
            return [*args, "--full-refresh"] if self._full_refresh() else args
        return ["docs", "generate"]

    def _run_steps(
        self,
        project: Path,
        publisher: Publisher,
        steps: tuple[str, ...],
        nodes_of_step: Mapping[str, list[str]] | None,
        manifest: Mapping[str, Any],
        context: Any,
    ) -> list[str]:
        """Run ``steps``; ``nodes_of_step`` are the nodes the snapshot and build steps select (None: all of them)."""
        from dbt.cli.main import dbtRunner  # dbt loads in the task that runs it, not where the DAG file is parsed

        def on_event(event: Any) -> None:
            if event.info.name == "NodeFinished" and publisher.command != DOCS:
                data = event.data
                run_result = data.run_result
                publisher.node_finished(
                    data.node_info.unique_id,
                    run_result.status or data.node_info.node_status,
                    run_result.message,
                    run_result.num_failures,
                    run_result.execution_time,
                )
            elif event.info.name == "MainReportVersion":
                publisher.invocation_id = event.info.invocation_id

        # The run history names each node's own task, whose log the dbt health page links to.
        task_of_node = {node: follower.task_id for follower in publisher.followers for node in follower.nodes}
        # Loaded without the run's vars, so that the window does not make dbt parse the whole project again.
        runner = dbtRunner(manifest=parsed_project.load(project, project, project / "target"), callbacks=[on_event])
        ran: list[str] = []
        for step in steps:
            publisher.command = step
            nodes = None if nodes_of_step is None else nodes_of_step.get(step)
            selection = None if nodes is None else sorted({node_selector(manifest, uid) for uid in nodes})
            if selection == [] and step in NODE_STEPS:
                publisher.finish_step(step, SKIPPED, "Not in this run's selection.")
                continue
            args = self._arguments(step, selection)
            log.info("dbt %s", " ".join(args))
            result = runner.invoke([*args, *self._common_args(project)])
            ran.append(step)
            if step == FRESHNESS:
                stale = not result.success
                publisher.finish_step(step, FAILED if stale else SUCCESS)  # the task ends before the history below
                record_dbt_artifacts(project, context, node_tasks=task_of_node)
                prune_run_history(context=context)  # as the source_freshness task does in the other modes
                if stale and settings.FRESHNESS_BLOCKS.value():
                    log.warning("A source is stale and GREENERY_FRESHNESS_BLOCKS=1: nothing is built.")
                    break
                continue
            if step != DOCS:
                record_dbt_artifacts(project, context, node_tasks=task_of_node)
            if result.exception is not None and step == DOCS:
                publisher.finish_step(step, FAILED, f"dbt docs generate stopped: {result.exception}")
                continue
            if result.exception is not None:
                # dbt itself stopped (no connection, a broken project): this task's retry runs the step again,
                # and the node tasks still waiting wait for it, so nothing is built twice at the same time.
                raise RuntimeError(f"dbt {' '.join(args)} stopped: {result.exception}")
            if step == DOCS:
                publish_docs(str(project))
                publisher.finish_step(step, SUCCESS)  # the docs task ends while the state below is written
                if self.selectable:
                    record_project_state(str(project), context)
            else:
                publisher.finish_step(step)
                if not result.success:
                    log.warning("dbt %s failed nodes: the steps after it do not run, as in LOCAL mode.", step)
                    break
        return ran
