"""Section 3: how loading, a full ``dbt build`` and the daily incremental run grow with the data volume.

For each scale, on an emptied warehouse: load the generated history up to yesterday (``make load``), run the
first full ``dbt build``, add the next day of activity, then run the daily build for that day's window (the
dbt work of one ``greenery_daily`` run: views and table marts rebuilt, incremental models merge one day).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bench.measure import BenchError, log, ratio
from bench.sizes import Size
from bench.stack import Stack
from bench.task_logs import parse_dbt_output

# Each figure's growth from the first scale: its name, and where a point keeps it.
GROWTH = {
    "load": ("load", "seconds"),
    "full_build": ("full_build", "seconds"),
    "incremental_daily_build": ("incremental_daily_build", "seconds"),
    "incremental_models": ("incremental_daily_build", "incremental_models_seconds"),
}


def _node_seconds(stack: Stack) -> dict[str, Any]:
    """Per-kind node time of the last dbt command, from its run_results.json and manifest.json."""
    results = stack.run_results()
    manifest = json.loads((stack.dbt_target_dir / "manifest.json").read_text())
    nodes = manifest.get("nodes", {})
    totals = {"incremental_models": 0.0, "other_models": 0.0, "tests": 0.0, "other": 0.0}
    for result in results["results"]:
        node = nodes.get(result["unique_id"], {})
        kind = node.get("resource_type", "")
        if kind == "model":
            incremental = node.get("config", {}).get("materialized") == "incremental"
            key = "incremental_models" if incremental else "other_models"
        elif kind in ("test", "unit_test"):
            key = "tests"
        else:
            key = "other"
        totals[key] += result.get("execution_time") or 0.0
    return {
        "elapsed_seconds": round(results.get("elapsed_time", 0.0), 3),
        **{f"{k}_seconds": round(v, 3) for k, v in totals.items()},
        "nodes": len(results["results"]),
        "failed": sum(1 for r in results["results"] if r.get("status") in ("error", "fail")),
    }


def _raw_counts(stack: Stack) -> dict[str, int]:
    rows = stack.query(
        "select 'orders', count(*) from raw.orders union all select 'events', count(*) from raw.events "
        "union all select 'users', count(*) from raw.users"
    )
    return {name: count for name, count in rows}


def _dbt_build(stack: Stack, *args: str) -> dict[str, Any]:
    result = stack.dbt("build", *args)
    timing = parse_dbt_output(result.stdout.splitlines())
    if result.returncode != 0:
        failed = [line for line in result.stdout.splitlines() if " ERROR " in line or " FAIL " in line]
        raise BenchError(f"dbt build {' '.join(args)} failed:\n" + "\n".join(failed[-20:] or [result.stdout[-3000:]]))
    return {
        "seconds": round(result.seconds, 3),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "full_parse": timing.full_parse,
        **_node_seconds(stack),
    }


def measure_scale(stack: Stack, scale: float, load_args: list[str]) -> dict[str, Any]:
    stack.reset_warehouse()
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    history_end = now - dt.timedelta(days=1)
    load = stack.greenery_data("load", "--scale", str(scale), "--end", history_end.isoformat(), *load_args)
    load.check(f"loading scale {scale}")
    counts = _raw_counts(stack)
    full_build = _dbt_build(stack)

    new_day = stack.greenery_data("append", "--scale", str(scale), "--days", "1", "--end", now.isoformat(), *load_args)
    new_day.check("adding one day of data")
    window = {"start_date": history_end.isoformat(), "end_date": now.isoformat()}
    daily = _dbt_build(stack, "--vars", json.dumps(window))
    log(
        f"scaling: scale {scale:g}: load {load.seconds:.0f} s, full build {full_build['seconds']:.0f} s, "
        f"daily build {daily['seconds']:.0f} s"
    )
    return {
        "scale": scale,
        "raw_rows": counts,
        "load": {"seconds": round(load.seconds, 3), "peak_rss_mb": round(load.peak_tree_rss_mb, 1)},
        "full_build": full_build,
        "new_day": {"method": "python -m include.greenery_data append --days 1", "seconds": round(new_day.seconds, 3)},
        "incremental_daily_build": daily,
    }


def run(stack: Stack, size: Size, load_args: list[str]) -> dict[str, Any]:
    points = [measure_scale(stack, scale, load_args) for scale in size.scaling_scales]
    for point in points:
        point["growth_from_first_scale"] = {
            name: ratio(point[step][key], points[0][step][key]) for name, (step, key) in GROWTH.items()
        }
    return {"dbt_threads": size.dbt_threads, "points": points}
