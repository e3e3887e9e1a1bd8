"""The benchmark's code path, run in CI so it cannot rot: ``python -m bench.run --smoke`` runs every section once
at the smallest size — parse time, load throughput, scaling at scale 1, and the Cosmos comparison with Airflow's
real scheduler (on the four-task ``greenery_hourly_snapshot`` instead of the 70-task daily DAG, to stay short) —
and must write raw results of the documented shape, their compact summary and the page. Times are never asserted
here; ``make bench`` reports them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import SUMMARY, check, section_errors
from include import settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=settings.REPO_ROOT,
        env=os.environ.copy(),  # bench.run strips AIRFLOW_*/PG*/GREENERY_* itself and builds its own platform
        capture_output=True,
        text=True,
        timeout=1500,
    )
    return result, out


@pytest.mark.timeout(1600)
def test_smoke_run_succeeds_and_writes_every_section(smoke_run):
    result, out = smoke_run
    assert result.returncode == 0, f"bench.run --smoke failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    document = json.loads((out / "latest.json").read_text())
    summary = json.loads((out / "summary.json").read_text())

    check(document)
    assert section_errors(document) == {}
    assert document["size"]["name"] == "smoke"
    assert summary["goals"] == document["goals"]
    assert "pairs" not in summary["sections"]["cosmos_overhead"]["modes"]["producer"], "the summary kept the raw pairs"


def test_the_committed_summary_passes_and_a_missing_or_failed_section_does_not():
    summary = json.loads(SUMMARY.read_text())
    check(summary)

    summary["sections"]["scaling"] = {"error": "dbt build failed"}
    assert section_errors(summary) == {"scaling": "dbt build failed"}
    del summary["sections"]["scaling"]
    with pytest.raises(ValueError, match=r"lack sections\.scaling"):
        check(summary)


def test_every_dag_file_is_parsed_against_the_trivial_one(smoke_run):
    _, out = smoke_run
    parse = json.loads((out / "latest.json").read_text())["sections"]["parse_time"]

    dag_files = {str(p.relative_to(settings.REPO_ROOT)) for p in (settings.REPO_ROOT / "dags").glob("[!_]*.py")}
    assert {f["file"] for f in parse["files"]} == dag_files
    assert parse["trivial"]["dags"] == {"bench_trivial": 1}


def test_the_airflow_side_ran_on_the_real_scheduler_and_was_split_into_tasks(smoke_run):
    _, out = smoke_run
    overhead = json.loads((out / "latest.json").read_text())["sections"]["cosmos_overhead"]

    run = overhead["modes"]["producer"]["pairs"][0]["dag"]
    assert run["state"] == "success"
    tasks = {t["task_id"]: t for t in run["tasks"]}
    assert set(tasks) >= {"snapshots.orders_snapshot.snapshot", "snapshots.products_snapshot.snapshot", "dbt_build"}
    assert tasks["dbt_build"]["phases"]["dbt"]["nodes"] >= 1, "dbt's node lines were not found in dbt_build's log"
    assert run["node_tasks_on_workers"] == []
    assert run["memory"]["peak_task_process_rss_mb"] > 0
    # The producer mode's own figures: each node task's lag behind dbt, the tail, the triggerer's CPU.
    assert run["producer"]["lag_seconds"]["n"] == 4 and run["producer"]["tail_after_producer_seconds"] >= 0
    assert run["triggerer_cpu_seconds"] > 0
    summary = overhead["modes"]["producer"]["summary"]
    assert summary["node_task_lag_seconds"]["max"] >= summary["node_task_lag_seconds"]["median"]


def test_results_page_and_charts_are_written(smoke_run):
    _, out = smoke_run
    page = (out / "RESULTS.md").read_text()

    headings = ("## Summary", "## Default execution mode", "## 1. DAG parse time", "## 2. Cosmos overhead")
    for heading in (*headings, "## 3. Scaling", "## 4. Load"):
        assert heading in page
    assert "real scheduler" in page
    for chart in ("parse_time.png", "cosmos_overhead.png", "load_throughput.png"):
        assert (out / chart).read_bytes().startswith(PNG_MAGIC), chart
