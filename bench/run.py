"""Run the benchmarks and write the results.

    python -m bench.run            # full (~35 min): bench/results/summary.json, bench/RESULTS.md, bench/*.png
    python -m bench.run --quick    # same code, fewer and smaller runs (~5 min), under bench/results/runs/quick/
    python -m bench.run --smoke    # every section once at the smallest size (the CI smoke test)
    python -m bench.run --only cosmos_overhead --modes producer --into bench/results/summary.json
                                   # re-measure part of the committed results and re-render its page

The raw results (every pair, task and sample) go to ``latest.json`` beside the page; those of the committed full
run to the git-ignored ``bench/results/runs/full-<start>.json``.

Everything runs against a throwaway warehouse and Airflow in a temporary directory; the developer's ``.local``
is not touched. A section that fails is recorded as ``{"error": ...}``, the others still run, and the command
exits 1. Timing goals are reported, never enforced.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cosmos_overhead, load_throughput, parse_time, report, scaling
from bench.machine import git_facts, machine_facts, now_utc, versions
from bench.measure import BenchError, log, ratio
from bench.sizes import FULL, MODES, QUICK, SMOKE, Size, celery_twin
from bench.stack import throwaway_stack

BENCH_DIR = Path(__file__).resolve().parent
RUNS_DIR = BENCH_DIR / "results" / "runs"  # git-ignored
SECTIONS = ("parse_time", "load_throughput", "scaling", "cosmos_overhead")
# Generated data: the loader's default history length, a fixed seed so every run measures the same rows.
SEED = "20210210"
SCHEMA_VERSION = 1
# The memory summary's peak per scale: its name, the scaling step it is read from.
SCALE_PEAKS = {"loader": "load", "dbt_full_build": "full_build", "dbt_daily_build": "incremental_daily_build"}


def default_out_dir(size: Size, only: tuple[str, ...]) -> Path:
    """The full run of every section writes the committed results; other runs go where git ignores them."""
    return BENCH_DIR if size is FULL and set(only) == set(SECTIONS) else RUNS_DIR / size.name


def _section(name: str, results: dict[str, Any], action: Callable[[], dict[str, Any]]) -> None:
    started = time.perf_counter()
    log(f"{name} ...")
    try:
        results[name] = action()
    except Exception as error:  # one broken section must not lose the others' figures
        message = str(error) if isinstance(error, BenchError) else traceback.format_exc(limit=8)
        results[name] = {"error": message}
        log(f"{name} failed: {message}")
    results[name]["section_seconds"] = round(time.perf_counter() - started, 1)
    log(f"{name} done in {results[name]['section_seconds']:.0f} s")


def _mode_figures(body: dict[str, Any]) -> dict[str, Any]:
    """A measured mode's summary, from a raw run (``{"summary": ..., "pairs": ...}``) or a kept summary."""
    return body.get("summary", body)


def memory_summary(sections: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS figures gathered by the other sections, in one place."""
    overhead = sections.get("cosmos_overhead", {})
    modes = overhead.get("modes", {}) if "error" not in overhead else {}
    modes = {mode: _mode_figures(body) for mode, body in modes.items()}
    bare = [m["peak_bare_dbt_rss_mb"] for m in modes.values()]
    summary: dict[str, Any] = {
        "dbt_task_peak_rss_mb": {mode: m["peak_task_process_rss_mb"] for mode, m in modes.items()},
        "airflow_run_peak_rss_mb": {mode: m["peak_platform_rss_mb"] for mode, m in modes.items()},
        "airflow_run_peak_by_process_kind_mb": {
            mode: m["peak_platform_by_process_kind_mb"]
            for mode, m in modes.items()
            if m.get("peak_platform_by_process_kind_mb")
        },
        "bare_dbt_peak_rss_mb": max(bare) if bare else None,
        "note": (
            "dbt task = the largest Airflow task process (the forked task runner that runs dbt in-process); "
            "Airflow run = sum of RSS over every process of the platform during the run (scheduler, executor "
            "workers, task processes, dag-processor, triggerer, api-server; pages shared by forked processes "
            "count once per process, so this is an upper bound); PostgreSQL is not included on either side."
        ),
    }
    scaling_section = sections.get("scaling", {})
    if "points" in scaling_section:
        summary["by_scale_peak_rss_mb"] = [
            {"scale": p["scale"], **{name: p[step]["peak_rss_mb"] for name, step in SCALE_PEAKS.items()}}
            for p in scaling_section["points"]
        ]
    if not modes and "by_scale_peak_rss_mb" not in summary:
        skipped = all(sections.get(name, {}).get("skipped") for name in ("cosmos_overhead", "scaling"))
        return {"error": "no section that measures memory ran", "skipped": skipped}
    return summary


# The daily DAG's run against bare dbt: the producer mode's goal is its own (issue 12); the others keep 1.3x.
RATIO_GOALS = {"producer": 1.15}


def _goal(description: str, target: float | None, measured: float, unit: str = "x") -> dict[str, Any]:
    met = None if target is None else measured <= target
    return {"description": description, "target": target, "measured": measured, "met": met, "unit": unit}


def goals(sections: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals next to what was measured (reported, never asserted)."""
    found: dict[str, Any] = {}
    overhead = sections.get("cosmos_overhead", {})
    modes = overhead.get("modes", {})
    for mode, body in modes.items():
        what = f"{overhead['dag_id']} run ({mode} mode, real scheduler) / bare dbt, median of pairs"
        # No issue sets a ratio goal on CeleryExecutor: its figure is the comparison with LocalExecutor below.
        target = RATIO_GOALS.get(mode, None if celery_twin(mode) else 1.3)
        found[f"cosmos_{mode}_vs_bare_dbt"] = _goal(what, target, _mode_figures(body)["ratio"]["median"])
        if (twin := celery_twin(mode)) in modes:
            what = (
                f"{overhead['dag_id']} run on 2 Celery workers / the same run on LocalExecutor, same machine "
                f"({twin} mode, medians; reported, no goal)"
            )
            celery_median = _mode_figures(body)["dag_run_seconds"]["median"]
            local_median = _mode_figures(modes[twin])["dag_run_seconds"]["median"]
            found[f"celery_{twin}_vs_local_executor"] = _goal(what, None, ratio(celery_median, local_median))
    if producer := overhead.get("modes", {}).get("producer"):
        s = _mode_figures(producer)
        what = f"node tasks of a green {overhead['dag_id']} run that took a worker (producer mode), per run"
        found["producer_node_tasks_on_workers"] = _goal(what, 0, s["node_tasks_on_workers_per_run"], "tasks")
        if tail := s.get("tail_after_producer_seconds"):
            what = f"{overhead['dag_id']} run's end after dbt_build's end (producer mode), median of runs"
            found["producer_tail_after_dbt_build"] = _goal(what, 3.0, tail["median"], "s")
        if lag := s.get("node_task_lag_seconds"):
            what = "node task's end after dbt finished its node (producer's timestamp → metadata DB), median per run"
            found["producer_node_task_lag_median"] = _goal(what, 1.5, lag["median"], "s")
            what = "node task's end after dbt finished its node, the slowest task of any run"
            found["producer_node_task_lag_max"] = _goal(what, 4.0, lag["max"], "s")
        if cpu := s.get("triggerer_cpu_seconds"):
            what = f"triggerer CPU per {overhead['dag_id']} run (producer mode; reported, no goal)"
            found["producer_triggerer_cpu"] = _goal(what, None, cpu["median"], "s")
        what = f"peak RSS of the whole platform during a {overhead['dag_id']} run (producer mode)"
        found["producer_platform_peak_rss"] = _goal(what, 3072, s["peak_platform_rss_mb"], "MB")
    for mode, body in overhead.get("hourly", {}).get("modes", {}).items():
        what = f"{overhead['hourly']['dag_id']} run ({mode} mode, real scheduler) / bare dbt, median of pairs"
        found[f"cosmos_{mode}_hourly_vs_bare_dbt"] = _goal(what, 1.3, _mode_figures(body)["ratio"]["median"])
    by_scale = {p["scale"]: p for p in sections.get("scaling", {}).get("points", [])}
    if 1 in by_scale and 100 in by_scale:
        what, growth = "daily incremental dbt build at scale 100 / at scale 1", by_scale[100]["growth_from_first_scale"]
        found["incremental_run_scale_100_vs_1"] = _goal(what, 2.0, growth["incremental_daily_build"])
    if "ratio_to_psql" in (load := sections.get("load_throughput", {})):
        what = f"make load --scale {load['scale']} / psql \\copy of the same rows"
        found["loader_vs_psql_copy"] = _goal(what, 2.0, load["ratio_to_psql"]["loader_generate"])
    if "files" in (parse := sections.get("parse_time", {})):
        worst = max(parse["files"], key=lambda f: f["cold_ratio_to_trivial"])
        what = (
            f"cold parse of {worst['file']} / trivial DAG file (no numeric goal: as low as the manifest allows; "
            f"rendered with {parse['render_method']})"
        )
        found["parse_ratio_to_trivial"] = _goal(what, None, worst["cold_ratio_to_trivial"])
    return found


def merge_into(kept: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """``kept`` (a committed summary) with what ``measured`` (a run of some sections or modes) measured in place of
    its figures, the goals worked out again and a note saying what was measured when. Raises ``BenchError`` when
    the two runs measured different things (another DAG or scale) or the new run failed."""
    if errors := report.section_errors(measured):
        raise BenchError(f"not merged: the run failed in {', '.join(errors)}")
    merged = json.loads(json.dumps(kept))
    new = report.summarise(measured)["sections"]
    what = []
    for name in SECTIONS:
        body = new[name]
        if body.get("skipped"):
            continue
        if name != "cosmos_overhead" or "error" in merged["sections"][name]:
            merged["sections"][name] = body
            what.append(name)
            continue
        old = merged["sections"][name]
        for key in ("dag_id", "scale", "dbt_threads", "bare_commands"):
            if old.get(key) != body.get(key):
                raise BenchError(f"not merged: {name}'s {key} differs ({old.get(key)!r} kept, {body.get(key)!r} new)")
        old["modes"].update(body["modes"])
        if body.get("hourly"):
            old.setdefault("hourly", body["hourly"])["modes"].update(body["hourly"]["modes"])
        if body.get("profile") and "error" not in body["profile"]:
            old["profile"] = body["profile"]
        old["fastest_mode"] = min(old["modes"], key=lambda m: old["modes"][m]["dag_run_seconds"]["median"])
        hourly = [f"{m} ({body['hourly']['dag_id']})" for m in (body.get("hourly") or {}).get("modes", {})]
        what.append(f"{name} ({', '.join([*body['modes'], *hourly])})")
    merged["sections"]["memory"] = memory_summary(merged["sections"])
    merged["goals"] = goals(merged["sections"])
    commit = measured["git"]["commit"][:12] + (" with uncommitted changes" if measured["git"]["dirty"] else "")
    load = ", ".join(str(x) for x in measured["machine"]["load_average_at_start"])
    merged.setdefault("notes", []).append(
        f"{measured['started_at']}: re-measured {'; '.join(what)} at commit `{commit}` in "
        f"{measured['duration_seconds'] / 60:.1f} minutes (load average {load}); every other figure is from the "
        "run in the header."
    )
    report.check(merged)
    return merged


def run(size: Size, out_dir: Path, only: tuple[str, ...], keep: bool) -> dict[str, Any]:
    started_at = now_utc()
    clock = time.perf_counter()
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "size": size.as_dict(),
        "started_at": started_at,
        "machine": machine_facts(),
        "versions": versions(),
        "git": git_facts(),
    }
    sections: dict[str, Any] = {}
    load_args = ["--seed", SEED]
    if "parse_time" in only:
        _section("parse_time", sections, lambda: parse_time.run(size, size.overhead_modes))
    stack_sections = [name for name in SECTIONS if name != "parse_time" and name in only]
    if stack_sections:
        try:
            with throwaway_stack(size.dbt_threads, keep=keep) as stack:
                if "load_throughput" in only:
                    _section("load_throughput", sections, lambda: load_throughput.run(stack, size, load_args))
                if "scaling" in only:
                    _section("scaling", sections, lambda: scaling.run(stack, size, load_args))
                if "cosmos_overhead" in only:
                    stack.reset_warehouse()
                    _section("cosmos_overhead", sections, lambda: cosmos_overhead.run(stack, size, load_args))
        except Exception as error:  # the platform itself did not start or stop
            for name in stack_sections:
                sections.setdefault(name, {"error": f"the benchmark platform failed: {error}"})
    for name in SECTIONS:
        sections.setdefault(name, {"error": "not run (--only)", "skipped": True})
    sections["memory"] = memory_summary(sections)
    document["sections"] = sections
    document["goals"] = goals(sections)
    document["finished_at"] = now_utc()
    document["duration_seconds"] = round(time.perf_counter() - clock, 1)
    # The committed run's raw dump is kept per run, so a later run never overwrites the one behind the page.
    raw = RUNS_DIR / f"full-{started_at.replace(':', '')}.json" if out_dir == BENCH_DIR else out_dir / "latest.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(document, indent=1, default=str) + "\n")
    report.check(document)
    return document


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so the throwaway platform is stopped and deleted on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    _stop_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_const", const=QUICK, dest="size", help="fewer, smaller runs")
    sizes.add_argument("--smoke", action="store_const", const=SMOKE, dest="size", help="every section once, smallest")
    parser.add_argument("--out", type=Path, help="directory for RESULTS.md, the charts and the results' files")
    parser.add_argument("--only", help=f"comma-separated sections to run ({', '.join(SECTIONS)})")
    parser.add_argument(
        "--modes",
        help=f"override the modes to measure, comma-separated ({', '.join(MODES)}; local-stock is LOCAL on Airflow's "
        "stock LocalExecutor, a -celery mode the same mode on CeleryExecutor)",
    )
    parser.add_argument("--pairs", type=int, help="override the number of (bare dbt, DAG run) pairs per mode")
    parser.add_argument("--scales", help="override the scaling section's scales, e.g. 1,100")
    parser.add_argument(
        "--dag", choices=["greenery_daily", "greenery_hourly_snapshot"], help="override the DAG the Cosmos section runs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the throwaway platform's directory for a look")
    parser.add_argument(
        "--into",
        type=Path,
        help="a kept summary (bench/results/summary.json): put what this run measured in place of its figures and "
        "re-render its page, with a note saying what was re-measured",
    )
    args = parser.parse_args(argv)
    size: Size = args.size or FULL
    if args.modes:
        modes = tuple(m.strip() for m in args.modes.split(","))
        if unknown_modes := sorted(set(modes) - set(MODES)):
            parser.error(f"unknown mode {', '.join(unknown_modes)}: choose from {', '.join(MODES)}")
        size = dataclasses.replace(size, overhead_modes=modes)
    if args.pairs:
        size = dataclasses.replace(size, overhead_pairs=args.pairs)
    if args.dag:
        size = dataclasses.replace(size, overhead_dag=args.dag)
    if args.scales:
        size = dataclasses.replace(size, scaling_scales=tuple(int(v) for v in args.scales.split(",")))
    only = tuple(s.strip() for s in args.only.split(",")) if args.only else SECTIONS
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)}: choose from {', '.join(SECTIONS)}")
    out_dir = (args.out or default_out_dir(size, only)).resolve()
    document = run(size, out_dir, only, args.keep)
    errors = report.section_errors(document)
    print(report.console_summary(document, report.write(document, out_dir)))
    if args.into and not errors:
        merged = merge_into(json.loads(args.into.read_text()), document)
        target = report.BENCH_DIR if args.into.resolve() == report.SUMMARY else args.into.resolve().parent
        print(report.console_summary(merged, report.write(merged, target)))
    if errors:
        print(f"bench: {len(errors)} section(s) failed: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
