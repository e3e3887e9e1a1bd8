"""Sampling profiles (py-spy) of the two costs a goal can miss on: parsing the daily DAG file, and what one
Cosmos task does around its dbt node. Taken outside the measured runs (py-spy's sampling costs CPU), and
summarised as shares of the CPU samples per phase, each split into "importing modules" and the rest.

The task profile follows a run of ``greenery_hourly_snapshot``: its tasks are the same Cosmos LOCAL tasks (task
process, DAG-file parse, project copy, in-process dbt runner) as the daily DAG's, and the run takes seconds.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.measure import BenchError, run_timed
from bench.stack import VENV_BIN, Stack

# (phase, pattern over "function (file:line)" frames); the first phase found walking from the root wins.
TASK_PHASES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("dbt: loading the project (parse)", re.compile(r"dbt/parser/|ManifestLoader|dbt/contracts/graph/manifest")),
    ("dbt: running the nodes", re.compile(r"dbt/task/runnable|dbt/task/base\.py")),
    ("dbt: other (start-up, profile, artifacts)", re.compile(r"/dbt/")),
    ("Airflow: parsing the DAG file", re.compile(r"dagbag\.py|_load_modules_from_file|DagBag")),
    ("Cosmos: task set-up (project copy, profile, callbacks)", re.compile(r"/cosmos/")),
    ("Airflow: task runner and supervisor", re.compile(r"airflow/sdk/execution_time|task_runner|supervisor")),
)
PARSE_PHASES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Airflow: serialising the DAG", re.compile(r"DagSerialization|serialized_objects")),
    ("Cosmos: reading the manifest and rendering tasks", re.compile(r"/cosmos/")),
    ("Airflow: creating the DAG and its tasks", re.compile(r"/airflow/")),
)
# An `import` statement at work (DagBag runs the DAG file itself through importlib too, without this frame).
IMPORTING = re.compile(r"^_find_and_load \(<frozen importlib\._bootstrap>")
MODULE_FRAME = re.compile(r"^<module> \((.*):\d+\)$")
PROCESS = re.compile(r'^process (\d+):"(.*?)";')
TASK_PROCESS = "task processes"
WORKER = "executor workers (task supervisors)"
KIND_RANK = ("other", WORKER, TASK_PROCESS, "scheduler")  # a process seen running both is the later kind


def _imported_package(frames: list[str]) -> str:
    """The outermost third-party package being imported in this stack (the one a DAG file asked for), else the
    project's own modules, else the standard library."""
    paths = [m.group(1) for m in map(MODULE_FRAME.match, frames) if m]
    for path in paths:
        if "site-packages/" in path:
            return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if any("/include/" in path for path in paths):
        return "the project's include"
    return "standard-library"


def classify(frames: list[str], phases: tuple[tuple[str, re.Pattern[str]], ...]) -> str:
    """Imports are named for the package being imported (what a user could avoid or defer); everything else by
    its phase."""
    first_import = next((i for i, frame in enumerate(frames) if IMPORTING.search(frame)), None)
    if first_import is not None:
        return f"importing {_imported_package(frames[first_import:])} modules"
    for phase, pattern in phases:
        if any(pattern.search(frame) for frame in frames):
            return phase
    return "other"


def _read_raw(raw_file: Path) -> list[tuple[int | None, list[str], int]]:
    """(pid, frames root first, sample count) of each line of py-spy's raw output."""
    stacks = []
    for line in raw_file.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        # With --subprocesses each stack starts with the process's ancestry: `process <pid>:"<cmdline>";` for
        # every parent down to the sampled process itself.
        pid = None
        while process := PROCESS.match(stack):
            pid = int(process.group(1))
            stack = stack[process.end() :]
        stacks.append((pid, stack.split(";"), int(count_text)))
    return stacks


def _process_kinds(stacks: list[tuple[int | None, list[str], int]], root_pid: int | None) -> dict[int | None, str]:
    """What each sampled process was. py-spy names a forked process by the command line it inherited, so tell
    them apart by their code: a task process runs Airflow's task runner, an executor worker supervises it."""
    kinds: dict[int | None, str] = {root_pid: "scheduler"}
    for pid, frames, _ in stacks:
        code = ";".join(frames)
        if "execution_time/task_runner.py" in code:
            kind = TASK_PROCESS
        elif "execution_time/supervisor.py" in code or "local_executor.py" in code:
            kind = WORKER
        else:
            kind = "other"
        kinds[pid] = max(kinds.get(pid, "other"), kind, key=KIND_RANK.index)
    return kinds


def summarise(
    raw_file: Path,
    phases: tuple[tuple[str, re.Pattern[str]], ...],
    root_pid: int | None = None,
    only_kind: str | None = None,
    frame_filter: str | None = None,
    top: int = 8,
) -> dict[str, Any]:
    """Shares of py-spy's raw (collapsed) samples by phase, over the stacks that pass through ``frame_filter``
    of the processes of ``only_kind``; with ``--subprocesses`` samples (``root_pid`` given), also each kind of
    process's share of all samples."""
    stacks = _read_raw(raw_file)
    kinds = _process_kinds(stacks, root_pid) if root_pid else {}
    buckets: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    total = 0
    for pid, frames, count in stacks:
        kind = kinds.get(pid, "other")
        by_kind[kind] += count
        if only_kind and kind != only_kind:
            continue
        if frame_filter:
            marks = [i for i, frame in enumerate(frames) if frame_filter in frame]
            if not marks:
                continue
            frames = frames[marks[0] + 1 :]
        buckets[classify(frames, phases)] += count
        total += count
    if not total:
        raise BenchError(f"py-spy recorded no samples of the profiled code in {raw_file}")
    rows = [{"what": what, "share": round(count / total, 3)} for what, count in buckets.most_common(top)]
    all_samples = sum(by_kind.values())
    by_process = [{"what": k, "share": round(c / all_samples, 3)} for k, c in by_kind.most_common()] if kinds else []
    return {"samples": total, "top": rows, "by_process": by_process}


def _py_spy(rate: int, raw: Path, *args: str) -> list[str]:
    """``py-spy record`` writing raw (collapsed) stacks with full file names to ``raw``."""
    found = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    if not Path(found).exists():
        raise BenchError("py-spy is not installed: `pip install -r requirements-dev.txt`")
    options = ["--rate", str(rate), "--format", "raw", "--full-filenames", "--nonblocking", "-o", str(raw)]
    return [found, "record", *args, *options]


def profile_parse(dag_file: Path, env: dict[str, str], out: Path, runs: int = 3) -> dict[str, Any]:
    """py-spy over ``runs`` cold parses of ``dag_file`` (bench.parse_probe, as the parse-time section runs it, each
    in a fresh process); only the samples inside the parse and serialisation count."""
    raw = out / f"profile-parse-{dag_file.stem}.txt"
    seconds = 0.0
    with raw.open("w") as combined:
        for run in range(runs):
            part = out / f"profile-parse-{dag_file.stem}-{run}.txt"
            argv = [*_py_spy(400, part), "--", sys.executable, "-m", "bench.parse_probe", str(dag_file)]
            result = run_timed(argv, env=env, cwd=Path(__file__).resolve().parent.parent, timeout=600)
            result.check("py-spy over the DAG-file parse")
            seconds += result.seconds
            combined.write(part.read_text())
    return {
        "title": f"{runs} cold parses of {dag_file.name} (DagBag and serialisation, Airflow already imported)",
        "tool": "py-spy record --rate 400",
        "seconds": round(seconds, 1),
        **summarise(raw, PARSE_PHASES, frame_filter="parse_once ("),
    }


def profile_task_run(stack: Stack, trigger: Any, out: Path) -> dict[str, Any]:
    """py-spy over the scheduler and every process it forks while ``trigger()`` runs one DAG run to its end. The
    phases are of the task processes (``airflow worker -- <task id>``) only, in CPU time (a task waiting on
    PostgreSQL is not sampled): on a machine with fewer cores than parallel tasks, CPU is what they queue for."""
    scheduler_pid = stack.component_pid("scheduler")
    raw = out / "profile-task-run.txt"
    argv = [*_py_spy(100, raw, "--subprocesses"), "--pid", str(scheduler_pid)]
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.perf_counter()
    try:
        time.sleep(1)  # let py-spy attach before the first task forks
        run = trigger()
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        try:
            spy.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.communicate()
    if not raw.is_file():
        raise BenchError("py-spy wrote no profile (it needs ptrace: run as root or allow SYS_PTRACE)")
    return {
        "title": f"the task processes of one {run['dag_id']} run ({run['task_count']} Cosmos tasks), CPU time",
        "tool": "py-spy record --subprocesses --rate 100, attached to the scheduler",
        "seconds": round(time.perf_counter() - started, 1),
        **summarise(raw, TASK_PHASES, root_pid=scheduler_pid, only_kind=TASK_PROCESS),
    }
