"""The ``producer`` execution mode: one dbt process for a DAG run's dbt steps, one Airflow task per node all the same.

``GREENERY_COSMOS_EXECUTION_MODE=producer``, the default (``local`` and ``watcher`` stay selectable; the figures are
in bench/RESULTS.md). The DAG keeps every node task of the LOCAL mode, with the same ids, dependencies, trigger rules
and assets; beside them one task, ``dbt_build`` (``DbtProducerOperator``), loads the project once and runs the run's
dbt commands in its own process (``dbtRunner``), one after another: ``source freshness``, ``snapshot``, ``build``
(everything but the snapshots) and ``docs generate``, as bare dbt would. It holds the ``dbt_snapshots`` pool slot
throughout, so no two snapshot commands ever overlap, across DAGs.

As each node finishes, dbt tells the producer (an event callback), and once every node of a node task has finished
the producer pushes that task's result as an XCom, which every machine of the deployment can read. The node tasks
start in the triggerer (``include.dbt_tasks.follower_trigger``) and end there on success or skip, so a green run
uses no worker for them. A node task resumes on a worker only when it has to:

- dbt failed its node: the task's log shows dbt's message and failing-row count, the failure alert goes out as in
  LOCAL mode, and a model retries (a data test does not: ``include.dbt_tasks.retries``);
- a retry or a clear: the task runs its node on its own, with dbt, as in LOCAL mode, on the project parse that
  ``dbt_build`` kept on the machine (``include.dbt_tasks.parsed_project``), so it does not parse the project again;
- the producer ended (failed for good, or was cleared away) before dbt reached the node: the task fails and says
  so, within a poll of the producer's end, instead of waiting for the run's timeout.

When a dbt step fails in a way that stops what comes after it in LOCAL mode (a snapshot fails; freshness fails with
``GREENERY_FRESHNESS_BLOCKS=1``; a node fails, so no docs), the producer stops there too: the node tasks after it
end ``upstream_failed`` through their own trigger rules, exactly as before.

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
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import StartTriggerArgs

from include import settings
from include.dbt_tasks.follower_trigger import (
    FAILED,
    NOT_RUN,
    PRODUCER_GONE,
    REPORT_FAILURE,
    RUN_HERE,
    SKIPPED,
    SUCCESS,
    NodeResultTrigger,
    left_out,
    result_key,
)
from include.dbt_tasks.selection import node_selector, task_nodes
from include.history.artifacts import FAILED_STATUSES, DbtInvocation, NodeResult, node_name

log = logging.getLogger(__name__)

PRODUCER_TASK_ID = "dbt_build"
SOURCE_NAME = "greenery"
# The dbt commands the producer can run, in the order it runs them.
FRESHNESS, SNAPSHOT, BUILD, DOCS = "freshness", "snapshot", "build", "docs"
STEPS = (FRESHNESS, SNAPSHOT, BUILD, DOCS)
_NODE_TASK_TYPES = ("DbtRunLocalOperator", "DbtTestLocalOperator", "DbtSnapshotLocalOperator", "DbtSeedLocalOperator")
_SKIPPED_STATUSES = frozenset({"skipped"})
# A node task in these states has not ended: a retry of the producer still builds its nodes.
_WAITING_STATES = frozenset({None, "none", "scheduled", "deferred"})


@dataclass(frozen=True)
class NodeTask:
    """A node task of the DAG as the producer sees it: the dbt nodes whose results end it, and the step they
    run in."""

    task_id: str
    nodes: frozenset[str]
    step: str


def _manifest() -> dict[str, Any]:
    return json.loads(Path(settings.DBT_MANIFEST_PATH).read_text())


def _single_parent_tests(manifest: Mapping[str, Any]) -> dict[str, set[str]]:
    """Tests by the one node they test (tests on two nodes have a task of their own)."""
    tests: dict[str, set[str]] = {}
    for unique_id, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") != "test":
            continue
        parents = [parent for parent in node.get("depends_on", {}).get("nodes", []) if parent.split(".")[0] != "macro"]
        if len(parents) == 1:
            tests.setdefault(parents[0], set()).add(unique_id)
    return tests


def _task_nodes(task: Any, tests_of: Mapping[str, set[str]]) -> frozenset[str]:
    unique_id = next(iter(task_nodes(task)), None)
    if not unique_id:
        return frozenset()
    if type(task).__name__ == "DbtTestLocalOperator" and unique_id.split(".")[0] != "test":
        return frozenset(tests_of.get(unique_id, ()))
    return frozenset({unique_id})


def node_tasks(tasks: Iterable[Any], manifest: Mapping[str, Any] | None = None) -> list[NodeTask]:
    """The dbt node tasks among ``tasks`` with the nodes each one stands for."""
    manifest = manifest if manifest is not None else _manifest()
    tests_of = _single_parent_tests(manifest)
    found = []
    for task in tasks:
        kind = type(task).__name__
        if kind == "DbtSourceLocalOperator":
            sources = {uid for uid, source in manifest["sources"].items() if source["source_name"] == SOURCE_NAME}
            found.append(NodeTask(task.task_id, frozenset(sources), FRESHNESS))
        elif kind == "DbtDocsLocalOperator":
            found.append(NodeTask(task.task_id, frozenset(), DOCS))
        elif kind in _NODE_TASK_TYPES:
            step = SNAPSHOT if task.task_id.startswith("snapshots.") else BUILD
            found.append(NodeTask(task.task_id, _task_nodes(task, tests_of), step))
    return found


# -- the node tasks' side --------------------------------------------------------------------------------------


def _failure_invocation(result: Mapping[str, Any]) -> DbtInvocation:
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
    """Where a node task resumes on a worker (the ``next_method`` of its start trigger). ``task`` is the task as
    the DAG file defined it; the one that runs is the context's, with its templates rendered."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    task = context.get("task") or task

    from include.dbt_tasks.retries import is_dropped_connection

    action = event.get("action")
    if action == RUN_HERE:
        log.info("Running this task's dbt command here, on its own%s.", f": {event['why']}" if event.get("why") else "")
        return task.execute(context)
    if action == PRODUCER_GONE:
        raise AirflowFailException(
            f"The producer task {PRODUCER_TASK_ID} ended {event.get('producer_state')} before dbt reached this "
            f"task's nodes, so they were not built in this run. See {PRODUCER_TASK_ID}'s log; clear this task (with "
            "its downstream) to build them on their own."
        )
    if action != REPORT_FAILURE:
        raise AirflowFailException(f"Unknown resume event {dict(event)!r}: clear this task to run it on its own.")
    result = event["result"]
    invocation = _failure_invocation(result)
    from include.alerts.callbacks import notify_dbt_results

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
    retry_heals = task.task_type in ("DbtRunLocalOperator", "DbtSnapshotLocalOperator", "DbtSeedLocalOperator") or all(
        is_dropped_connection(node.message) for node in failed
    )
    if retry_heals:
        raise AirflowException(message)
    raise AirflowFailException(message)


def follow_producer(
    tasks: Iterable[Any], selectable: bool, manifest: Mapping[str, Any] | None = None
) -> list[NodeTask]:
    """Make every dbt task of ``tasks`` a node task of the producer: it starts in the triggerer and resumes on a
    worker only when it must (``resume_node_task``). Returns what the producer publishes for."""
    import functools

    from include.dbt_tasks.params import VALIDATE_TASK_ID

    tasks = list(tasks)
    followers = node_tasks(tasks, manifest)
    by_id = {task.task_id: task for task in tasks}
    for follower in followers:
        task = by_id[follower.task_id]
        task.start_from_trigger = True
        task.start_trigger_args = StartTriggerArgs(
            trigger_cls=f"{NodeResultTrigger.__module__}.{NodeResultTrigger.__qualname__}",
            trigger_kwargs={
                "producer_task_id": PRODUCER_TASK_ID,
                # Freshness and docs are skipped only when the run builds nothing, which the producer publishes.
                "nodes": sorted(follower.nodes) if follower.step in (SNAPSHOT, BUILD) else [],
                "selectable": selectable and follower.step in (SNAPSHOT, BUILD),
                "validate_task_id": VALIDATE_TASK_ID if selectable else None,
                "clear_number": "{{ dag_run.clear_number }}",
            },
            next_method="resume_node_task",
            next_kwargs=None,
            timeout=None,
        )
        task.resume_node_task = functools.partial(resume_node_task, task)
    return followers


# -- the producer ------------------------------------------------------------------------------------------------


def _outcome(statuses: Iterable[str]) -> str:
    """A node task's outcome from its nodes' dbt statuses. A node dbt skipped although its task's upstream tasks
    succeeded (a unit test of the model failed, say) is built by the task itself, as in LOCAL mode."""
    statuses = list(statuses)
    if any(status in FAILED_STATUSES for status in statuses):
        return FAILED
    if any(status in _SKIPPED_STATUSES for status in statuses):
        return NOT_RUN
    return SUCCESS


def _step_nodes(selected: list[str] | None, pending: Iterable[NodeTask] | None = None) -> dict[str, list[str]] | None:
    """What the snapshot and build steps select: the run's selection (``validate_params``), narrowed on a retry to
    the nodes of the node tasks still ``pending``. None: everything."""
    if pending is None:
        if selected is None:
            return None
        return {SNAPSHOT: [uid for uid in selected if uid.startswith("snapshot.")], BUILD: list(selected)}
    pending = list(pending)
    nodes = {step: {node for f in pending if f.step == step for node in f.nodes} for step in (SNAPSHOT, BUILD)}
    if selected is not None:
        nodes = {step: found & set(selected) for step, found in nodes.items()}
    return {step: sorted(found) for step, found in nodes.items()}


class _Publisher:
    """Pushes each node task's result as soon as dbt finished all of its nodes (dbt calls back from its threads)."""

    def __init__(self, ti: Any, followers: list[NodeTask], names: Mapping[str, str], clear_number: int = 0) -> None:
        self.ti = ti
        self.clear_number = clear_number
        self.names = names
        self.followers = list(followers)
        self.pending = {follower.task_id: follower for follower in followers}
        self.results: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.invocation_id: str | None = None
        self.command = BUILD

    def node_finished(self, unique_id: str, status: str, message: str, failures: int, seconds: float) -> None:
        with self.lock:
            self.results[unique_id] = {
                "unique_id": unique_id,
                "name": self.names.get(unique_id, unique_id.split(".")[-1]),
                "status": status,
                "message": message or None,
                "failures": failures or None,
                "execution_seconds": round(seconds, 3),
            }
            ready = [
                follower
                for follower in self.pending.values()
                if unique_id in follower.nodes and follower.nodes <= self.results.keys()
            ]
            for follower in ready:
                self._push(follower, [self.results[node] for node in sorted(follower.nodes)])

    def _push(self, follower: NodeTask, nodes: list[dict[str, Any]], outcome: str | None = None, why: str = "") -> None:
        self.pending.pop(follower.task_id, None)
        outcome = outcome or _outcome(node["status"] for node in nodes)
        lines = [
            f"dbt {node['status']} {node['name']} in {node['execution_seconds']:.2f} s"
            + (f": {node['message']}" if node.get("message") and node["status"] in FAILED_STATUSES else "")
            for node in nodes
        ]
        value = {
            "outcome": outcome,
            "nodes": nodes,
            "invocation_id": self.invocation_id,
            "command": self.command,
            "log": lines,
            "why": why,
            "clear_number": self.clear_number,
        }
        self.ti.xcom_push(key=result_key(follower.task_id), value=value)

    def skip(self, followers: Iterable[NodeTask], why: str) -> None:
        """Publish ``SKIPPED`` for node tasks this try builds nothing for."""
        with self.lock:
            for follower in followers:
                self._push(follower, [], SKIPPED, why)

    def orphan_failures(self) -> list[str]:
        """Nodes dbt failed that no node task stands for (unit tests, hooks): only the producer can report them."""
        owned = {node for follower in self.followers for node in follower.nodes}
        return sorted(
            result["name"]
            for unique_id, result in self.results.items()
            if result["status"] in FAILED_STATUSES and unique_id not in owned
        )

    def finish_step(self, step: str, outcome: str | None = None, why: str = "") -> None:
        """After a step's command: publish the step's tasks not published yet. ``outcome`` for a whole-step
        task (freshness, docs); without it a task's unreported nodes did not run (``NOT_RUN``)."""
        with self.lock:
            for follower in [f for f in self.pending.values() if f.step == step]:
                nodes = [self.results[node] for node in sorted(follower.nodes) if node in self.results]
                if outcome is not None:
                    self._push(follower, nodes, outcome, why)
                elif follower.nodes and len(nodes) == len(follower.nodes):
                    self._push(follower, nodes)
                elif any(node["status"] in FAILED_STATUSES for node in nodes):
                    self._push(follower, nodes, FAILED)
                else:
                    self._push(follower, nodes, NOT_RUN, why or f"dbt {step} did not run every node of this task")


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
            from airflow.sdk import AssetAlias
            from cosmos.dataset import get_dataset_alias_name

            self.asset_alias = get_dataset_alias_name(self.dag, None, self.task_id)
            self.outlets = [*self.outlets, AssetAlias(self.asset_alias)]

    def execute(self, context: Mapping[str, Any]) -> dict[str, Any]:
        from cosmos.dbt.project import create_symlinks

        from include.dbt_tasks.cosmos_config import profile_config

        ti = context["ti"]
        manifest = _manifest()
        followers = node_tasks(self.dag.tasks, manifest)
        clear_number = int(getattr(context.get("dag_run"), "clear_number", 0) or 0)
        selected = self._selected(ti)
        if selected == []:
            publisher = _Publisher(ti, followers, {}, clear_number)
            for step in self.steps:
                publisher.finish_step(step, SKIPPED)
            log.info("Nothing to build in this run: every dbt task ends skipped.")
            return {"steps": []}
        names = {uid: node_name(manifest, uid) for kind in ("nodes", "sources") for uid in manifest.get(kind, {})}
        unselected = [f for f in followers if f.step in (SNAPSHOT, BUILD) and left_out(f.nodes, selected)]
        publisher = _Publisher(ti, followers, names, clear_number)
        publisher.skip(unselected, "Not in this run's selection.")
        pending = [f for f in followers if f not in unselected]
        steps, step_nodes = self.steps, _step_nodes(selected)
        if (ti.try_number or 1) > 1:
            # A retry (the try before was killed, or lost its warehouse connection): what ended is not built again.
            pending = self._unfinished(ti, pending)
            steps = tuple(step for step in self.steps if any(f.step == step for f in pending))
            step_nodes = _step_nodes(selected, pending)
            log.info("Try %s: building what had not finished: %s", ti.try_number, [f.task_id for f in pending])
            if not pending:
                log.info("Every node task of this run has ended: nothing is left to build (clear them to rebuild).")
                return {"steps": []}
        publisher.pending = {f.task_id: f for f in pending}
        with (
            tempfile.TemporaryDirectory(prefix="greenery-dbt-") as tmp,
            profile_config().ensure_profile() as (
                profile_path,
                env_vars,
            ),
        ):
            project = Path(tmp)
            create_symlinks(settings.DBT_PROJECT_DIR, project, ignore_dbt_packages=False)
            target = project / "target"
            target.mkdir()
            shutil.copy2(profile_path, project / "profiles.yml")
            os.environ.update(env_vars)
            ran = self._run_steps(project, publisher, steps, step_nodes, manifest, context)
            self._emit_assets(context, target / "manifest.json", publisher, followers)
        if orphans := publisher.orphan_failures():
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(
                f"dbt failed {', '.join(orphans)}, which no node task stands for: see this log. The node tasks "
                "show the rest of the run."
            )
        return {"steps": ran}

    def _emit_assets(
        self, context: Mapping[str, Any], manifest_path: Path, publisher: _Publisher, followers: list[NodeTask]
    ) -> None:
        """Asset events for the nodes dbt built whose node tasks emit assets (the marts), with the URIs Cosmos'
        own tasks give them."""
        if self.asset_alias is None:
            return
        from airflow.sdk import Asset, AssetAlias
        from cosmos.dataset import compute_model_outlet_uris, get_dataset_namespace

        from include.dbt_tasks.cosmos_config import profile_config

        emitting = {task.task_id for task in self.dag.tasks if getattr(task, "emit_datasets", False)}
        nodes = {node for f in followers if f.task_id in emitting and f.step in (SNAPSHOT, BUILD) for node in f.nodes}
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
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

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
        from include.dbt_tasks.params import VALIDATE_TASK_ID

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

    def _run_steps(
        self,
        project: Path,
        publisher: _Publisher,
        steps: tuple[str, ...],
        step_nodes: Mapping[str, list[str]] | None,
        manifest: Mapping[str, Any],
        context: Any,
    ) -> list[str]:
        """Run ``steps``; ``step_nodes`` are the nodes the snapshot and build steps select (None: all of them)."""
        from dbt.cli.main import dbtRunner

        from include.dbt_tasks.docs import publish_docs
        from include.dbt_tasks.steps import freshness_blocks
        from include.history.retention import prune_run_history
        from include.history.store import record_dbt_artifacts

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

        from include.dbt_tasks import parsed_project

        common = self._common_args(project)
        # The run history names each node's own task, whose log the dbt health page links to.
        node_tasks = {node: follower.task_id for follower in publisher.followers for node in follower.nodes}
        # Loaded without the run's vars, so that the window does not make dbt parse the whole project again.
        runner = dbtRunner(manifest=parsed_project.load(project, project, project / "target"), callbacks=[on_event])
        ran: list[str] = []
        for step in steps:
            publisher.command = step
            nodes = None if step_nodes is None else step_nodes.get(step)
            selection = None if nodes is None else sorted({node_selector(manifest, uid) for uid in nodes})
            if selection == [] and step in (SNAPSHOT, BUILD):
                publisher.finish_step(step, SKIPPED)
                continue
            if step == FRESHNESS:
                args = ["source", "freshness", "--select", f"source:{SOURCE_NAME}"]
            elif step == SNAPSHOT:
                # The snapshots with their tests, as the snapshot group's tasks run them.
                args = ["build", "--select", *(selection or ["resource_type:snapshot"])]
            elif step == BUILD:
                args = ["build", "--exclude", "resource_type:snapshot", "resource_type:exposure"]
                if selection is not None:
                    args += ["--select", *selection]
                if self._full_refresh():
                    args.append("--full-refresh")
            else:
                args = ["docs", "generate"]
            log.info("dbt %s", " ".join(args))
            result = runner.invoke([*args, *common])
            ran.append(step)
            if step != DOCS:
                record_dbt_artifacts(project, context, node_tasks=node_tasks)
            if step == FRESHNESS:
                prune_run_history(context=context)  # as the source_freshness task does in the other modes
            if result.exception is not None and step == DOCS:
                publisher.finish_step(step, FAILED, f"dbt docs generate stopped: {result.exception}")
                continue
            if result.exception is not None and step != FRESHNESS:
                # dbt itself stopped (no connection, a broken project): this task's retry runs the step again,
                # and the node tasks still waiting wait for it, so nothing is built twice at the same time.
                raise RuntimeError(f"dbt {' '.join(args)} stopped: {result.exception}")
            if step == FRESHNESS:
                stale = not result.success
                publisher.finish_step(step, FAILED if stale else SUCCESS)
                if stale and freshness_blocks():
                    log.warning("A source is stale and GREENERY_FRESHNESS_BLOCKS=1: nothing is built.")
                    break
            elif step == DOCS:
                publish_docs(str(project))
                if self.selectable:
                    from include.dbt_tasks.project_state import record_project_state

                    record_project_state(str(project), context)
                publisher.finish_step(step, SUCCESS)
            else:
                publisher.finish_step(step)
                if not result.success:
                    log.warning("dbt %s failed nodes: the steps after it do not run, as in LOCAL mode.", step)
                    break
        return ran
