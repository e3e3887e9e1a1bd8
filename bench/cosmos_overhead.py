"""Section 2: the daily DAG run by Airflow's real scheduler and LocalExecutor against the same dbt work in one
shell, in alternating pairs, for every Cosmos execution mode the DAG configuration allows.

Both sides of a pair run on the same warehouse and data, with the same dbt threads and the same dbt vars: one
day's window, as a manual run of the DAG for that day sends them. Each pair processes another day, as
consecutive daily runs do (so neither side profits from dbt's partial-parse file of the pair before). The DAG
run's wall time is the metadata DB's ``dag_run.end_date - queued_at`` (the scheduler's pick-up latency
included, the CLI's start-up not); bare dbt's is its commands back to back, each a fresh ``dbt`` process as a
shell would run it.

The smoke size measures ``greenery_hourly_snapshot`` (four tasks) against ``dbt build --select
resource_type:snapshot`` instead: the same code, a run short enough for CI.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import profiles
from bench.measure import BenchError, MemorySampler, log, ratio, summary, wait_for
from bench.sizes import Size, cosmos_mode
from bench.stack import Stack
from bench.task_logs import log_tail, parse_dbt_output, read_task_log, read_trigger_log
from include.local_platform.supervision import session_of

DAILY_DAG = "greenery_daily"
HOURLY_DAG = "greenery_hourly_snapshot"
TERMINAL = ("success", "failed")
SOURCE_SELECTOR = "source:greenery"
# A dbt task's phases, in the order the summary lists their medians.
PHASES = ("queued_seconds", "dag_file_parse_seconds", "to_dbt_start_seconds", "dbt_parse_seconds")
PHASES += ("dbt_run_seconds", "after_dbt_seconds")


@dataclass(frozen=True)
class Workload:
    """One DAG and the bare dbt commands that do the same work, for one day's window."""

    dag_id: str
    conf: dict[str, str] | None
    dbt_vars: dict[str, str]
    bare_commands: tuple[tuple[str, ...], ...]


def day_window(day: dt.date) -> tuple[dict[str, str], dict[str, str]]:
    """(DAG trigger conf, dbt vars) for one day: the DAG turns the conf into exactly these vars."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    conf = {"start_date": day.isoformat(), "end_date": day.isoformat()}
    dbt_vars = {"start_date": start.isoformat(), "end_date": (start + dt.timedelta(days=1)).isoformat()}
    return conf, dbt_vars


def daily_workload(day: dt.date) -> Workload:
    """greenery_daily against what a BashOperator (or a person in a shell) would run for the same work.

    The DAG runs the snapshots once, then every model with its tests; a plain ``dbt build`` would run the
    snapshots a second time, so it excludes them to do the same work.
    """
    conf, dbt_vars = day_window(day)
    vars_arg = ("--vars", json.dumps(dbt_vars))
    return Workload(
        dag_id=DAILY_DAG,
        conf=conf,
        dbt_vars=dbt_vars,
        bare_commands=(
            ("source", "freshness", "--select", SOURCE_SELECTOR, *vars_arg),
            ("snapshot", *vars_arg),
            ("build", "--exclude", "resource_type:snapshot", *vars_arg),
            ("docs", "generate", *vars_arg),
        ),
    )


def hourly_workload(day: dt.date) -> Workload:
    """greenery_hourly_snapshot (snapshots and their tests) against ``dbt build`` of the snapshots."""
    _, dbt_vars = day_window(day)
    return Workload(
        dag_id=HOURLY_DAG,
        conf=None,
        dbt_vars=dbt_vars,
        bare_commands=(("build", "--select", "resource_type:snapshot"),),
    )


def _shell_form(argv: tuple[str, ...]) -> str:
    """``dbt build --exclude ... --vars <window>`` as the page shows it."""
    shown = ["<window>" if previous == "--vars" else a for previous, a in zip(("", *argv[:-1]), argv, strict=True)]
    return "dbt " + " ".join(shown)


def run_bare_dbt(stack: Stack, workload: Workload) -> dict[str, Any]:
    commands = []
    total = 0.0
    for argv in workload.bare_commands:
        result = stack.dbt(*argv)
        timing = parse_dbt_output(result.stdout.splitlines())
        commands.append(
            {
                "command": _shell_form(argv),
                "exit_code": result.returncode,
                "seconds": round(result.seconds, 3),
                "peak_rss_mb": round(result.peak_rss_mb, 1),
                "dbt_work_seconds": timing.work_seconds,
                "dbt": timing.as_dict(),
            }
        )
        total += result.seconds
        # A stale source makes `dbt source freshness` exit 1; a shell with `;` goes on, and so does the DAG.
        if result.returncode != 0 and argv[0] != "source":
            result.check("bare dbt")
    node_seconds = sum(c["dbt"]["node_seconds"] for c in commands)
    work_seconds = sum(c["dbt_work_seconds"] for c in commands)
    return {
        "seconds": round(total, 3),
        "dbt_node_seconds": round(node_seconds, 3),
        "dbt_work_seconds": round(work_seconds, 3),
        "overhead_seconds": round(total - work_seconds, 3),
        "peak_rss_mb": round(max(c["peak_rss_mb"] for c in commands), 1),
        "ok": all(c["exit_code"] == 0 for c in commands),
        "commands": commands,
    }


# -- Airflow side ----------------------------------------------------------------------------------------------
def platform_processes(stack: Stack) -> list[psutil.Process]:
    """Every process of the benchmark's Airflow (components, executor workers, task processes): they are all in
    the session of the platform's supervisord, whose id is in its pid file."""
    sessions = set()
    for pid_file in stack.airflow_home.glob("*.pid"):
        try:
            sessions.add(int(pid_file.read_text()))
        except (OSError, ValueError):
            continue
    return [process for process in psutil.process_iter() if session_of(process.pid) in sessions]


def classify(process: psutil.Process) -> str:
    """Airflow 3 sets process titles: 'airflow worker -- LocalExecutor: ...' is an executor worker (it supervises
    the task), 'airflow worker -- <task instance id>' the task process it forked."""
    cmdline = " ".join(process.cmdline())
    if cmdline.startswith("airflow worker -- LocalExecutor") or "celery worker" in cmdline:
        return "executor_worker"
    if "redis-server" in cmdline:
        return "broker"
    if "moto.server" in cmdline:
        return "object-store"
    if cmdline.startswith("airflow worker --"):
        return "task"
    for component in ("scheduler", "dag-processor", "triggerer", "api_server", "api-server"):
        if component in cmdline:
            return component.replace("_", "-")
    return "other"


# What only the DAG a Cosmos execution mode renders holds: WATCHER's producer task, or ours.
MODE_MARKERS = {"watcher": "dbt_producer_watcher", "producer": "DbtProducerOperator"}


def _serialized_dag(stack: Stack, dag_id: str) -> dict[str, Any]:
    """The newest serialized form of a DAG the dag-processor stored (compressed or not)."""
    rows = stack.airflow_query(
        "select data, data_compressed from serialized_dag where dag_id = %s order by last_updated desc limit 1",
        (dag_id,),
    )
    if not rows:
        return {}
    data, compressed = rows[0]
    if data is None and compressed is not None:
        data = json.loads(zlib.decompress(bytes(compressed)))
    return data if isinstance(data, dict) else json.loads(data or "{}")


def upstream_tasks(stack: Stack, dag_id: str) -> dict[str, list[str]]:
    """Each task's upstream task ids, from the serialized DAG."""
    upstream: dict[str, list[str]] = {}
    for task in _serialized_dag(stack, dag_id).get("dag", {}).get("tasks", []):
        task = task.get("__var", task)
        upstream.setdefault(task["task_id"], [])
        for downstream in task.get("downstream_task_ids") or []:
            upstream.setdefault(downstream, []).append(task["task_id"])
    return upstream


def _wait_for_serialized_mode(stack: Stack, mode: str, timeout: float = 300) -> None:
    """After a restart in another mode, wait until the dag-processor has stored the DAG as that mode renders it
    (WATCHER and the producer mode add a producer task)."""

    def rendered() -> bool:
        text = json.dumps(_serialized_dag(stack, DAILY_DAG))
        return text != "{}" and all((marker in text) == (cosmos_mode(mode) == m) for m, marker in MODE_MARKERS.items())

    wait_for(
        rendered, timeout, 3, f"the dag-processor did not re-render {DAILY_DAG} in {mode} mode within {timeout:.0f} s"
    )


def run_dag(stack: Stack, workload: Workload, run_id: str, timeout: float = 3600) -> dict[str, Any]:
    """Trigger one run with the CLI, follow it in the metadata DB, and split every task's time from its log."""
    dag_id = workload.dag_id
    trigger = ["dags", "trigger", dag_id, "--run-id", run_id]
    if workload.conf:
        trigger += ["--conf", json.dumps(workload.conf)]
    with MemorySampler(lambda: platform_processes(stack), interval=0.25, classify=classify) as memory:
        stack.airflow(*trigger).check(f"triggering {dag_id}")
        sql = "select state, queued_at, start_date, end_date from dag_run where dag_id = %s and run_id = %s"

        def finished() -> list[tuple]:
            return [row for row in stack.airflow_query(sql, (dag_id, run_id)) if row[0] in TERMINAL]

        rows = wait_for(finished, timeout, 1, f"{dag_id} run {run_id} did not finish within {timeout:.0f} s")
    state, queued_at, started, ended = rows[0]
    tasks = _task_breakdown(stack, dag_id, run_id, queued_at)
    task_peaks = sorted(p.rss_mb for p in memory.peaks.values() if p.name == "task")
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": state,
        "seconds": round((ended - queued_at).total_seconds(), 3),
        "running_seconds": round((ended - started).total_seconds(), 3),
        "tasks": tasks,
        "task_count": len(tasks),
        "node_tasks": sum(1 for t in tasks if is_node_task(t)),
        # Node tasks that went through the executor (queued for a worker): none on a green run in producer mode.
        "node_tasks_on_workers": sorted(t["task_id"] for t in tasks if is_node_task(t) and t.get("on_worker")),
        "critical_path": critical_path(tasks, upstream_tasks(stack, dag_id)),
        "memory": {
            "peak_platform_rss_mb": round(memory.peak_total_mb, 1),
            "peak_by_process_kind_mb": {k: round(v, 1) for k, v in sorted(memory.peak_label_totals_mb.items())},
            "peak_task_process_rss_mb": round(task_peaks[-1], 1) if task_peaks else None,
            "median_task_process_peak_rss_mb": round(statistics.median(task_peaks), 1) if task_peaks else None,
            "samples": memory.samples,
        },
    }


def is_node_task(task: dict[str, Any]) -> bool:
    """A task Cosmos renders for dbt nodes (a model, its tests, a snapshot, the source tests, freshness, docs), not
    ``validate_params`` or the producer mode's ``dbt_build``."""
    operator = task.get("operator") or ""
    return operator.startswith("Dbt") and operator not in ("DbtProducerOperator", "DbtProducerWatcherOperator")


def critical_path(tasks: list[dict[str, Any]], upstream: dict[str, list[str]]) -> dict[str, Any]:
    """The chain of tasks that decided when the run ended: from the last task to end, back through the upstream
    task that ended last, to a task with no upstream. Per step, ``wait`` is its upstream's end to its own start
    (the scheduler's pick-up: for a task that starts in the triggerer, its deferral) and ``run`` its start to end
    (for a node task in the triggerer: the triggerer loading the trigger, the trigger, the event written back)."""
    by_id = {t["task_id"]: t for t in tasks if t.get("end_offset") is not None}
    if not by_id:
        return {"steps": []}
    current = max(by_id.values(), key=lambda t: t["end_offset"])
    steps = []
    while current is not None:
        before = [by_id[u] for u in upstream.get(current["task_id"], []) if u in by_id]
        previous = max(before, key=lambda t: t["end_offset"]) if before else None
        steps.append(
            {
                "task_id": current["task_id"],
                "on_worker": bool(current.get("on_worker")),
                "wait_seconds": round(current["start_offset"] - (previous["end_offset"] if previous else 0.0), 3),
                "run_seconds": round(current["end_offset"] - current["start_offset"], 3),
            }
        )
        current = previous
    steps.reverse()
    followers = [s for s in steps if not s["on_worker"]]
    return {
        "steps": steps,
        "tasks": len(steps),
        "tasks_in_triggerer": len(followers),
        "wait_seconds": round(sum(s["wait_seconds"] for s in steps), 3),
        "run_seconds_on_workers": round(sum(s["run_seconds"] for s in steps if s["on_worker"]), 3),
        "run_seconds_in_triggerer": round(sum(s["run_seconds"] for s in followers), 3),
    }


def _task_breakdown(stack: Stack, dag_id: str, run_id: str, run_queued_at: dt.datetime) -> list[dict[str, Any]]:
    rows = stack.airflow_query(
        "select task_id, state, start_date, end_date, try_number, operator, queued_dttm, hostname from task_instance "
        "where dag_id = %s and run_id = %s order by start_date nulls last",
        (dag_id, run_id),
    )
    # LocalExecutor's task logs are in AIRFLOW_HOME/logs; a local Celery worker keeps its own folder, as a machine
    # would (include/local_platform/celery_platform.py). The triggerer's are always in AIRFLOW_HOME/logs.
    folders = [stack.airflow_home / "logs", *sorted(stack.airflow_home.glob("workers/*/logs"))]
    tasks = []
    for task_id, state, started, ended, try_number, operator, queued, hostname in rows:
        entry: dict[str, Any] = {"task_id": task_id, "state": state, "operator": operator, "tries": try_number}
        # A task the scheduler queued for the executor; one that started in the triggerer never is.
        entry["on_worker"] = queued is not None
        entry["hostname"] = hostname or None
        attempt = f"attempt={max(try_number, 1)}.log"
        relative = Path(f"dag_id={dag_id}", f"run_id={run_id}", f"task_id={task_id}", attempt)
        log = next((folder / relative for folder in folders if (folder / relative).is_file()), folders[0] / relative)
        if started and ended:
            entry["start_offset"] = round((started - run_queued_at).total_seconds(), 3)
            entry["end_offset"] = round((ended - run_queued_at).total_seconds(), 3)
            entry["seconds"] = round((ended - started).total_seconds(), 3)
            entry["queued_seconds"] = round((started - queued).total_seconds(), 3) if queued else None
            if not entry["on_worker"] and operator and operator.startswith("Dbt"):
                # The triggerer writes its own file beside the attempt's: attempt=N.log.trigger.<triggerer job>.log
                trigger_logs = sorted(log.parent.glob(f"{log.name}.trigger.*.log"))
                entry["trigger_phases"] = read_trigger_log(trigger_logs[-1] if trigger_logs else log, started, ended)
            phases = read_task_log(log, started, ended)
            entry["phases"] = phases.as_dict()
            entry["dbt_node_seconds"] = phases.dbt.node_seconds
            entry["dbt_work_seconds"] = phases.dbt.work_seconds
            entry["overhead_seconds"] = round(entry["seconds"] - phases.dbt.work_seconds, 3)
        if state not in ("success", "skipped", "upstream_failed", None):
            entry["log_tail"] = log_tail(log)
        tasks.append(entry)
    return tasks


def _path_summary(paths: list[dict[str, Any]]) -> dict[str, Any] | None:
    paths = [p for p in paths if p.get("steps")]
    if not paths:
        return None
    keys = ("tasks", "tasks_in_triggerer", "wait_seconds", "run_seconds_on_workers", "run_seconds_in_triggerer")
    return {key: statistics.median(p[key] for p in paths) for key in keys} | {"steps": paths[0]["steps"]}


def _hop_summary(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Node tasks that started and ended in the triggerer: how long each spent there (start to end)."""
    followers = [t for t in tasks if is_node_task(t) and not t.get("on_worker") and t.get("seconds") is not None]
    if not followers:
        return None
    hops: dict[str, Any] = {"count": len(followers), "in_triggerer_seconds": summary(t["seconds"] for t in followers)}
    for phase in ("pickup_seconds", "trigger_seconds", "write_back_seconds"):
        values = [
            t["trigger_phases"][phase] for t in followers if (t.get("trigger_phases") or {}).get(phase) is not None
        ]
        hops[phase] = summary(values) if values else None
    return hops


def _mode_summary(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [p for p in pairs if p["dag"]["state"] == "success" and p["bare"]["ok"]]
    used = ok or pairs
    dag_seconds = [p["dag"]["seconds"] for p in used]
    bare_seconds = [p["bare"]["seconds"] for p in used]
    ratios = [p["ratio"] for p in used]
    tasks = [t for p in used for t in p["dag"]["tasks"]]
    dbt_tasks = [t for t in tasks if t.get("phases") and t["phases"]["dbt_seconds"]]
    other_tasks = [t for t in tasks if t.get("seconds") and not (t.get("phases") or {}).get("dbt_seconds")]
    per_task = [t["overhead_seconds"] for t in dbt_tasks]
    phases = [t["phases"] | {"queued_seconds": t.get("queued_seconds")} for t in dbt_tasks]
    phase_medians = {}
    for name in PHASES:
        values = [p[name] for p in phases if p.get(name) is not None]
        phase_medians[name] = round(statistics.median(values), 3) if values else None
    return {
        "pairs_measured": len(pairs),
        "pairs_used": len(used),
        "all_runs_succeeded": len(ok) == len(pairs),
        "dag_run_seconds": summary(dag_seconds),
        "bare_dbt_seconds": summary(bare_seconds),
        "ratio": summary(ratios),
        "ratio_of_medians": ratio(statistics.median(dag_seconds), statistics.median(bare_seconds)),
        "tasks_per_run": round(sum(p["dag"]["task_count"] for p in used) / len(used), 1),
        "dbt_tasks_per_run": round(len(dbt_tasks) / len(used), 1),
        # Tasks that run no dbt themselves: validate_params and, in WATCHER mode, the sensors that follow the
        # producer's `dbt build` (each still a task process that occupies an executor slot while it runs).
        "other_tasks_per_run": round(len(other_tasks) / len(used), 1),
        "other_task_seconds": summary(t["seconds"] for t in other_tasks) if other_tasks else None,
        "per_task_overhead_seconds": summary(per_task) if per_task else None,
        "per_task_phase_medians_seconds": phase_medians,
        "dbt_full_parse_tasks_per_run": round(
            sum(1 for t in dbt_tasks if t["phases"]["dbt"]["full_parse"]) / len(used), 1
        ),
        "node_tasks_per_run": round(sum(p["dag"]["node_tasks"] for p in used) / len(used), 1),
        "node_tasks_on_workers_per_run": round(
            sum(len(p["dag"]["node_tasks_on_workers"]) for p in used) / len(used), 1
        ),
        "critical_path": _path_summary([p["dag"]["critical_path"] for p in used]),
        "follower_hops": _hop_summary(tasks),
        "peak_task_process_rss_mb": max((p["dag"]["memory"]["peak_task_process_rss_mb"] or 0) for p in used),
        "peak_platform_rss_mb": max(p["dag"]["memory"]["peak_platform_rss_mb"] for p in used),
        "peak_bare_dbt_rss_mb": max(p["bare"]["peak_rss_mb"] for p in used),
    }


def _measure_mode(stack: Stack, mode: str, make_workload, pairs_count: int, yesterday: dt.date, what: str = "") -> dict:
    """``pairs_count`` alternating (bare dbt, DAG run) pairs with Airflow in ``mode`` (restarted only if it runs in
    another mode), each pair another day up to ``yesterday``."""
    up_seconds = 0.0
    if stack.airflow_mode != mode:
        up = stack.airflow_up(mode)
        up_seconds = up.seconds
        log(f"cosmos_overhead: Airflow up in {mode.upper()} mode ({up.seconds:.0f} s)")
        _wait_for_serialized_mode(stack, mode)
    stack.wait_until_idle(timeout=600)  # no scheduled runs (use_job_schedule off): only one left by a restart
    tag = uuid.uuid4().hex[:6]
    label = f"{mode.upper()}{f' {what}' if what else ''}"
    pairs = []
    for i in range(pairs_count):
        workload = make_workload(yesterday - dt.timedelta(days=pairs_count - 1 - i))
        run_id = f"bench_{mode}{f'_{what}' if what else ''}_{i}_{tag}"
        # Alternate which side goes first, so a slow drift of the machine does not favour one side.
        if i % 2 == 0:
            bare = run_bare_dbt(stack, workload)
            dag = run_dag(stack, workload, run_id)
        else:
            dag = run_dag(stack, workload, run_id)
            bare = run_bare_dbt(stack, workload)
        pairs.append(
            {"window": workload.dbt_vars, "bare": bare, "dag": dag, "ratio": ratio(dag["seconds"], bare["seconds"])}
        )
        log(
            f"cosmos_overhead: {label} pair {i + 1}/{pairs_count}: DAG run {dag['seconds']:.0f} s "
            f"({dag['state']}), bare dbt {bare['seconds']:.0f} s"
        )
    return {"airflow_up_seconds": round(up_seconds, 1), "summary": _mode_summary(pairs), "pairs": pairs}


def run(stack: Stack, size: Size, load_args: list[str]) -> dict[str, Any]:
    load = stack.greenery_data("load", "--scale", str(size.overhead_scale), *load_args).check("loading data")
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    make_workload = hourly_workload if size.overhead_dag == HOURLY_DAG else daily_workload
    # The first build of the empty warehouse (incremental models start in full), so every measured run is a
    # daily one; it processes the day before the first measured pair.
    first = run_bare_dbt(stack, make_workload(yesterday - dt.timedelta(days=size.overhead_pairs)))
    modes: dict[str, Any] = {}
    log(f"cosmos_overhead: first build took {first['seconds']:.0f} s")
    for mode in size.overhead_modes:
        modes[mode] = _measure_mode(stack, mode, make_workload, size.overhead_pairs, yesterday)
    profile = None
    if size.profile:
        try:
            profiled = hourly_workload(yesterday)
            profile = profiles.profile_task_run(
                stack, lambda: run_dag(stack, profiled, f"bench_profile_{uuid.uuid4().hex[:6]}"), stack.base
            )
        except BenchError as error:
            profile = {"error": str(error)}
    hourly: dict[str, Any] = {}
    if size.overhead_hourly_modes and size.overhead_dag != HOURLY_DAG:
        hourly_modes = {
            mode: _measure_mode(stack, mode, hourly_workload, size.overhead_pairs, yesterday, "hourly")
            for mode in size.overhead_hourly_modes
        }
        hourly = {
            "dag_id": HOURLY_DAG,
            "bare_commands": [_shell_form(argv) for argv in hourly_workload(yesterday).bare_commands],
            "modes": hourly_modes,
        }
    fastest = min(modes, key=lambda m: modes[m]["summary"]["dag_run_seconds"]["median"])
    workload = make_workload(yesterday)
    return {
        "dag_id": workload.dag_id,
        "bare_commands": [_shell_form(argv) for argv in workload.bare_commands],
        "scale": size.overhead_scale,
        "dbt_threads": size.dbt_threads,
        "scheduler": (
            "real: airflow scheduler + LocalExecutor (parallelism 4; make up's preloading one unless the mode is "
            "local-stock) + dag-processor + api-server, as make up"
        ),
        "load_seconds": round(load.seconds, 2),
        "first_build": {"seconds": first["seconds"], "ok": first["ok"]},
        "modes": modes,
        "fastest_mode": fastest,
        "profile": profile,
        **({"hourly": hourly} if hourly else {}),
    }
