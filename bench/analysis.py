"""The "what limits it" part of RESULTS.md, computed from the measured breakdowns and profiles, so the
explanation is re-derived from every run's own numbers instead of being written once and going stale."""

from __future__ import annotations

import statistics
from typing import Any


def _verdict(goal: dict[str, Any] | None) -> str:
    if not goal:
        return ""
    if goal["met"]:
        return f"meets the {goal['target']:.1f}× goal"
    return f"misses the {goal['target']:.1f}× goal by {(goal['measured'] / goal['target'] - 1) * 100:.0f}%"


def _share(profile: dict[str, Any] | None, what: str) -> float:
    if not profile or "top" not in profile:
        return 0.0
    return sum(row["share"] for row in profile["top"] if row["what"] == what)


def _overhead(section: dict[str, Any], goals: dict[str, Any], cores: int) -> list[str]:
    out = []
    for mode, data in section.get("modes", {}).items():
        s = data["summary"]
        pairs = [p for p in data["pairs"] if p["dag"]["state"] == "success"] or data["pairs"]
        dag_work = statistics.median(sum(t.get("dbt_work_seconds") or 0 for t in p["dag"]["tasks"]) for p in pairs)
        bare_work = statistics.median(p["bare"]["dbt_work_seconds"] for p in pairs)
        task_seconds = statistics.median(sum(t.get("seconds") or 0 for t in p["dag"]["tasks"]) for p in pairs)
        phases = s["per_task_phase_medians_seconds"]
        text = (
            f"**{mode.upper()} mode** ({s['ratio']['median']:.2f}×, {_verdict(goals.get(f'cosmos_{mode}_vs_bare_dbt'))}"
            f"). A run has {s['tasks_per_run']:g} tasks, {s['dbt_tasks_per_run']:g} of which run dbt. dbt's own run "
            f"time adds up to {dag_work:.0f} s over the DAG run's tasks against {bare_work:.0f} s over bare dbt's "
            f"commands; the rest is what each task costs around its dbt work. The tasks add up to "
            f"{task_seconds:.0f} task-seconds, run at most 4 at a time (LocalExecutor parallelism) on {cores} cores. "
            f"A median dbt task spends {phases.get('to_dbt_start_seconds') or 0:.1f} s between its start and the "
            "moment Cosmos calls dbt (a new task process, Airflow's start-up, the DAG file parsed again — "
            f"{phases.get('dag_file_parse_seconds') or 0:.2f} s of it — Cosmos copying the project and importing "
            f"dbt), then {phases.get('dbt_parse_seconds') or 0:.1f} s while dbt loads the project, "
            f"{phases.get('dbt_run_seconds') or 0:.1f} s while dbt runs its node(s), and "
            f"{phases.get('after_dbt_seconds') or 0:.1f} s after dbt until the task is recorded done."
        )
        if s.get("dbt_full_parse_tasks_per_run"):
            text += (
                f" In {s['dbt_full_parse_tasks_per_run']:g} tasks per run dbt could not use its partial-parse file "
                "and parsed the whole project: each run brings new vars (its day's window), and dbt re-parses "
                "everything when the vars differ from those the file was written with, so the tasks that start "
                "before the first one has refreshed Cosmos' cached file all parse in full."
            )
        if s.get("other_tasks_per_run"):
            other = s.get("other_task_seconds") or {}
            text += (
                f" {s['other_tasks_per_run']:g} tasks per run run no dbt themselves"
                + (f" (median {other['median']:.1f} s each)" if other else "")
                + (
                    ": in WATCHER mode these are the sensors that follow the producer's single `dbt build`, each "
                    "still a task process that takes an executor slot while it starts and checks."
                    if mode == "watcher"
                    else "."
                )
            )
        if not s["all_runs_succeeded"]:
            text += " Not every run in this mode succeeded; see the failed tasks above."
        out += [text, ""]
    return out


def _task_profile_notes(profile: dict[str, Any] | None) -> list[str]:
    notes = []
    dbt_import = _share(profile, "importing dbt modules")
    if dbt_import >= 0.1:
        notes.append(
            f"Importing dbt is {dbt_import * 100:.0f}% of the task processes' CPU: each task is a new process (Airflow "
            "3 forks it from an executor worker that has not imported dbt), so every task pays dbt's import again."
        )
    dbt_parse = _share(profile, "dbt: loading the project (parse)")
    if dbt_parse >= 0.1:
        notes.append(
            f"Loading the dbt project is {dbt_parse * 100:.0f}% of it: every task starts dbt anew, and even a "
            "partial parse reads and checks the whole manifest before the one selected node runs."
        )
    nodes = _share(profile, "dbt: running the nodes")
    if profile and "top" in profile:
        notes.append(
            f"The dbt nodes themselves — the work bare dbt also does — are {nodes * 100:.0f}% of the task processes' "
            "CPU."
        )
    return notes


def _scaling(section: dict[str, Any], goals: dict[str, Any]) -> list[str]:
    goal = goals.get("incremental_run_scale_100_vs_1")
    points = {p["scale"]: p for p in section.get("points", [])}
    if not goal or 100 not in points:
        return []
    daily = points[100]["incremental_daily_build"]
    base = points[min(points)]["incremental_daily_build"]
    text = (
        f"**Daily run at scale 100** ({goal['measured']:.2f}× scale 1, {_verdict(goal)}). The command takes "
        f"{daily['seconds']:.0f} s against {base['seconds']:.0f} s, of which dbt's run phase is "
        f"{daily['elapsed_seconds']:.0f} s against {base['elapsed_seconds']:.0f} s; the rest — starting dbt and "
        "parsing the project — does not grow with the data. Node time: the incremental models "
        f"{daily['incremental_models_seconds']:.1f} s (scale 1: {base['incremental_models_seconds']:.1f} s), the "
        f"other models (views, and table marts rebuilt in full every day) {daily['other_models_seconds']:.1f} s "
        f"(scale 1: {base['other_models_seconds']:.1f} s), the data tests {daily['tests_seconds']:.1f} s (scale 1: "
        f"{base['tests_seconds']:.1f} s; they check whole tables, not the new day)."
    )
    return [text, ""]


def _load(section: dict[str, Any], goals: dict[str, Any]) -> list[str]:
    goal = goals.get("loader_vs_psql_copy")
    if not goal:
        return []
    ratio_csv = section["ratio_to_psql"]["loader_csv"]
    text = (
        f"**Loader** ({goal['measured']:.2f}× `psql \\copy`, {_verdict(goal)}). Loading the same rows from the "
        f"exported CSV files takes {ratio_csv:.2f}× psql, so "
        + (
            "the COPY path is close to psql's and the difference is generating the rows in Python."
            if ratio_csv < goal["measured"]
            else "the time goes into the COPY path, not into generating the rows."
        )
    )
    return [text, ""]


def _profile_table(label: str, profile: dict[str, Any] | None) -> list[str]:
    if not profile:
        return []
    if "error" in profile:
        return [f"_The {label} profile could not be taken: {profile['error']}_", ""]
    out = [f"**Profile: {profile['title']}** ({profile['tool']}; {profile['samples']} samples).", ""]
    out += ["| Share | Where the time goes |", "|---|---|"]
    out += [f"| {row['share'] * 100:.0f}% | {row['what']} |" for row in profile["top"]]
    if profile.get("by_process"):
        shares = ", ".join(f"{row['what']} {row['share'] * 100:.0f}%" for row in profile["by_process"])
        out += ["", f"CPU samples by process over the whole run: {shares}."]
    return [*out, ""]


def explain(doc: dict[str, Any]) -> list[str]:
    sections, goals = doc["sections"], doc["goals"]
    lines: list[str] = []
    overhead = sections["cosmos_overhead"]
    if "modes" in overhead:
        lines += _overhead(overhead, goals, doc["machine"]["cpu_count"])
        task_profile = overhead.get("profile")
        lines += _profile_table("task", task_profile)
        notes = _task_profile_notes(task_profile if task_profile and "top" in task_profile else None)
        if notes:
            lines += [" ".join(notes), ""]
    parse = sections["parse_time"]
    if "files" in parse:
        lines += _profile_table("DAG-file parse", parse.get("profile"))
    if "points" in sections["scaling"]:
        lines += _scaling(sections["scaling"], goals)
    if "ratio_to_psql" in sections["load_throughput"]:
        lines += _load(sections["load_throughput"], goals)
    return lines
