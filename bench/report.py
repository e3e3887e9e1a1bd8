"""RESULTS.md and its charts, rendered from a results file.

    python -m bench.report [bench/results/latest.json]    # re-render bench/RESULTS.md and bench/*.png

Everything on the page comes from the JSON, so the text can never disagree with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CHARTS = ("cosmos_overhead.png", "scaling.png", "parse_time.png", "load_throughput.png")


def _s(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f} s"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} MB"


def _range(stats: dict[str, Any] | None, fmt=_s) -> str:
    if not stats:
        return "–"
    if stats["n"] == 1:
        return fmt(stats["median"])
    return f"{fmt(stats['median'])} ({fmt(stats['min'])} – {fmt(stats['max'])})"


def _verdict(goal: dict[str, Any]) -> str:
    if goal["met"] is None:
        return "reported (no numeric goal)"
    if goal["met"]:
        return "**met**"
    over = (goal["measured"] / goal["target"] - 1) * 100
    return f"**missed** by {over:.0f}% ({goal['measured']:.2f} against {goal['target']:.2f})"


def _error(body: dict[str, Any]) -> str | None:
    if "error" not in body:
        return None
    return "_Not measured in this run" + (
        " (left out with --only)._" if body.get("skipped") else ":_\n\n```\n" + body["error"].strip()[-2500:] + "\n```"
    )


def _default_mode() -> str | None:
    """``DEFAULT_EXECUTION_MODE`` of include/cosmos_config.py, read without importing Airflow and Cosmos."""
    import ast

    from include import settings

    try:
        tree = ast.parse((settings.REPO_ROOT / "include" / "cosmos_config.py").read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "DEFAULT_EXECUTION_MODE" for t in node.targets
        ):
            return node.value.value if isinstance(node.value, ast.Constant) else None
    return None


# -- charts ---------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def chart_overhead(section: dict[str, Any], path: Path) -> bool:
    modes = section.get("modes") or {}
    if not modes:
        return False
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.3]})
    names = list(modes)
    xs = list(range(len(names)))
    commands = len(section.get("bare_commands", []))
    for offset, key, label, color in (
        (-0.18, "bare_dbt_seconds", f"bare dbt ({commands} command{'s' if commands != 1 else ''})", "#7a9e7e"),
        (0.18, "dag_run_seconds", f"{section['dag_id']} on Airflow", "#c8553d"),
    ):
        series = [modes[m]["summary"][key] for m in names]
        medians = [s["median"] for s in series]
        errors = [[s["median"] - s["min"] for s in series], [s["max"] - s["median"] for s in series]]
        left.bar([x + offset for x in xs], medians, width=0.34, yerr=errors, capsize=3, label=label, color=color)
    left.set_xticks(xs, [f"{m.upper()} mode\n({modes[m]['summary']['ratio']['median']:.2f}× bare dbt)" for m in names])
    left.set_xlim(-0.7, len(names) - 0.3)
    left.set_ylabel("wall time, seconds (median, min–max)")
    left.set_title(f"{section['dag_id']} at scale {section['scale']:g}: Airflow vs one shell")
    left.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)

    # Where a median dbt task's time goes, per mode.
    phase_keys = ["to_dbt_start_seconds", "dbt_parse_seconds", "dbt_run_seconds", "after_dbt_seconds"]
    labels = ["task start → dbt called", "dbt parse", "dbt run (nodes)", "after dbt"]
    colors = ["#c8553d", "#f28f3b", "#588b8b", "#bbbbbb"]
    bottoms = [0.0] * len(names)
    for key, label, color in zip(phase_keys, labels, colors, strict=True):
        values = [modes[m]["summary"]["per_task_phase_medians_seconds"].get(key) or 0.0 for m in names]
        right.barh([m.upper() for m in names], values, left=bottoms, color=color, label=label, height=0.5)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    right.set_xlabel("seconds (medians over the tasks that run dbt)")
    right.set_title("One dbt task, phase by phase")
    right.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def chart_scaling(section: dict[str, Any], path: Path) -> bool:
    points = section.get("points") or []
    if len(points) < 2:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    scales = [p["scale"] for p in points]
    series = [
        ("load (make load)", [p["load"]["seconds"] for p in points], "#7a9e7e"),
        ("first full dbt build", [p["full_build"]["seconds"] for p in points], "#c8553d"),
        ("daily dbt build (one new day)", [p["incremental_daily_build"]["seconds"] for p in points], "#588b8b"),
        (
            "  of which incremental models",
            [max(p["incremental_daily_build"]["incremental_models_seconds"], 0.01) for p in points],
            "#f28f3b",
        ),
    ]
    for label, values, color in series:
        ax.plot(scales, values, marker="o", label=label, color=color)
    ax.plot(
        scales,
        [points[0]["full_build"]["seconds"] * s / scales[0] for s in scales],
        ls=":",
        color="#999",
        label="linear in volume",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scale (1 = the course's data set)")
    ax.set_ylabel("seconds")
    ax.set_title("Growth with data volume")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def chart_parse(section: dict[str, Any], path: Path) -> bool:
    files = section.get("files") or []
    if not files:
        return False
    plt = _plt()
    modes = {f.get("execution_mode") for f in files if Path(f["file"]).name == "greenery_daily.py"}
    rows = [("trivial DAG", section["trivial"])] + [
        (Path(f["file"]).name + (f" ({f['execution_mode']})" if len(modes) > 1 and "daily" in f["file"] else ""), f)
        for f in files
    ]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(rows)))
    labels = [r[0] for r in rows]
    cold = [r[1]["cold_parse_seconds"]["median"] for r in rows]
    serialize = [r[1]["cold_serialize_seconds"]["median"] for r in rows]
    warm = [r[1]["warm_parse_seconds"]["median"] for r in rows]
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], cold, height=0.4, color="#c8553d", label="cold parse (fresh process)")
    ax.barh([y + 0.2 for y in ys], serialize, left=cold, height=0.4, color="#f28f3b", label="+ serialisation")
    ax.barh([y - 0.2 for y in ys], warm, height=0.4, color="#588b8b", label="warm parse (same process)")
    ax.set_yticks(list(ys), labels)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (median)")
    ax.set_title("DAG-file parse time, paid by the dag-processor and every task")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def chart_load(section: dict[str, Any], path: Path) -> bool:
    if "seconds" not in section:
        return False
    plt = _plt()
    names = [
        ("psql_copy", "psql \\copy (CSV)"),
        ("loader_csv", "make load CSV=…"),
        ("loader_generate", "make load SCALE=…"),
    ]
    fig, ax = plt.subplots(figsize=(6.5, 2.4))
    values = [section["seconds"][k]["median"] for k, _ in names]
    ax.barh([label for _, label in names], values, color=["#7a9e7e", "#588b8b", "#c8553d"])
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.1f} s", va="center", fontsize=8)
    ax.set_xlabel("seconds (median)")
    ax.set_title(f"Loading scale {section['scale']:g} ({section['rows']:,} rows)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# -- the page -------------------------------------------------------------------------------------------------
def _header(doc: dict[str, Any], results_file: Path, out_dir: Path) -> list[str]:
    machine, versions, git = doc["machine"], doc["versions"], doc["git"]
    size = doc["size"]["name"]
    lines = ["# Benchmark results", ""]
    if size != "full":
        lines += [f"> **This is a `{size}` run** (fewer, smaller measurements): not the figures to quote.", ""]
    commit = git["commit"][:12] + (" with uncommitted changes" if git["dirty"] else "")
    rel = os.path.relpath(results_file, out_dir)
    lines += [
        f"Measured by `make bench` (`python -m bench.run`, size **{size}**) on {doc['started_at']} in "
        f"{doc['duration_seconds'] / 60:.1f} minutes, at commit `{commit}`.",
        "",
        f"- Machine: {machine['cpu_count']} × {machine['cpu_model']}, {machine['memory_gb']} GB RAM, {machine['os']}, "
        f"Python {machine['python']}; load average when the run started: "
        f"{', '.join(str(x) for x in machine['load_average_at_start'])}.",
        f"- Software: Airflow {versions['apache-airflow']}, astronomer-cosmos {versions['astronomer-cosmos']}, "
        f"dbt-core {versions['dbt-core']} + dbt-postgres {versions['dbt-postgres']}, "
        f"PostgreSQL {versions['postgresql']}.",
        f"- Every figure on this page comes from [`{rel}`]({rel}); re-render the page with "
        f"`python -m bench.report {os.path.relpath(results_file, Path.cwd())}`.",
        "",
    ]
    return lines


def _summary(doc: dict[str, Any]) -> list[str]:
    lines = ["## Summary", "", "| Goal | Target | Measured | Verdict |", "|---|---|---|---|"]
    for goal in doc["goals"].values():
        target = "–" if goal["target"] is None else f"≤ {goal['target']:.1f}×"
        lines.append(f"| {goal['description']} | {target} | {_x(goal['measured'])} | {_verdict(goal)} |")
    lines.append("")
    overhead = doc["sections"]["cosmos_overhead"]
    if "modes" in overhead:
        modes = overhead["modes"]
        fastest = overhead["fastest_mode"]
        medians = ", ".join(f"{m.upper()} {modes[m]['summary']['dag_run_seconds']['median']:.0f} s" for m in modes)
        default = _default_mode()
        lines.append(f"**Execution mode.** Median `{overhead['dag_id']}` run: {medians}.")
        if len(modes) > 1:
            lines[-1] += f" **{fastest.upper()} is the faster mode** on this machine."
        else:
            lines[-1] += " Only this mode was measured in this run, so it says nothing about which mode is faster."
        if default and len(modes) > 1:
            verdict = "matches" if default == fastest else "does **not** match"
            lines[-1] += (
                f' The DAG configuration\'s default (`DEFAULT_EXECUTION_MODE = "{default}"` in '
                f"`include/cosmos_config.py`) {verdict} the measurement."
            )
        lines += [
            "",
            "**Scheduler.** The Airflow runs used the real scheduler: `make up`'s stack (scheduler with "
            "LocalExecutor, dag-processor, triggerer, api-server) started in a throwaway directory, each run "
            "triggered with `airflow dags trigger` and followed in the metadata database — not `airflow dags test`.",
            "",
        ]
    return lines


def _parse_section(body: dict[str, Any], charts: set[str]) -> list[str]:
    lines = ["## 1. DAG parse time", ""]
    error = _error(body)
    if error:
        return [*lines, error, ""]
    rendered = (
        "the dbt manifest (`LoadMode.DBT_MANIFEST`)"
        if body["render_method"] == "dbt_manifest"
        else "`dbt ls` (no manifest was found)"
    )
    lines += [
        f"DAGs rendered from {rendered}. "
        "Cold = a fresh Python process with Airflow already imported, as the dag-processor's parser and every "
        "task's start-up parse are; warm = the same file again in the same process.",
        "",
        "| DAG file | Mode | Tasks | Cold parse | + serialise | Warm parse | Cold / trivial | Warm / trivial |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [body["trivial"], *body["files"]]
    for row in rows:
        tasks = ", ".join(f"{d}: {n}" for d, n in row["dags"].items()) or "none"
        lines.append(
            f"| `{row['file']}` | {row.get('execution_mode') or '–'} | {tasks} | "
            f"{_range(row['cold_parse_seconds'], lambda v: f'{v:.3f} s')} | "
            f"{row['cold_serialize_seconds']['median']:.3f} s | "
            f"{_range(row['warm_parse_seconds'], lambda v: f'{v:.3f} s')} | "
            f"{_x(row.get('cold_ratio_to_trivial'))} | {_x(row.get('warm_ratio_to_trivial'))} |"
        )
    lines.append("")
    if any(not row["dags"] for row in rows):
        lines += [
            "A file with no DAG defines its DAG only in some settings (the dev shop simulator needs "
            "`GREENERY_DEV_SIMULATOR=1`, which the benchmark leaves unset, as in production); the dag-processor "
            "still pays for its imports.",
            "",
        ]
    if "parse_time.png" in charts:
        lines += ["![parse time](parse_time.png)", ""]
    return lines


MODE_LEGEND = {
    "local": "LOCAL = Cosmos LOCAL (one dbt invocation per task, in the task process) on `make up`'s "
    "LocalExecutor, which imports dbt and Cosmos once in the scheduler (`include/preloading_executor.py`)",
    "local-stock": "LOCAL-STOCK = the same on Airflow's stock LocalExecutor, where every task process imports dbt",
    "watcher": "WATCHER = Cosmos WATCHER (one `dbt build` in a producer task, the node tasks follow it) on `make "
    "up`'s LocalExecutor",
}


def _overhead_section(body: dict[str, Any], charts: set[str]) -> list[str]:
    lines = ["## 2. Cosmos overhead: the DAG on Airflow against bare dbt", ""]
    error = _error(body)
    if error:
        return [*lines, error, ""]
    first_mode = next(iter(body["modes"].values()))
    windows = [pair["window"] for pair in first_mode["pairs"]]
    days = sorted({w["start_date"][:10] for w in windows})
    commands = "; ".join(f"`{c}`" for c in body["bare_commands"])
    lines += [
        f"`{body['dag_id']}` on generated data at scale {body['scale']:g}, with dbt threads {body['dbt_threads']} on "
        f"both sides. Each pair processes one day's window (`start_date`, `end_date` as a manual run for that day "
        f"sends them; days {', '.join(days)}), each pair another day as consecutive daily runs would. "
        f"Airflow: {body['scheduler']}. Bare dbt: {commands} — one process each, back to back."
        + (
            " The DAG runs the snapshots once, in their own step, so the bare `dbt build` excludes them to do the "
            "same work."
            if body["dag_id"] == "greenery_daily"
            else ""
        )
        + " Pairs alternate which side runs first.",
        "",
        "Modes: " + "; ".join(MODE_LEGEND[mode] for mode in body["modes"] if mode in MODE_LEGEND) + ".",
        "",
        "| Mode | DAG run | Bare dbt | Ratio (median of pairs) | Pairs | Tasks / run (running dbt) | "
        "Per-task overhead | All runs succeeded |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, data in body["modes"].items():
        s = data["summary"]
        lines.append(
            f"| {mode.upper()} | {_range(s['dag_run_seconds'])} | {_range(s['bare_dbt_seconds'])} | "
            f"{_range(s['ratio'], _x)} | {s['pairs_used']} | {s['tasks_per_run']:g} ({s['dbt_tasks_per_run']:g}) | "
            f"{_range(s['per_task_overhead_seconds'])} | {'yes' if s['all_runs_succeeded'] else '**no**'} |"
        )
    for mode, data in body["modes"].items():
        for pair in data["pairs"]:
            run = pair["dag"]
            failed = [t for t in run["tasks"] if t["state"] == "failed"]
            if run["state"] == "success" or not failed:
                continue
            lines.append("")
            lines.append(f"**{mode.upper()} run `{run['run_id']}` failed**:")
            for task in failed:
                reason = (task.get("log_tail") or ["(no error in its log)"])[-1].replace("|", "\\|")
                lines.append(f"- `{task['task_id']}`: {reason[:400]}")
    lines += [
        "",
        "Per-task overhead = a dbt task's wall time in the metadata DB (`task_instance.end_date - start_date`) "
        "minus dbt's own run time for it (the run phase dbt reports, `run_results.json`'s `elapsed_time`, read from "
        "the task log). Where a median task that runs dbt spends its time (medians of each phase over all dbt tasks "
        "of the measured runs, so they need not add up):",
        "",
        "| Phase | " + " | ".join(m.upper() for m in body["modes"]) + " |",
        "|---|" + "---|" * len(body["modes"]),
    ]
    for key, label in (
        ("queued_seconds", "queued → started (waiting for an executor slot or the pool; before the task's wall time)"),
        (
            "to_dbt_start_seconds",
            "task start → Cosmos calls dbt (task process, Airflow start-up, DAG-file parse, "
            "Cosmos copying the project, importing dbt)",
        ),
        ("dag_file_parse_seconds", "  of which the DAG-file parse (Airflow's own figure)"),
        ("dbt_parse_seconds", "dbt loading the project (parse)"),
        ("dbt_run_seconds", "dbt running the node(s), with its connections and artifacts"),
        ("after_dbt_seconds", "dbt done → task end (assets, XCom, state)"),
    ):
        values = [data["summary"]["per_task_phase_medians_seconds"].get(key) for data in body["modes"].values()]
        lines.append(f"| {label} | " + " | ".join(_s(v, 2) for v in values) + " |")
    full_parse = [data["summary"]["dbt_full_parse_tasks_per_run"] for data in body["modes"].values()]
    lines.append(
        "| tasks per run where dbt re-parsed the whole project | " + " | ".join(f"{v:g}" for v in full_parse) + " |"
    )
    lines.append("")
    if "cosmos_overhead.png" in charts:
        lines += ["![Cosmos overhead](cosmos_overhead.png)", ""]
    return lines


def _scaling_section(body: dict[str, Any], charts: set[str]) -> list[str]:
    lines = ["## 3. Scaling with data volume", ""]
    error = _error(body)
    if error:
        return [*lines, error, ""]
    method = body["points"][0]["new_day"]["method"]
    lines += [
        "Per scale, on an emptied warehouse: `make load` of the history up to yesterday, the first full "
        f"`dbt build`, one more day of data ({method}), then the daily `dbt build` for that day's window "
        "(views and table marts rebuilt, incremental models merge one day). Growth is relative to the first scale.",
        "",
        "| Scale | Raw events | Load | Full build | Daily build | Incremental models in it "
        "| Growth: load / full / daily |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in body["points"]:
        g = p["growth_from_first_scale"]
        lines.append(
            f"| {p['scale']:g} | {p['raw_rows'].get('events', 0):,} | {_s(p['load']['seconds'])} | "
            f"{_s(p['full_build']['seconds'])} | {_s(p['incremental_daily_build']['seconds'])} | "
            f"{_s(p['incremental_daily_build']['incremental_models_seconds'], 2)} | "
            f"{_x(g['load'])} / {_x(g['full_build'])} / {_x(g['incremental_daily_build'])} |"
        )
    lines.append("")
    if "scaling.png" in charts:
        lines += ["![scaling](scaling.png)", ""]
    return lines


def _load_section(body: dict[str, Any], charts: set[str]) -> list[str]:
    lines = ["## 4. Load throughput", ""]
    error = _error(body)
    if error:
        return [*lines, error, ""]
    lines += [
        f"Scale {body['scale']:g}: {body['rows']:,} rows ({body['csv_megabytes']} MB of CSV). Each method replaces "
        "the raw tables' contents in one transaction; medians of alternating rounds.",
        "",
        "| Method | Time | Rows / s | Ratio to psql | Peak RSS |",
        "|---|---|---|---|---|",
    ]
    names = {
        "psql_copy": "`psql`: `truncate` + `\\copy` of the exported CSV files (foreign keys in place)",
        "loader_csv": "`make load CSV=dir` of the same files",
        "loader_generate": "`make load SCALE=n` (generates the rows while loading)",
    }
    for key, label in names.items():
        ratio_value = body["ratio_to_psql"].get(key, 1.0 if key == "psql_copy" else None)
        lines.append(
            f"| {label} | {_range(body['seconds'][key])} | {body['rows_per_second'][key]:,} | {_x(ratio_value)} | "
            f"{_mb(body['peak_rss_mb'][key])} |"
        )
    lines.append("")
    if "load_throughput.png" in charts:
        lines += ["![load throughput](load_throughput.png)", ""]
    return lines


def _memory_section(body: dict[str, Any]) -> list[str]:
    lines = ["## 5. Memory (peak RSS)", ""]
    error = _error(body)
    if error:
        return [*lines, error, ""]
    lines += ["| What | Peak RSS |", "|---|---|"]
    for mode, value in body.get("dbt_task_peak_rss_mb", {}).items():
        lines.append(f"| one dbt task process ({mode.upper()} mode) | {_mb(value)} |")
    for mode, value in body.get("airflow_run_peak_rss_mb", {}).items():
        lines.append(f"| whole Airflow platform during a DAG run ({mode.upper()} mode) | {_mb(value)} |")
    lines.append(f"| one bare `dbt` command (largest of the four) | {_mb(body.get('bare_dbt_peak_rss_mb'))} |")
    for point in body.get("by_scale_peak_rss_mb", []):
        lines.append(
            f"| scale {point['scale']:g}: loader / full dbt build / daily dbt build | {_mb(point['loader'])} / "
            f"{_mb(point['dbt_full_build'])} / {_mb(point['dbt_daily_build'])} |"
        )
    lines += ["", body.get("note", ""), ""]
    return lines


def _analysis(doc: dict[str, Any]) -> list[str]:
    from bench.analysis import explain

    text = explain(doc)
    return ["## What limits the figures", "", *text, ""] if text else []


def _reproduce() -> list[str]:
    return [
        "## Reproduce",
        "",
        "`make bench` (about half an hour on two cores; it starts its own warehouse and Airflow in a temporary "
        "directory and leaves the `make up` platform alone) rewrites `bench/results/latest.json`, this page and its "
        "charts. `make bench QUICK=1` runs the same code with fewer, smaller measurements in under five minutes "
        "(the Cosmos comparison then runs the four-task hourly DAG) and writes to `bench/results/runs/quick/`. "
        "`python -m bench.run --help` lists the knobs (one section, other modes, more pairs, another DAG). "
        "Timings on a shared machine are noisy: the load average in the header says how busy this one was.",
        "",
    ]


def render(doc: dict[str, Any], results_file: Path, out_dir: Path, charts: set[str]) -> str:
    s = doc["sections"]
    lines = _header(doc, results_file, out_dir)
    if doc.get("notes"):
        lines += ["## Notes on this run", "", *[f"- {note}" for note in doc["notes"]], ""]
    lines += _summary(doc)
    lines += _parse_section(s["parse_time"], charts)
    lines += _overhead_section(s["cosmos_overhead"], charts)
    lines += _scaling_section(s["scaling"], charts)
    lines += _load_section(s["load_throughput"], charts)
    lines += _memory_section(s["memory"])
    lines += _analysis(doc)
    lines += _reproduce()
    return "\n".join(lines).rstrip() + "\n"


def write(doc: dict[str, Any], out_dir: Path, results_file: Path) -> Path:
    """Write RESULTS.md and the charts into ``out_dir``; returns the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s = doc["sections"]
    charts = set()
    for name, draw, body in (
        ("cosmos_overhead.png", chart_overhead, s["cosmos_overhead"]),
        ("scaling.png", chart_scaling, s["scaling"]),
        ("parse_time.png", chart_parse, s["parse_time"]),
        ("load_throughput.png", chart_load, s["load_throughput"]),
    ):
        path = out_dir / name
        if "error" not in body and draw(body, path):
            charts.add(name)
        else:
            path.unlink(missing_ok=True)
    page = out_dir / "RESULTS.md"
    page.write_text(render(doc, results_file, out_dir, charts))
    return page


def console_summary(doc: dict[str, Any], out_dir: Path) -> str:
    lines = [f"Benchmark ({doc['size']['name']}) finished in {doc['duration_seconds'] / 60:.1f} min."]
    for goal in doc["goals"].values():
        lines.append(f"  {goal['description']}: {_x(goal['measured'])} — {_verdict(goal).replace('**', '')}")
    lines.append(f"Results: {out_dir / 'RESULTS.md'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, default=BENCH_DIR / "results" / "latest.json")
    parser.add_argument("--out", type=Path, help="directory for RESULTS.md and the charts (default: bench/)")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        print(f"error: {args.results} does not exist: run `make bench` first.", file=sys.stderr)
        return 1
    args.results = args.results.resolve()
    doc = json.loads(args.results.read_text())
    out_dir = (
        args.out or (BENCH_DIR if args.results.parent == BENCH_DIR / "results" else args.results.parent)
    ).resolve()
    page = write(doc, out_dir, args.results.resolve())
    print(f"Wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
