"""The committed results of a benchmark run: the compact ``summary.json``, RESULTS.md and its charts.

    python -m bench.report [FILE] [--out DIR]    # re-render from bench/results/summary.json, or from a raw run

``python -m bench.run`` keeps its raw dump (every pair, task and sample) where git ignores it and hands it to
:func:`write`, which keeps the figures the page shows. Everything on the page, down to why a goal is missed, is
computed from those figures, so the text cannot disagree with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from include import settings

BENCH_DIR = Path(__file__).resolve().parent
SUMMARY = BENCH_DIR / "results" / "summary.json"
# What each section holds unless it is {"error": ...}, and what each Cosmos mode's summary holds.
REQUIRED = {
    "parse_time": ("render_method", "trivial", "files"),
    "cosmos_overhead": ("dag_id", "bare_commands", "scale", "scheduler", "modes", "fastest_mode"),
    "scaling": ("points",),
    "load_throughput": ("scale", "rows", "seconds", "ratio_to_psql", "rows_per_second"),
    "memory": ("dbt_task_peak_rss_mb", "airflow_run_peak_rss_mb", "bare_dbt_peak_rss_mb"),
}
MODE_REQUIRED = ("dag_run_seconds", "bare_dbt_seconds", "ratio", "per_task_phase_medians_seconds")
MODE_LEGEND = {
    "local": "LOCAL = Cosmos LOCAL (one dbt invocation per task, in the task process) on `make up`'s LocalExecutor, "
    "which imports dbt and Cosmos once in the scheduler (`include/local_platform/preloading_executor.py`)",
    "local-stock": "LOCAL-STOCK = the same on Airflow's stock LocalExecutor, where every task process imports dbt",
    "watcher": "WATCHER = Cosmos WATCHER (one `dbt build` in a producer task, the node tasks follow it) on "
    "`make up`'s LocalExecutor",
    "producer-celery": "PRODUCER-CELERY, LOCAL-CELERY = the same modes on `make up EXECUTOR=celery`: CeleryExecutor "
    "with a Redis broker and two Celery workers (2 task slots each) on this same machine, the dbt docs in the local "
    "S3 store",
    "producer": "PRODUCER = greenery's producer mode (`include/dbt_tasks/producer.py`: one dbt process, the "
    "`dbt_build` task, runs the run's freshness, snapshots, build and docs; every node task waits in the triggerer "
    "from the start of the run and ends there on its node's result, `include/dbt_tasks/producer_mode.py`) on "
    "`make up`'s LocalExecutor",
}
PHASES = {  # a median dbt task's phases: the table's label, the chart's (None: not charted)
    "queued_seconds": (
        "queued → started (waiting for an executor slot or the pool; before the task's wall time)",
        None,
    ),
    "to_dbt_start_seconds": (
        "task start → Cosmos calls dbt (task process, Airflow start-up, DAG-file parse, Cosmos copying the project, "
        "importing dbt)",
        "task start → dbt called",
    ),
    "dag_file_parse_seconds": ("  of which the DAG-file parse (Airflow's own figure)", None),
    "dbt_parse_seconds": ("dbt loading the project (parse)", "dbt parse"),
    "dbt_run_seconds": ("dbt running the node(s), with its connections and artifacts", "dbt run (nodes)"),
    "after_dbt_seconds": ("dbt done → task end (assets, XCom, state)", "after dbt"),
}
LOAD_METHODS = {  # the table's label, the chart's
    "psql_copy": (
        "`psql`: `truncate` + `\\copy` of the exported CSV files (foreign keys in place)",
        "psql \\copy (CSV)",
    ),
    "loader_csv": ("`make load CSV=dir` of the same files", "make load CSV=…"),
    "loader_generate": ("`make load SCALE=n` (generates the rows while loading)", "make load SCALE=…"),
}


# -- the results' shape ---------------------------------------------------------------------------------------
def check(doc: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every key a results document lacks (a failed section only needs its error)."""
    top = ("size", "started_at", "duration_seconds", "machine", "versions", "git", "sections", "goals")
    missing = [key for key in top if key not in doc]
    for name, keys in REQUIRED.items():
        body = doc.get("sections", {}).get(name)
        if not isinstance(body, dict):
            missing.append(f"sections.{name}")
        elif "error" not in body:
            missing += [f"{name}.{key}" for key in keys if body.get(key, []) in ([], {})]
    for mode, data in doc.get("sections", {}).get("cosmos_overhead", {}).get("modes", {}).items():
        missing += [f"cosmos_overhead.modes.{mode}.{k}" for k in MODE_REQUIRED if k not in data.get("summary", data)]
    if missing:
        raise ValueError(f"the benchmark results lack {', '.join(missing)}")


def section_errors(doc: dict[str, Any]) -> dict[str, str]:
    """Sections that failed (sections left out with ``--only`` are not failures)."""
    return {n: b["error"] for n, b in doc["sections"].items() if "error" in b and not b.get("skipped")}


def _run_totals(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page needs from a mode's raw pairs: medians of per-run sums over the successful runs, the days,
    and the tasks that failed."""
    ok = [p for p in pairs if p["dag"]["state"] == "success"] or pairs

    def median(of_run) -> float:
        return round(statistics.median(of_run(p) for p in ok), 3)

    return {
        "dag_dbt_work_seconds": median(lambda p: sum(t.get("dbt_work_seconds") or 0 for t in p["dag"]["tasks"])),
        "bare_dbt_work_seconds": median(lambda p: p["bare"]["dbt_work_seconds"]),
        "task_seconds_per_run": median(lambda p: sum(t.get("seconds") or 0 for t in p["dag"]["tasks"])),
        "days": sorted({p["window"]["start_date"][:10] for p in pairs}),
        "failed_tasks": [
            {"run_id": p["dag"]["run_id"], "task_id": t["task_id"], "reason": (t.get("log_tail") or ["-"])[-1]}
            for p in pairs
            if p["dag"]["state"] != "success"
            for t in p["dag"]["tasks"]
            if t["state"] == "failed"
        ],
    }


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without its raw dumps: statistics keep median, min, max and n, a Cosmos mode its summary and the
    per-run totals the page explains with. Summarising a summary changes nothing."""

    def lean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: lean(v) for k, v in value.items() if not (k == "samples" and isinstance(v, list))}
        return [lean(v) for v in value] if isinstance(value, list) else value

    summary = lean(doc)
    overhead = summary["sections"]["cosmos_overhead"]
    for modes in (overhead.get("modes", {}), overhead.get("hourly", {}).get("modes", {})):
        for mode, body in modes.items():
            if "pairs" in body:
                extra = {"airflow_up_seconds": body.get("airflow_up_seconds"), **_run_totals(body["pairs"])}
                modes[mode] = {**body["summary"], **extra}
    return summary


# -- figures as text ------------------------------------------------------------------------------------------
def _s(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f} s"


def _ms(value: float | None) -> str:
    return _s(value, 3)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} MB"


def _range(stats: dict[str, Any] | None, fmt=_s) -> str:
    if not stats:
        return "–"
    median = fmt(stats["median"])
    return median if stats["n"] == 1 else f"{median} ({fmt(stats['min'])} – {fmt(stats['max'])})"


def _in_unit(value: float, unit: str, target: bool = False) -> str:
    """A goal's figure: a ratio (``x``; a target as written, a measurement to two places), megabytes or a count."""
    if unit == "x":
        return f"{value:g}×" if target else _x(value)
    if unit == "s":
        return f"{value:g} s" if target else _s(value, 2)
    return _mb(value) if unit == "MB" else f"{value:g} {unit}"


def _verdict(goal: dict[str, Any]) -> str:
    if goal["met"] is None:
        return "reported (no numeric goal)"
    if goal["met"]:
        return "**met**"
    if not goal["target"]:
        return f"**missed** ({_in_unit(goal['measured'], goal.get('unit', 'x'))})"
    return f"**missed** by {(goal['measured'] / goal['target'] - 1) * 100:.0f}%"


def _row(*cells: Any) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _table(header: str, rows: list[str]) -> list[str]:
    """A Markdown table from ``"a | b"`` and rows made by :func:`_row`."""
    return [f"| {header} |", "|" + "---|" * (header.count("|") + 1), *rows, ""]


# -- the page -------------------------------------------------------------------------------------------------
def _header(doc: dict[str, Any], out_dir: Path) -> list[str]:
    machine, v, git, size = doc["machine"], doc["versions"], doc["git"], doc["size"]["name"]
    commit = git["commit"][:12] + (" with uncommitted changes" if git["dirty"] else "")
    summary = summary_file(out_dir)
    shown = summary.relative_to(settings.REPO_ROOT) if summary.is_relative_to(settings.REPO_ROOT) else summary
    lines = ["# Benchmark results", ""]
    if size != "full":
        lines += [f"> **This is a `{size}` run** (fewer, smaller measurements): not the figures to quote.", ""]
    lines += [
        f"Measured by `make bench` (`python -m bench.run`, size **{size}**) on {doc['started_at']} in "
        f"{doc['duration_seconds'] / 60:.1f} minutes, at commit `{commit}`.",
        "",
        f"- Machine: {machine['cpu_count']} × {machine['cpu_model']}, {machine['memory_gb']} GB RAM, {machine['os']}, "
        f"Python {machine['python']}; load average when the run started: "
        f"{', '.join(str(x) for x in machine['load_average_at_start'])}.",
        f"- Software: Airflow {v['apache-airflow']}, astronomer-cosmos {v['astronomer-cosmos']}, dbt-core "
        f"{v['dbt-core']} + dbt-postgres {v['dbt-postgres']}, PostgreSQL {v['postgresql']}.",
        f"- Every figure on this page comes from [`{os.path.relpath(summary, out_dir)}`]"
        f"({os.path.relpath(summary, out_dir)}); re-render the page with `python -m bench.report {shown}`.",
        "",
    ]
    if doc.get("notes"):
        lines += ["## Notes on this run", "", *[f"- {note}" for note in doc["notes"]], ""]
    rows = [
        _row(
            g["description"],
            "–" if g["target"] is None else f"≤ {_in_unit(g['target'], g.get('unit', 'x'), target=True)}",
            _in_unit(g["measured"], g.get("unit", "x")),
            _verdict(g),
        )
        for g in doc["goals"].values()
    ]
    return [*lines, "## Summary", "", *_table("Goal | Target | Measured | Verdict", rows)]


def _default_mode(body: dict[str, Any]) -> list[str]:
    if "modes" not in body:
        return []
    default, fastest = settings.COSMOS_EXECUTION_MODE.default, body["fastest_mode"]
    median = {mode: data["dag_run_seconds"]["median"] for mode, data in body["modes"].items()}
    text = f"Median `{body['dag_id']}` run: " + ", ".join(f"{m.upper()} {v:.0f} s" for m, v in median.items()) + "."
    if len(median) == 1:
        text += " Only this mode was measured in this run, so it says nothing about which mode is faster."
    else:
        text += f" **{fastest.upper()} is the faster mode** on this machine"
        if fastest != default and default in median:
            text += f", {(1 - median[fastest] / median[default]) * 100:.0f}% faster than the default {default.upper()}"
            ok = body["modes"][fastest]
            text += f", and all {ok['pairs_measured']} of its runs succeeded" if ok["all_runs_succeeded"] else ""
        text += "."
    lines = ["## Default execution mode", "", text, ""]
    if default == "producer":
        return [
            *lines,
            "PRODUCER is the default (`GREENERY_COSMOS_EXECUTION_MODE`, declared in `include/settings.py`): every dbt "
            "node keeps its own task, log, retry and alert, while dbt runs once per run, in `dbt_build`, and the node "
            "tasks of a green run never take a worker. A failed node's task still fails on a worker with dbt's "
            "message, and its retry or a clear runs that node on its own, as in LOCAL (docs/dags.md). LOCAL and "
            "WATCHER stay selectable; `airflow dags test`, which has no triggerer, runs best in LOCAL.",
            "",
        ]
    if default != "local":
        return lines
    saved = median.get("local", 0) - median.get("watcher", 1e9)
    return [
        *lines,
        "LOCAL stays the default (`GREENERY_COSMOS_EXECUTION_MODE`, declared in `include/settings.py`): one dbt "
        "command per task, so every dbt node keeps its own task, retry, log and alert every time. WATCHER (one "
        "`dbt build` in a producer task, the node tasks follow it as sensors) starts dbt less often, but in an "
        "earlier run on a busy machine it failed `greenery_daily` with Cosmos 1.15.1 (the detached two-model test "
        "tasks ended with `XCom not found ... tests_status` although the producer's `dbt build` had passed them), "
        "its producer task is never retried (Cosmos skips a second try; a failed node is re-run by its sensor), and "
        "it runs the source tests twice (in the producer's build and in their own tasks). A run that fails now and "
        f"then costs more than {f'the {saved:.0f} s a day' if saved > 0 else 'what'} WATCHER saves; "
        "`GREENERY_COSMOS_EXECUTION_MODE=watcher` makes the other trade.",
        "",
    ]


def _parse(body: dict[str, Any]) -> list[str]:
    rows = [
        _row(
            f"`{r['file']}`",
            r.get("execution_mode") or "–",
            ", ".join(f"{d}: {n}" for d, n in r["dags"].items()) or "none",
            _range(r["cold_parse_seconds"], _ms),
            _ms(r["cold_serialize_seconds"]["median"]),
            _range(r["warm_parse_seconds"], _ms),
            _x(r.get("cold_ratio_to_trivial")),
            _x(r.get("warm_ratio_to_trivial")),
        )
        for r in [body["trivial"], *body["files"]]
    ]
    manifest = body["render_method"] == "dbt_manifest"
    header = "DAG file | Mode | Tasks | Cold parse | + serialise | Warm parse | Cold / trivial | Warm / trivial"
    lines = [
        f"DAGs rendered from {'the dbt manifest (`LoadMode.DBT_MANIFEST`)' if manifest else '`dbt ls` (no manifest)'}. "
        "Cold = a fresh Python process with Airflow already imported, as the dag-processor's parser and every "
        "task's start-up parse are; warm = the same file again in the same process.",
        "",
        *_table(header, rows),
    ]
    if any(" | none | " in row for row in rows):
        lines += [
            "A file with no DAG defines its DAG only in some settings (the dev shop simulator needs "
            "`GREENERY_DEV_SIMULATOR=1`, which the benchmark leaves unset, as in production); the dag-processor "
            "still pays for its imports.",
            "",
        ]
    return lines


def _overhead(body: dict[str, Any]) -> list[str]:
    modes = body["modes"]
    same_work = " The DAG runs the snapshots once, in their own step, so the bare `dbt build` excludes them."
    lines = [
        f"`{body['dag_id']}` on generated data at scale {body['scale']:g}, with dbt threads {body['dbt_threads']} on "
        "both sides. Each pair processes one day's window (`start_date`, `end_date` as a manual run for that day "
        f"sends them; days {', '.join(next(iter(modes.values()))['days'])}), each pair another day as consecutive "
        f"daily runs would. Airflow: {body['scheduler']}; each run triggered with `airflow dags trigger` and "
        "followed in the metadata database, not `airflow dags test`. Bare dbt: "
        + "; ".join(f"`{c}`" for c in body["bare_commands"])
        + " — one process each, back to back."
        + (same_work if body["dag_id"] == "greenery_daily" else "")
        + " Pairs alternate which side runs first.",
        "",
        "Modes: " + "; ".join(MODE_LEGEND[m] for m in modes if m in MODE_LEGEND) + ".",
        "",
    ]
    rows = [
        _row(
            mode.upper(),
            _range(s["dag_run_seconds"]),
            _range(s["bare_dbt_seconds"]),
            _range(s["ratio"], _x),
            s["pairs_used"],
            f"{s['tasks_per_run']:g} ({s['dbt_tasks_per_run']:g})",
            _range(s["per_task_overhead_seconds"]),
            "yes" if s["all_runs_succeeded"] else "**no**",
        )
        for mode, s in modes.items()
    ]
    header = (
        "Mode | DAG run | Bare dbt | Ratio (median of pairs) | Pairs | Tasks / run (running dbt) | Per-task overhead"
    )
    lines += _table(header + " | All runs succeeded", rows)
    failed = [
        f"- {m.upper()} run `{t['run_id']}`: `{t['task_id']}` failed: {t['reason']}"
        for m, s in modes.items()
        for t in s["failed_tasks"]
    ]
    lines += [*failed, ""] if failed else []
    if hourly := body.get("hourly"):
        rows = [
            _row(mode.upper(), _range(s["dag_run_seconds"]), _range(s["bare_dbt_seconds"]), _range(s["ratio"], _x))
            for mode, s in hourly["modes"].items()
        ]
        lines += [
            f"`{hourly['dag_id']}` the same way, against bare "
            + "; ".join(f"`{c}`" for c in hourly["bare_commands"])
            + ":",
            "",
            *_table("Mode | DAG run | Bare dbt | Ratio (median of pairs)", rows),
        ]
    lines += _producer_against_dbt(body)
    lines += _celery_against_local(modes)
    # The producer mode's node tasks run no dbt: its run is explained under "What limits the figures".
    modes = {mode: s for mode, s in modes.items() if s.get("dbt_tasks_per_run")}
    if not modes:
        return lines
    medians = [s["per_task_phase_medians_seconds"] for s in modes.values()]
    rows = [_row(label, *(_s(m.get(key), 2) for m in medians)) for key, (label, _) in PHASES.items()]
    rows.append(
        _row(
            "tasks per run where dbt re-parsed the whole project",
            *(f"{s['dbt_full_parse_tasks_per_run']:g}" for s in modes.values()),
        )
    )
    return [
        *lines,
        "Per-task overhead = a dbt task's wall time in the metadata DB (`task_instance.end_date - start_date`) "
        "minus dbt's own run time for it (the run phase dbt reports, `run_results.json`'s `elapsed_time`, read from "
        "the task log). Where a median task that runs dbt spends its time (medians of each phase over all dbt tasks "
        "of the measured runs, so they need not add up):",
        "",
        *_table("Phase | " + " | ".join(m.upper() for m in modes), rows),
    ]


RUN_PHASES = {  # the producer mode's run, step by step: the table's label
    "to_first_task": "run queued → its first task starts (the scheduler)",
    "validate_params": "`validate_params` (the form's check, on a worker)",
    "to_producer_start": "`validate_params` ends → `dbt_build` starts (the scheduler, a worker starting it)",
    "dbt_commands": "`dbt_build`: dbt's commands (the run phases dbt reports)",
    "producer_around_dbt": "`dbt_build`: around them (task start-up, loading the project, history, docs, assets)",
    "tail": "`dbt_build` ends → the run ends (the last node tasks, `fail_run` skipped, the run's state)",
}


def _producer_against_dbt(body: dict[str, Any]) -> list[str]:
    """The producer mode's run against its own dbt: the tail after ``dbt_build``, each node task's lag behind dbt,
    the triggerer's CPU, and the run's time step by step."""
    found = {mode.upper(): s for mode, s in body["modes"].items() if s.get("tail_after_producer_seconds")}
    for mode, s in (body.get("hourly") or {}).get("modes", {}).items():
        if s.get("tail_after_producer_seconds"):
            found[f"{mode.upper()} ({body['hourly']['dag_id']})"] = s
    if not found:
        return []

    def lag(s: dict[str, Any], key: str) -> str:
        return _s((s.get("node_task_lag_seconds") or {}).get(key), 2)

    rows = [
        _row(
            name,
            _range(s["tail_after_producer_seconds"], lambda v: _s(v, 2)),
            lag(s, "median"),
            lag(s, "max"),
            _range(s.get("triggerer_cpu_seconds"), lambda v: _s(v, 1)),
        )
        for name, s in found.items()
    ]
    phases = {name: s.get("run_phases_seconds") or {} for name, s in found.items()}
    phase_rows = [_row(label, *(_s(p.get(key), 2) for p in phases.values())) for key, label in RUN_PHASES.items()]
    return [
        "The producer mode against its own dbt: how long each run went on after `dbt_build` ended, and each node "
        "task's lag, from dbt finishing the task's last node (the time `dbt_build` publishes with the result) to "
        "the task's end in the metadata DB (per run its median and its slowest task; medians and the worst over "
        "the runs), with the triggerer's CPU time per run (its supervisor and the runner with every trigger):",
        "",
        *_table("Mode | Run end after `dbt_build` | Node task lag: median | slowest | Triggerer CPU per run", rows),
        "Where a run's time goes, step by step (medians over the runs):",
        "",
        *_table("Step | " + " | ".join(phases), phase_rows),
    ]


def _longest_chain(s: dict[str, Any]) -> dict[str, Any]:
    """The waits and the time on workers of the chain of tasks that decided a run's end. In the producer mode the
    node tasks follow dbt live, from the start of the run, so that chain is ``validate_params`` → ``dbt_build`` →
    the run's end (its step by step phases), not the lineage of the node tasks."""
    phases = s.get("run_phases_seconds")
    if not phases:
        return s.get("critical_path") or {}
    return {
        "wait_seconds": phases["to_first_task"] + phases["to_producer_start"] + phases["tail"],
        "run_seconds_on_workers": phases["validate_params"] + phases["dbt_commands"] + phases["producer_around_dbt"],
    }


def _celery_against_local(modes: dict[str, Any]) -> list[str]:
    """Each ``-celery`` mode beside its LocalExecutor twin: the ratio, and where the difference goes."""
    rows = []
    for mode, celery in modes.items():
        twin = mode.removesuffix("-celery")
        if not mode.endswith("-celery") or twin not in modes:
            continue
        local = modes[twin]
        paths = [_longest_chain(local), _longest_chain(celery)]
        queued = [s["per_task_phase_medians_seconds"].get("queued_seconds") for s in (local, celery)]
        to_dbt = [s["per_task_phase_medians_seconds"].get("to_dbt_start_seconds") for s in (local, celery)]
        rows.append(
            _row(
                twin.upper(),
                _s(local["dag_run_seconds"]["median"]),
                _s(celery["dag_run_seconds"]["median"]),
                _x(celery["dag_run_seconds"]["median"] / local["dag_run_seconds"]["median"]),
                " → ".join(_s(p.get("wait_seconds")) for p in paths),
                " → ".join(_s(p.get("run_seconds_on_workers")) for p in paths),
                " → ".join(_s(v, 2) for v in queued),
                " → ".join(_s(v, 2) for v in to_dbt),
            )
        )
    if not rows:
        return []
    header = (
        "Mode | LocalExecutor run | CeleryExecutor run | Celery / Local | Longest chain: waits between its tasks "
        "(Local → Celery) | Longest chain: its tasks' time on workers | Median dbt task: queued → started | "
        "Median dbt task: start → dbt called"
    )
    return [
        "The same runs on CeleryExecutor (two workers behind a Redis broker, same machine) against LocalExecutor, "
        "medians. Where the difference goes: the waits between the tasks of the run's longest chain (the scheduler "
        "queueing a task, the broker's latency, a worker taking it) and its tasks' time on workers (the worker "
        "starting the task process, which on Celery imports dbt itself, where LocalExecutor's preloading executor "
        "forks it with dbt loaded); in the producer mode, whose node tasks follow dbt live, that chain is "
        "`validate_params`, `dbt_build` and the run's end after it. Per dbt task (local mode): *queued → started* is "
        "the broker and the worker's pick-up, *start → dbt called* the task process's start-up.",
        "",
        *_table(header, rows),
    ]


def _scaling(body: dict[str, Any]) -> list[str]:
    rows = [
        _row(
            f"{p['scale']:g}",
            f"{p['raw_rows'].get('events', 0):,}",
            _s(p["load"]["seconds"]),
            _s(p["full_build"]["seconds"]),
            _s(p["incremental_daily_build"]["seconds"]),
            _s(p["incremental_daily_build"]["incremental_models_seconds"], 2),
            " / ".join(_x(p["growth_from_first_scale"][k]) for k in ("load", "full_build", "incremental_daily_build")),
        )
        for p in body["points"]
    ]
    header = (
        "Scale | Raw events | Load | Full build | Daily build | Incremental models in it | Growth: load / full / daily"
    )
    return [
        "Per scale, on an emptied warehouse: `make load` of the history up to yesterday, the first full "
        f"`dbt build`, one more day of data ({body['points'][0]['new_day']['method']}), then the daily `dbt build` "
        "for that day's window (views and table marts rebuilt, incremental models merge one day). Growth is "
        "relative to the first scale.",
        "",
        *_table(header, rows),
    ]


def _load(body: dict[str, Any]) -> list[str]:
    ratio = {"psql_copy": 1.0, **body["ratio_to_psql"]}
    rows = [
        _row(
            label,
            _range(body["seconds"][k]),
            f"{body['rows_per_second'][k]:,}",
            _x(ratio[k]),
            _mb(body["peak_rss_mb"][k]),
        )
        for k, (label, _) in LOAD_METHODS.items()
    ]
    return [
        f"Scale {body['scale']:g}: {body['rows']:,} rows ({body['csv_megabytes']} MB of CSV). Each method replaces "
        "the raw tables' contents in one transaction; medians of alternating rounds.",
        "",
        *_table("Method | Time | Rows / s | Ratio to psql | Peak RSS", rows),
    ]


def _memory(body: dict[str, Any]) -> list[str]:
    rows = [_row(f"one dbt task process ({m.upper()} mode)", _mb(v)) for m, v in body["dbt_task_peak_rss_mb"].items()]
    rows += [
        _row(f"whole Airflow platform during a DAG run ({m.upper()} mode)", _mb(v))
        for m, v in body["airflow_run_peak_rss_mb"].items()
    ]
    rows.append(_row("one bare `dbt` command (largest of the four)", _mb(body["bare_dbt_peak_rss_mb"])))
    rows += [
        _row(
            f"scale {p['scale']:g}: loader / full dbt build / daily dbt build",
            " / ".join(_mb(p[k]) for k in ("loader", "dbt_full_build", "dbt_daily_build")),
        )
        for p in body.get("by_scale_peak_rss_mb", [])
    ]
    lines = [*_table("What | Peak RSS", rows), body.get("note", ""), ""]
    by_kind = body.get("airflow_run_peak_by_process_kind_mb") or {}
    if by_kind:
        kinds = sorted({kind for peaks in by_kind.values() for kind in peaks})
        lines += [
            "Where the platform's peak is, by kind of process (each kind's own peak during the run with the highest "
            "total, so they add up to a little more than it; executor workers are the executor's forked workers, "
            "task the task processes they start, other every process of the platform not named here):",
            "",
            *_table(
                "Process | " + " | ".join(mode.upper() for mode in by_kind),
                [
                    _row(kind, *(_mb(peaks[kind]) if kind in peaks else "–" for peaks in by_kind.values()))
                    for kind in kinds
                ],
            ),
        ]
    return lines


def _profile(profile: dict[str, Any] | None, label: str) -> list[str]:
    if not profile:
        return []
    if "error" in profile:
        return [f"_The {label} profile could not be taken: {profile['error']}_", ""]
    lines = [f"**Profile: {profile['title']}** ({profile['tool']}; {profile['samples']} samples).", ""]
    lines += _table(
        "Share | Where the time goes", [_row(f"{r['share'] * 100:.0f}%", r["what"]) for r in profile["top"]]
    )
    if profile.get("by_process"):
        shares = ", ".join(f"{row['what']} {row['share'] * 100:.0f}%" for row in profile["by_process"])
        lines += [f"CPU samples by process over the whole run: {shares}.", ""]
    share = {row["what"]: row["share"] * 100 for row in profile["top"]}
    if label == "task" and share.get("dbt: loading the project (parse)", 0) >= 10:
        lines += [
            f"Loading the dbt project is {share['dbt: loading the project (parse)']:.0f}% of the task processes' "
            "CPU: every task starts dbt anew, and even a partial parse reads and checks the whole manifest before "
            "the one selected node runs. The dbt nodes themselves — the work bare dbt also does — are "
            f"{share.get('dbt: running the nodes', 0):.0f}% of it.",
            "",
        ]
    return lines


def _producer_limits(mode: str, s: dict[str, Any], goal: dict[str, Any] | None, bare_seconds: float) -> str:
    """Why a producer mode's run (``producer``, ``producer-celery``) takes what it takes: dbt's own commands, and the
    steps around them."""
    phases, lag = s.get("run_phases_seconds") or {}, s.get("node_task_lag_seconds") or {}
    around = sum(value for key, value in phases.items() if key != "dbt_commands")
    text = (
        f"**{mode.upper()} mode** ({s['ratio']['median']:.2f}×{f', goal {_verdict(goal)}' if goal else ''}). dbt runs "
        f"once, in `dbt_build`: dbt's own run time adds up to {s['dag_dbt_work_seconds']:.0f} s against "
        f"{s['bare_dbt_work_seconds']:.0f} s over bare dbt's commands. Of {s.get('node_tasks_per_run', 0):g} node "
        f"tasks per run, {s.get('node_tasks_on_workers_per_run', 0):g} took a worker. Every node task waits in the "
        "triggerer from the start of the run (`trigger_rule=always`, `start_from_trigger`) and ends when `dbt_build` "
        "publishes its node: not after its upstream task, so the chain of scheduler and triggerer hops along the "
        "lineage is gone"
    )
    if lag:
        text += (
            f"; a node task ends {lag['median']:.2f} s after dbt finished its node (median; the slowest "
            f"{lag['max']:.2f} s), and the run {s['tail_after_producer_seconds']['median']:.2f} s after `dbt_build`"
        )
    text += "."
    slowest, started = lag.get("slowest") or {}, s.get("last_trigger_started_seconds")
    first = s.get("first_result_seconds")
    if slowest.get("before_its_trigger_started_seconds") is not None and started and first:
        text += (
            f" The slowest lag is `{slowest['task_id']}`'s: {slowest['before_its_trigger_started_seconds']:.2f} s "
            f"of its {slowest['seconds']:.2f} s passed before the triggerer had started its trigger. dbt published "
            f"a run's first result {first['median']:.1f} s after the run was queued, and the triggerer started the "
            f"last of the run's triggers {started['median']:.1f} s after it (medians; {started['max']:.1f} s at the "
            "latest). Starting the trigger of a task that starts in the triggerer is Airflow's work: in Airflow "
            "3.3.2 the triggerer's supervisor builds each trigger's workload with the whole serialized DAG and the "
            "runner deserialises it once per trigger (`TriggerRunner.create_runtime_ti`), about 70 times at the "
            "start of every run, on the same 2 cores as `dbt_build` loading the project."
        )
    if phases:
        text += (
            f" What remains is the run's steps around dbt: {around:.0f} s of a median run (the table above), against "
            f"{bare_seconds - s['bare_dbt_work_seconds']:.0f} s of process start-up and project loading over bare "
            f"dbt's commands. The largest are `dbt_build`'s own ({phases.get('producer_around_dbt', 0):.1f} s: a "
            f"task process, loading the project, writing the run history and the docs), `validate_params` "
            f"({phases.get('validate_params', 0):.1f} s) and the scheduler starting the run and `dbt_build` on a "
            f"worker ({phases.get('to_first_task', 0) + phases.get('to_producer_start', 0):.1f} s)."
        )
    return text


def _limits(doc: dict[str, Any]) -> list[str]:
    """Why each figure is what it is, from the run's own breakdowns and profiles."""
    sections, goals, lines = doc["sections"], doc["goals"], []
    overhead = sections["cosmos_overhead"]
    for mode, s in overhead.get("modes", {}).items():
        p = {key: value or 0 for key, value in s["per_task_phase_medians_seconds"].items()}
        goal = goals.get(f"cosmos_{mode}_vs_bare_dbt")
        text = (
            f"**{mode.upper()} mode** ({s['ratio']['median']:.2f}×{f', goal {_verdict(goal)}' if goal else ''}). "
            f"A run has {s['tasks_per_run']:g} tasks, {s['dbt_tasks_per_run']:g} of which run dbt. dbt's own run "
            f"time adds up to {s['dag_dbt_work_seconds']:.0f} s over the DAG run's tasks against "
            f"{s['bare_dbt_work_seconds']:.0f} s over bare dbt's commands; the rest is what each task costs around "
            f"its dbt work: the tasks add up to {s['task_seconds_per_run']:.0f} task-seconds, run at most 4 at a time "
            f"(LocalExecutor parallelism) on {doc['machine']['cpu_count']} cores. A median dbt task takes "
            f"{p.get('to_dbt_start_seconds', 0):.1f} s to reach dbt ({p.get('dag_file_parse_seconds', 0):.2f} s of "
            f"it parsing the DAG file again), then {p.get('dbt_parse_seconds', 0):.1f} s while dbt loads the "
            f"project, {p.get('dbt_run_seconds', 0):.1f} s while dbt runs its node(s) and "
            f"{p.get('after_dbt_seconds', 0):.1f} s after dbt until the task is recorded done."
        )
        if s.get("dbt_full_parse_tasks_per_run"):
            text += f" In {s['dbt_full_parse_tasks_per_run']:g} tasks per run dbt parsed the whole project (below)."
        if other := s.get("other_tasks_per_run"):
            median = s.get("other_task_seconds")
            text += f" {other:g} tasks per run run no dbt" + (
                f" (median {median['median']:.1f} s each)" if median else ""
            )
            sensors = ": the sensors that follow the producer's `dbt build`, each a task process in an executor slot."
            text += sensors if mode == "watcher" else "."
        if not s["all_runs_succeeded"]:
            text += " Not every run in this mode succeeded; see the failed tasks above."
        if s.get("run_phases_seconds"):  # a producer mode: its node tasks run no dbt
            text = _producer_limits(mode, s, goal, s["bare_dbt_seconds"]["median"])
        lines += [text, ""]
    parsed_in_full = {
        mode: s["dbt_full_parse_tasks_per_run"]
        for mode, s in overhead.get("modes", {}).items()
        if s.get("dbt_full_parse_tasks_per_run")
    }
    if parsed_in_full:
        counts = ", ".join(f"{mode.upper()} {count:g}" for mode, count in parsed_in_full.items())
        lines += [
            f"**Full parses** (tasks per run: {counts}). dbt re-parses the whole project when a command's vars "
            "differ from those its partial-parse file was written with, and each run brings new vars (its day's "
            "window). The greenery tasks load the project without the vars, from one parse kept per machine "
            "(`include/dbt_tasks/parsed_project.py`), so they parse in full only while no parse is kept there yet "
            "or after the project changed; a task that runs dbt through Cosmos' own runner (the WATCHER mode's "
            "producer `dbt build`) still parses with the vars, so a new window makes it parse in full.",
            "",
        ]
    lines += _profile(overhead.get("profile"), "task") + _profile(sections["parse_time"].get("profile"), "parse")
    points = {p["scale"]: p for p in sections["scaling"].get("points", [])}
    if (goal := goals.get("incremental_run_scale_100_vs_1")) and 100 in points:
        day, base = points[100]["incremental_daily_build"], points[min(points)]["incremental_daily_build"]
        lines += [
            f"**Daily run at scale 100** ({goal['measured']:.2f}× scale 1, goal {_verdict(goal)}). The command takes "
            f"{day['seconds']:.0f} s against {base['seconds']:.0f} s, of which dbt's run phase is "
            f"{day['elapsed_seconds']:.0f} s against {base['elapsed_seconds']:.0f} s; the rest — starting dbt and "
            "parsing the project — does not grow with the data. Node time: the incremental models "
            f"{day['incremental_models_seconds']:.1f} s (scale 1: {base['incremental_models_seconds']:.1f} s), the "
            f"other models (views, and table marts rebuilt in full every day) {day['other_models_seconds']:.1f} s "
            f"(scale 1: {base['other_models_seconds']:.1f} s), the data tests {day['tests_seconds']:.1f} s (scale 1: "
            f"{base['tests_seconds']:.1f} s; they check whole tables, not the new day).",
            "",
        ]
    if goal := goals.get("loader_vs_psql_copy"):
        csv = sections["load_throughput"]["ratio_to_psql"]["loader_csv"]
        lines += [
            f"**Loader** ({goal['measured']:.2f}× `psql \\copy`, goal {_verdict(goal)}). Loading the same rows from "
            f"the exported CSV files takes {csv:.2f}× psql, so the "
            + (
                "COPY path is close to psql's and the difference is generating the rows in Python."
                if csv < goal["measured"]
                else "time goes into the COPY path, not into generating the rows."
            ),
            "",
        ]
    return ["## What limits the figures", "", *lines] if lines else []


SECTIONS = {  # section: heading, text, chart's alt text
    "parse_time": ("1. DAG parse time", _parse, "parse time"),
    "cosmos_overhead": ("2. Cosmos overhead: the DAG on Airflow against bare dbt", _overhead, "Cosmos overhead"),
    "scaling": ("3. Scaling with data volume", _scaling, "scaling"),
    "load_throughput": ("4. Load throughput", _load, "load throughput"),
    "memory": ("5. Memory (peak RSS)", _memory, None),
}
REPRODUCE = (
    "`make bench` (about half an hour on two cores, on its own warehouse and Airflow in a temporary directory) "
    "rewrites `bench/results/summary.json`, this page and its charts; the raw results (every pair, task and sample) "
    "go to the git-ignored `bench/results/runs/`. `make bench QUICK=1` runs the same code with fewer, smaller "
    "measurements in under five minutes (the Cosmos comparison on the four-task hourly DAG) into "
    "`bench/results/runs/quick/`; `python -m bench.run --help` lists the knobs. Timings on a shared machine are "
    "noisy: the load average in the header says how busy this one was."
)


def render(doc: dict[str, Any], out_dir: Path, charts: set[str]) -> str:
    lines = _header(doc, out_dir) + _default_mode(doc["sections"]["cosmos_overhead"])
    for name, (heading, text, alt) in SECTIONS.items():
        body = doc["sections"][name]
        lines += [f"## {heading}", ""]
        if body.get("skipped"):
            lines += ["_Not measured in this run (left out with --only)._", ""]
        elif "error" in body:
            lines += ["_Not measured in this run:_", "", "```", body["error"].strip()[-2500:], "```", ""]
        else:
            lines += text(body) + ([f"![{alt}]({name}.png)", ""] if f"{name}.png" in charts else [])
    return "\n".join([*lines, *_limits(doc), "## Reproduce", "", REPRODUCE, ""])


# -- charts ---------------------------------------------------------------------------------------------------
def _figure(figsize: tuple[float, float], **grid: Any):
    """A figure and its axes, without pyplot (nothing to show or close)."""
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams.update(
        {"figure.dpi": 110, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
    )
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(**grid)


def chart_overhead(body: dict[str, Any]):
    modes, n = body["modes"], len(body["bare_commands"])
    fig, (left, right) = _figure((10, 4.2), ncols=2, gridspec_kw={"width_ratios": [1, 1.3]})
    for offset, key, label, color in (
        (-0.18, "bare_dbt_seconds", f"bare dbt ({n} command{'s' if n != 1 else ''})", "#7a9e7e"),
        (0.18, "dag_run_seconds", f"{body['dag_id']} on Airflow", "#c8553d"),
    ):
        stats = [s[key] for s in modes.values()]
        errors = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
        xs = [x + offset for x in range(len(stats))]
        left.bar(xs, [s["median"] for s in stats], 0.34, yerr=errors, capsize=3, label=label, color=color)
    left.set_xticks(
        range(len(modes)), [f"{m.upper()} mode\n({s['ratio']['median']:.2f}× bare dbt)" for m, s in modes.items()]
    )
    left.set(xlim=(-0.7, len(modes) - 0.3), ylabel="wall time, seconds (median, min–max)")
    left.set_title(f"{body['dag_id']} at scale {body['scale']:g}: Airflow vs one shell")
    left.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    bottoms = [0.0] * len(modes)
    charted = [(key, label) for key, (_, label) in PHASES.items() if label]
    for (key, label), color in zip(charted, ["#c8553d", "#f28f3b", "#588b8b", "#bbbbbb"], strict=True):
        values = [s["per_task_phase_medians_seconds"].get(key) or 0.0 for s in modes.values()]
        right.barh([m.upper() for m in modes], values, left=bottoms, color=color, label=label, height=0.5)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    right.set(xlabel="seconds (medians over the tasks that run dbt)", title="One dbt task, phase by phase")
    right.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return fig


def chart_scaling(body: dict[str, Any]):
    points = body["points"]
    fig, ax = _figure((6.5, 3.8))
    scales, daily = [p["scale"] for p in points], [p["incremental_daily_build"] for p in points]
    for label, values, color in (
        ("load (make load)", [p["load"]["seconds"] for p in points], "#7a9e7e"),
        ("first full dbt build", [p["full_build"]["seconds"] for p in points], "#c8553d"),
        ("daily dbt build (one new day)", [d["seconds"] for d in daily], "#588b8b"),
        ("  of which incremental models", [max(d["incremental_models_seconds"], 0.01) for d in daily], "#f28f3b"),
    ):
        ax.plot(scales, values, marker="o", label=label, color=color)
    linear = [points[0]["full_build"]["seconds"] * s / scales[0] for s in scales]
    ax.plot(scales, linear, ls=":", color="#999", label="linear in volume")
    ax.set(xscale="log", yscale="log", xlabel="scale (1 = the course's data set)", ylabel="seconds")
    ax.set_title("Growth with data volume")
    ax.legend(frameon=False, fontsize=8)
    return fig


def chart_parse(body: dict[str, Any]):
    files = body["files"]
    several = len({f.get("execution_mode") for f in files if Path(f["file"]).name == "greenery_daily.py"}) > 1
    rows = [("trivial DAG", body["trivial"])] + [
        (Path(f["file"]).name + (f" ({f['execution_mode']})" if several and "daily" in f["file"] else ""), f)
        for f in files
    ]
    fig, ax = _figure((8, 1.2 + 0.45 * len(rows)))
    ys = range(len(rows))
    cold = [r["cold_parse_seconds"]["median"] for _, r in rows]
    ax.barh([y + 0.2 for y in ys], cold, height=0.4, color="#c8553d", label="cold parse (fresh process)")
    serialise = [r["cold_serialize_seconds"]["median"] for _, r in rows]
    ax.barh([y + 0.2 for y in ys], serialise, left=cold, height=0.4, color="#f28f3b", label="+ serialisation")
    warm = [r["warm_parse_seconds"]["median"] for _, r in rows]
    ax.barh([y - 0.2 for y in ys], warm, height=0.4, color="#588b8b", label="warm parse (same process)")
    ax.set_yticks(list(ys), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set(xlabel="seconds (median)", title="DAG-file parse time, paid by the dag-processor and every task")
    ax.legend(frameon=False, fontsize=8)
    return fig


def chart_load(body: dict[str, Any]):
    fig, ax = _figure((6.5, 2.4))
    values = [body["seconds"][key]["median"] for key in LOAD_METHODS]
    ax.barh([label for _, label in LOAD_METHODS.values()], values, color=["#7a9e7e", "#588b8b", "#c8553d"])
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.1f} s", va="center", fontsize=8)
    ax.set(xlabel="seconds (median)", title=f"Loading scale {body['scale']:g} ({body['rows']:,} rows)")
    return fig


CHARTS = {  # section: chart, whether the section has enough to draw
    "cosmos_overhead": (chart_overhead, lambda b: bool(b.get("modes"))),
    "scaling": (chart_scaling, lambda b: len(b.get("points", [])) > 1),
    "parse_time": (chart_parse, lambda b: bool(b.get("files"))),
    "load_throughput": (chart_load, lambda b: "seconds" in b),
}


# -- files ----------------------------------------------------------------------------------------------------
def summary_file(out_dir: Path) -> Path:
    """Where a run that writes its page into ``out_dir`` keeps its summary (the committed one for bench/)."""
    return SUMMARY if out_dir == BENCH_DIR else out_dir / "summary.json"


def _json(value: Any, indent: str = "") -> str:
    """JSON with each object or list that fits in a line on one line: the summary reads, and diffs, by figure."""
    flat = json.dumps(value, ensure_ascii=False, default=str)
    if len(indent) + len(flat) <= 116 or not value or not isinstance(value, dict | list):
        return flat
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(key)}: {_json(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    return "[\n" + ",\n".join(inner + _json(item, inner) for item in value) + f"\n{indent}]"


def write(doc: dict[str, Any], out_dir: Path) -> Path:
    """Write the summary of ``doc`` (a raw run or a summary), RESULTS.md and the charts; returns the page."""
    summary, target = summarise(doc), summary_file(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_json(summary) + "\n")
    charts = set()
    for name, (draw, drawable) in CHARTS.items():
        body, path = summary["sections"][name], out_dir / f"{name}.png"
        path.unlink(missing_ok=True)
        if "error" not in body and drawable(body):
            fig = draw(body)
            fig.tight_layout()
            fig.savefig(path)
            charts.add(path.name)
    page = out_dir / "RESULTS.md"
    page.write_text(render(summary, out_dir, charts))
    return page


def console_summary(doc: dict[str, Any], page: Path) -> str:
    lines = [f"Benchmark ({doc['size']['name']}) finished in {doc['duration_seconds'] / 60:.1f} min."]
    lines += [
        f"  {g['description']}: {_in_unit(g['measured'], g.get('unit', 'x'))}, {_verdict(g).replace('**', '')}"
        for g in doc["goals"].values()
    ]
    return "\n".join([*lines, f"Results: {page}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, default=SUMMARY, help="a summary.json or a raw run's file")
    parser.add_argument("--out", type=Path, help="directory for RESULTS.md and the charts (default: beside FILE)")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        print(f"error: {args.results} does not exist: run `make bench` first.", file=sys.stderr)
        return 1
    results = args.results.resolve()
    out_dir = (args.out or (BENCH_DIR if results == SUMMARY else results.parent)).resolve()
    print(f"Wrote {write(json.loads(results.read_text()), out_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
