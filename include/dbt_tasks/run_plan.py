"""Which dbt nodes one run of ``greenery_daily`` builds: the trigger form's ``select`` / ``exclude``
(``include.dbt_tasks.selection``), ``rerun_failed_of`` (``include.dbt_tasks.rerun``) and ``only``
(``include.dbt_tasks.project_state``), worked out by ``validate_params`` (``validate_params_task``, the DAG's first
task, which also checks the form: ``include.dbt_tasks.params``) before any dbt command runs.

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

import psycopg2
from airflow.sdk import BaseHook, task
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from include import settings
from include.dbt_tasks import project_state, rerun
from include.dbt_tasks.params import PARAMS, InvalidParams, RunWindow, resolve_window, with_selection
from include.dbt_tasks.selection import InvalidSelection, criteria, describe, resolve, task_nodes
from include.dbt_tasks.steps import dbt_queue
from include.dbt_tasks.task_ids import VALIDATE_TASK_ID
from include.history.store import warehouse_connection
from include.settings import ConfigurationError

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


def validate_params_task() -> Any:
    """The first task of ``greenery_daily``: fails the run with one clear sentence before any dbt command runs,
    and hands the window to the dbt tasks (XCom)."""

    # A wrong parameter does not become right on a second try. On the dbt queue: a selection runs `dbt ls`.
    @task(task_id=VALIDATE_TASK_ID, retries=0, queue=dbt_queue())
    def validate_params(**context: Any) -> dict[str, Any]:
        dag_run = context["dag_run"]
        try:
            window = resolve_window(
                dag_run.conf,
                context["params"],
                context.get("data_interval_start"),
                context.get("data_interval_end"),
                run_after=getattr(dag_run, "run_after", None),
            )
        except InvalidParams as error:
            raise AirflowFailException(f"Invalid trigger parameters: {error}") from None
        except ConfigurationError as error:
            raise AirflowFailException(f"Configuration error: {error}") from None
        try:
            BaseHook.get_connection(settings.WAREHOUSE_CONN_ID)
        except AirflowNotFoundException:
            raise AirflowFailException(
                f"The Airflow connection {settings.WAREHOUSE_CONN_ID!r} is not defined: add it under Admin > "
                f"Connections or set AIRFLOW_CONN_{settings.WAREHOUSE_CONN_ID.upper()}."
            ) from None
        try:
            this_run = ThisRun(dag_run.dag_id, dag_run.run_id, context["ti"], context.get("dag"))
            window = plan(window, context["params"], this_run)
        except InvalidParams as error:
            raise AirflowFailException(f"Invalid trigger parameters: {error}") from None
        except psycopg2.OperationalError as error:
            # rerun_failed_of and only read the run history in the warehouse; a second try may reach it.
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RuntimeError(
                f"rerun_failed_of and only read the earlier runs from the warehouse, which did not answer "
                f"({first_line}): check that it runs, then clear this task."
            ) from None
        if window.selected == ():
            log.info("Nothing to build: %s. Every dbt task of this run ends skipped.", window.selection_text)
        else:
            log.info("dbt will process %s", window.describe())
        return window.as_xcom()

    return validate_params()
