"""Which dbt nodes one run of ``greenery_daily`` builds: the trigger form's ``select`` / ``exclude``
(``include.dbt_tasks.selection``), ``rerun_failed_of`` (``include.dbt_tasks.rerun``) and ``only``
(``include.dbt_tasks.project_state``), worked out by ``validate_params`` before any dbt command runs.

The answer is a set of dbt unique ids in ``validate_params``' XCom; each node task runs when its node is in it
and ends ``skipped`` otherwise. When the set is empty (nothing failed, nothing changed, no raw table grew) the
run says why in its first task's log and every dbt task ends skipped: no dbt work at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.dbt_tasks import project_state, rerun
from include.dbt_tasks.params import PARAMS, InvalidParams, RunWindow, with_selection
from include.dbt_tasks.selection import InvalidSelection, criteria, describe, resolve, task_nodes

log = logging.getLogger(__name__)

# The form's choices (Airflow already refuses others when the run is created; a raw API call may not).
ONLY = tuple(PARAMS["only"].schema["enum"])


@dataclass(frozen=True)
class ThisRun:
    """What ``validate_params`` can ask Airflow about this run and the DAG's other runs (the task SDK)."""

    dag_id: str
    run_id: str
    ti: Any
    dag: Any = None

    def exists(self, run_id: str) -> bool:
        return self.ti.get_dr_count(dag_id=self.dag_id, run_ids=[run_id]) > 0

    def validated(self, run_id: str) -> Mapping[str, Any] | None:
        """What ``validate_params`` handed the dbt tasks in that run (its window, full_refresh)."""
        from include.dbt_tasks.params import VALIDATE_TASK_ID

        return self.ti.xcom_pull(task_ids=VALIDATE_TASK_ID, dag_id=self.dag_id, run_id=run_id)

    def failed_task_nodes(self, run_id: str) -> set[str]:
        """The dbt nodes of the node tasks that ended ``failed`` in that run (also those dbt never reported on)."""
        if self.dag is None:
            return set()
        try:
            states = self.ti.get_task_states(dag_id=self.dag_id, run_ids=[run_id]) or {}
        except Exception as error:  # the dbt results still say what failed
            log.warning("Airflow did not give the task states of run %s (%s); using dbt's results only", run_id, error)
            return set()
        states = states.get(run_id, states)
        nodes: set[str] = set()
        for task_id, state in states.items():
            if str(getattr(state, "value", state)) == "failed" and self.dag.has_task(task_id):
                nodes |= task_nodes(self.dag.get_task(task_id))
        return nodes


def _nothing(window: RunWindow, reason: str) -> RunWindow:
    return dataclasses.replace(window, selected=(), selection_text=reason, state_mode=None)


def _selection(select: list[str], exclude: list[str], state_dir: Path | None = None) -> list[str]:
    try:
        return resolve(select, exclude, state_dir=state_dir, allow_empty=True) or []
    except InvalidSelection as error:
        raise InvalidParams(str(error)) from None


def _criteria(params: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    try:
        return criteria("select", params.get("select")), criteria("exclude", params.get("exclude"))
    except InvalidSelection as error:
        raise InvalidParams(str(error)) from None


def _rerun(window: RunWindow, params: Mapping[str, Any], asked: str, exclude: list[str], run: ThisRun) -> RunWindow:
    from include.history.store import warehouse_connection

    connection = warehouse_connection()
    try:
        if asked == rerun.LATEST:
            target = rerun.latest_run(connection, run.dag_id, run.run_id)
            if target is None:
                raise InvalidParams(
                    f"rerun_failed_of latest: {run.dag_id} has no earlier run that ran dbt, so nothing can be rerun."
                )
        else:
            target = asked
            if target == run.run_id:
                raise InvalidParams(f"rerun_failed_of {target!r} is this run: give an earlier run's id, or latest.")
            if not run.exists(target):
                others = [dag_id for dag_id in rerun.dags_of_run(connection, target) if dag_id != run.dag_id]
                where = f" (it is a run of {', '.join(others)})" if others else ""
                raise InvalidParams(
                    f"rerun_failed_of {target!r} is no run of {run.dag_id}{where}: copy a run id from "
                    f"{run.dag_id}'s Grid view, or write latest."
                )
        failed = set(rerun.failed_nodes(connection, run.dag_id, target)) | run.failed_task_nodes(target)
    finally:
        connection.close()

    earlier = run.validated(target) or {}
    dates_given = bool(params.get("start_date") or params.get("end_date"))
    if earlier.get("start_date") and not dates_given:
        window = dataclasses.replace(
            window,
            start=dt.datetime.fromisoformat(earlier["start_date"]),
            end=dt.datetime.fromisoformat(earlier["end_date"]),
        )
    window = dataclasses.replace(window, full_refresh=window.full_refresh or bool(earlier.get("full_refresh")))

    manifest = project_state.read_manifest()
    chosen = rerun.criteria(manifest, sorted(failed))
    if not chosen:
        return _nothing(window, f"nothing to rerun: no dbt node failed in run {target}")
    selected = _selection(chosen, exclude)
    if not selected:
        return _nothing(window, f"nothing to rerun: exclude leaves out every node that failed in run {target}")
    text = f"rerun of what failed in {target}: {describe(chosen, exclude)}"
    return dataclasses.replace(window, selected=tuple(selected), selection_text=text, state_mode=None)


def _only(window: RunWindow, only: str, select: list[str], exclude: list[str], run: ThisRun) -> RunWindow:
    from include.history.store import warehouse_connection

    connection = warehouse_connection()
    try:
        state = project_state.latest_state(connection, run.dag_id)
        if state is None:
            raise InvalidParams(
                f"only={only} compares with the last green run of {run.dag_id} that built every node, and there "
                f"is none yet: run once with only=all (the scheduled run does), then use only={only}."
            )
        if only == "fresher":
            manifest = project_state.read_manifest()
            grown = project_state.fresher_sources(connection, state, manifest)
    finally:
        connection.close()

    if only == "changed":
        with tempfile.TemporaryDirectory(prefix="greenery-state-") as scratch:
            state_dir = project_state.write_state_dir(state, Path(scratch))
            chosen = _selection(["state:modified+"], exclude, state_dir=state_dir)
        what = f"changed since run {state.run_id}"
        empty = f"nothing changed since run {state.run_id}: no model, snapshot or test to build"
    else:
        sources = rerun.criteria(manifest, grown)  # source:greenery.orders+ for each
        chosen = _selection(sources, exclude) if sources else []
        what = "downstream of " + ", ".join(source.removeprefix("source:").removesuffix("+") for source in sources)
        empty = f"no raw table received rows since run {state.run_id}: nothing to build"
    if select:
        chosen = sorted(set(chosen) & set(_selection(select, [])))
        what += f", within {describe(select, [])}"
    if not any(uid.split(".")[0] in ("model", "snapshot") for uid in chosen):
        if chosen:  # a test's task runs with its model: tests alone have no task of their own to run
            empty = (
                f"only data tests changed since run {state.run_id} ({len(chosen)}): they run with their models, "
                "so select those models to run them"
            )
        return _nothing(window, empty)
    # A green run that built everything that changed leaves a state as good as a full run's.
    mode = "changed" if only == "changed" and not select and not exclude else None
    return dataclasses.replace(window, selected=tuple(chosen), selection_text=f"only={only}: {what}", state_mode=mode)


def plan(window: RunWindow, params: Mapping[str, Any], run: ThisRun) -> RunWindow:
    """``window`` with the nodes this run builds. Raises :class:`InvalidParams` with one sentence for the user."""
    only = params.get("only") or "all"
    if only not in ONLY:
        raise InvalidParams(f"only {only!r} is not one of {', '.join(ONLY)}.")
    asked = str(params.get("rerun_failed_of") or "").strip()
    if asked:
        select, exclude = _criteria(params)
        if select:
            raise InvalidParams(
                "rerun_failed_of picks the nodes itself (what failed and its downstream): leave select empty; "
                "exclude can still leave nodes out."
            )
        if only != "all":
            raise InvalidParams(f"rerun_failed_of reruns what failed; only={only} cannot narrow it: leave only at all.")
        return _rerun(window, params, asked, exclude, run)
    if only != "all":
        select, exclude = _criteria(params)
        return _only(window, only, select, exclude, run)
    return with_selection(window, params)
