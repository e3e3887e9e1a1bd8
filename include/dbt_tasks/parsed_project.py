"""dbt's parse of the project, once per machine and version of the project, not once per task or per run.

Every dbt command first loads the project (reads and renders every model, test and YAML file). dbt keeps what it
parsed in ``target/partial_parse.msgpack`` and reuses it when nothing changed, but it parses everything again
when the command's ``--vars`` differ from the ones it parsed with, and the daily run's window (``start_date``,
``end_date``) differs from run to run: each of its dbt tasks would parse the whole project.

So the greenery dbt tasks load the project *without* the run's vars, from one partial-parse file kept on the
machine (in Cosmos' cache directory), and then run their command with the vars on that manifest
(``dbtRunner(manifest=...)``). Nothing the project parses depends on the window (it is read when a model is
compiled, by ``incremental_window``), so the manifest is the same for every run; dbt itself still checks the kept
file against the project's files, profile and version, and re-parses what changed. A retry or a clear of one
node task, ``dbt_build``, ``validate_params``' selection and every LOCAL-mode task reuse that parse instead of
parsing the project again (bench/RESULTS.md).

Each machine keeps its own file and fills it on its first dbt command: nothing is shared between workers
(docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from include.dbt_tasks.cosmos_config import DBT_PROFILE_NAME, DBT_TARGET_NAME

log = logging.getLogger(__name__)

PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# How a task log says where dbt starts and that it parsed the whole project (bench/task_logs.py reads both).
STARTING_DBT = "Starting dbt "
LOADED = "dbt project loaded"
LOADED_IN_FULL = f"{LOADED} (parsed in full"
CACHE_NAME = "greenery__parsed_project"
# dbt's events that say how it loaded the project, the one that decides first (dbt announces partial parsing
# before it finds that nothing changed, or that a change forces a full parse).
_REUSED = "PartialParsingSkipParsing"
_HOW = {
    "UnableToPartialParse": "parsed in full: {reason}",
    _REUSED: "nothing had changed since its last parse on this machine",
    "PartialParsingEnabled": "re-parsed the files that changed",
}
# The Cosmos operators whose dbt command this module runs (the watcher's operators add callbacks at run time).
_LOCAL_OPERATORS_MODULE = "cosmos.operators.local"


def cache_file(target: str) -> Path | None:
    """Where this machine keeps the project's partial-parse file for the profile's ``target``; None when Cosmos'
    cache is switched off."""
    from cosmos import settings as cosmos_settings

    if not cosmos_settings.enable_cache:
        return None
    return Path(cosmos_settings.cache_dir) / CACHE_NAME / target / PARTIAL_PARSE_FILE


def _parse_args(project_dir: Path, profiles_dir: Path, target_path: Path, target: str) -> list[str]:

    # Profile and target are always named: dbt's check of the kept file compares them as given on the command line.
    # dbt stays silent (the task logs one line about the parse, and the command that follows has dbt's banner).
    return [
        "--log-level",
        "none",
        "--log-level-file",
        "none",
        "parse",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(profiles_dir),
        "--profile",
        DBT_PROFILE_NAME,
        "--target",
        target,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path),
        "--no-write-json",
    ]


def _keep(parsed: Path, kept: Path) -> None:
    """Replace the machine's file in one rename, so that a task starting meanwhile never reads half a file."""
    kept.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=kept.parent, prefix=f".{PARTIAL_PARSE_FILE}.")
    os.close(handle)
    try:
        shutil.copyfile(parsed, scratch)
        os.replace(scratch, kept)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def load(project_dir: Path, profiles_dir: Path, target_path: Path | None = None, target: str | None = None) -> Any:
    """The project's dbt manifest (``dbt.contracts.graph.manifest.Manifest``), parsed without vars, starting
    from the machine's partial-parse file, which it then updates when dbt parsed anything. ``target_path``
    (default: the project's ``target/``) must be writable; ``target`` is the profile's target (default: the one
    Cosmos builds from the Airflow connection). The environment must hold what the profile reads. Raises
    ``RuntimeError`` with dbt's message when the project does not parse."""
    from dbt.cli.main import dbtRunner

    target = target or DBT_TARGET_NAME
    target_dir = Path(target_path) if target_path is not None else Path(project_dir) / "target"
    target_dir.mkdir(parents=True, exist_ok=True)
    kept = cache_file(target)
    local = target_dir / PARTIAL_PARSE_FILE
    if kept is not None and kept.is_file():
        shutil.copyfile(kept, local)
    seen: dict[str, str] = {}

    def on_event(event: Any) -> None:
        if event.info.name in _HOW and event.info.name not in seen:
            seen[event.info.name] = getattr(event.data, "reason", "")

    args = _parse_args(Path(project_dir), Path(profiles_dir), target_dir, target)
    result = dbtRunner(callbacks=[on_event]).invoke(args)
    if not result.success:
        detail = " ".join(str(result.exception or "dbt parse failed").split())
        raise RuntimeError(f"dbt could not load the project: {detail}")
    event = next((name for name in _HOW if name in seen), None)
    how = _HOW[event].format(reason=seen[event].rstrip(".")) if event else "parsed in full"
    log.info("%s (%s).", LOADED, how)
    if kept is not None and local.is_file() and event != _REUSED:
        _keep(local, kept)
    return result.result


def _flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def run_dbt_runner(task: Any, command: list[str], env: dict[str, str], cwd: str, **_: Any) -> Any:
    """A Cosmos local operator's ``run_dbt_runner``: ``command`` (``[dbt, <command>, <flags>...]``, as Cosmos
    builds it) on the project loaded by ``load``, instead of dbt parsing it again for the command's vars."""
    from cosmos.dbt.project import environ
    from dbt.adapters.factory import reset_adapters
    from dbt.cli.main import dbtRunner

    args = list(command[1:])
    project_dir = Path(_flag(args, "--project-dir") or cwd)
    profiles_dir = Path(_flag(args, "--profiles-dir") or project_dir)
    log.info("%s%s", STARTING_DBT, " ".join(args))
    # The command's environment and directory for this call only, as Cosmos' own runner sets them.
    with contextlib.chdir(cwd), environ(env):
        try:
            manifest = load(project_dir, profiles_dir)
            return dbtRunner(manifest=manifest, callbacks=task._dbt_runner_callbacks).invoke(args)
        finally:
            # dbt keeps its adapters (and their semaphores) between invocations in one process; Cosmos resets them.
            reset_adapters()


def share_parse(tasks: Iterable[Any]) -> None:
    """Make each Cosmos local dbt task of ``tasks`` load the project through ``load``. The runner is bound to the
    task the DAG file made, not to the copy Airflow runs: Cosmos sets a local operator's dbt callbacks when it
    creates it, so both hold the same ones."""
    from cosmos.constants import InvocationMode

    for task in tasks:
        if type(task).__module__ != _LOCAL_OPERATORS_MODULE:
            continue
        if getattr(task, "invocation_mode", None) not in (None, InvocationMode.DBT_RUNNER):
            continue
        runner: Callable[..., Any] = functools.partial(run_dbt_runner, task)
        task.run_dbt_runner = runner
