"""The bench's producer-mode figures (the node tasks' lag behind dbt, the tail after dbt_build, the triggerer's
CPU) as the goals and RESULTS.md report them, and ``bench.run --into``: re-measured figures put in place of the
committed ones, with a note saying what was re-measured when (from summaries shaped like a run's)."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from bench import report
from bench.cosmos_overhead import trigger_started_at
from bench.measure import BenchError
from bench.run import SECTIONS, goals, merge_into


def _producer(ratio: float, lag_median: float, lag_max: float, tail: float) -> dict:
    kept = json.loads(report.SUMMARY.read_text())["sections"]["cosmos_overhead"]["modes"]["producer"]
    return kept | {
        "ratio": {"median": ratio, "min": ratio, "max": ratio, "n": 3},
        "dag_run_seconds": {"median": 30.0, "min": 29.0, "max": 31.0, "n": 3},
        "tail_after_producer_seconds": {"median": tail, "min": tail, "max": tail, "n": 3},
        "node_task_lag_seconds": {"median": lag_median, "max": lag_max, "per_run": [], "slowest": None},
        "triggerer_cpu_seconds": {"median": 6.5, "min": 6.0, "max": 7.0, "n": 3},
        "run_phases_seconds": {
            "to_first_task": 1.0,
            "validate_params": 3.0,
            "to_producer_start": 1.5,
            "dbt_commands": 20.0,
            "producer_around_dbt": 3.0,
            "tail": tail,
        },
    }


def test_the_producer_goals_are_the_issues_and_read_its_figures() -> None:
    modes = {"producer": _producer(1.12, 0.9, 4.5, 1.8)}
    found = goals({"cosmos_overhead": {"dag_id": "greenery_daily", "modes": modes}})
    assert (found["cosmos_producer_vs_bare_dbt"]["target"], found["cosmos_producer_vs_bare_dbt"]["met"]) == (1.15, True)
    assert found["producer_node_task_lag_median"] | {"description": ""} == {
        "description": "",
        "target": 1.5,
        "measured": 0.9,
        "met": True,
        "unit": "s",
    }
    assert found["producer_node_task_lag_max"]["met"] is False  # 4.5 s against 4 s
    assert found["producer_tail_after_dbt_build"]["measured"] == 1.8
    assert found["producer_triggerer_cpu"]["target"] is None and found["producer_triggerer_cpu"]["measured"] == 6.5
    assert found["producer_platform_peak_rss"]["target"] == 3072


def test_the_page_shows_the_lag_the_tail_and_where_the_run_goes() -> None:
    body = {"dag_id": "greenery_daily", "modes": {"producer": _producer(1.12, 0.9, 3.2, 1.8)}}
    lines = report._producer_against_dbt(body)
    (row,) = [line for line in lines if line.startswith("| PRODUCER |")]
    assert row.startswith("| PRODUCER | 1.80 s (1.80 s – 1.80 s) | 0.90 s | 3.20 s | 6.5 s (6.0 s – 7.0 s) |")
    assert any(line.startswith("| `dbt_build`: dbt's commands") and "20.00 s" in line for line in lines)
    assert report._producer_against_dbt({"dag_id": "greenery_daily", "modes": {"local": {"ratio": {}}}}) == []


def _measured(kept: dict, producer: dict, started_at: str = "2026-12-06T10:00:00+00:00") -> dict:
    """A run of the Cosmos section in the producer mode only, as ``bench.run --only cosmos_overhead`` makes it."""
    measured = copy.deepcopy(kept) | {"started_at": started_at, "duration_seconds": 600.0}
    measured["sections"] = {name: {"error": "not run (--only)", "skipped": True} for name in SECTIONS}
    overhead = copy.deepcopy(kept["sections"]["cosmos_overhead"])
    overhead["modes"] = {"producer": producer}
    overhead["hourly"]["modes"] = {"producer": producer | {"ratio": {"median": 1.25, "min": 1.2, "max": 1.3, "n": 3}}}
    measured["sections"]["cosmos_overhead"] = overhead
    return measured


def test_re_measured_figures_replace_the_kept_ones_and_the_page_says_so() -> None:
    kept = json.loads(report.SUMMARY.read_text())
    merged = merge_into(kept, _measured(kept, _producer(1.12, 0.9, 3.2, 1.8)))
    modes = merged["sections"]["cosmos_overhead"]["modes"]
    assert modes["producer"]["ratio"]["median"] == 1.12
    assert modes["local"] == kept["sections"]["cosmos_overhead"]["modes"]["local"]  # not re-measured: kept
    assert merged["sections"]["scaling"] == kept["sections"]["scaling"]
    assert merged["goals"]["cosmos_producer_vs_bare_dbt"]["measured"] == 1.12
    assert merged["goals"]["cosmos_producer_hourly_vs_bare_dbt"]["measured"] == 1.25
    assert merged["started_at"] == kept["started_at"]  # the header still describes the full run
    *earlier, note = merged["notes"]
    assert earlier == kept.get("notes", [])  # what the committed page noted already stays
    assert note.startswith("2026-12-06T10:00:00+00:00: re-measured cosmos_overhead (producer, producer ")
    assert "every other figure is from the run in the header" in note
    page = report.render(merged, report.BENCH_DIR, set())
    assert "## Notes on this run" in page and "| PRODUCER | 1.80 s" in page


def test_figures_of_another_workload_are_never_merged() -> None:
    kept = json.loads(report.SUMMARY.read_text())
    measured = _measured(kept, _producer(1.12, 0.9, 3.2, 1.8))
    measured["sections"]["cosmos_overhead"]["scale"] = 1
    with pytest.raises(BenchError, match="scale differs"):
        merge_into(kept, measured)
    measured = _measured(kept, _producer(1.12, 0.9, 3.2, 1.8))
    measured["sections"]["cosmos_overhead"] = {"error": "Airflow did not start"}
    with pytest.raises(BenchError, match="the run failed in cosmos_overhead"):
        merge_into(kept, measured)


def test_the_memory_table_shows_where_the_platforms_peak_is_by_kind_of_process() -> None:
    body = {
        "dbt_task_peak_rss_mb": {"producer": 288.0},
        "airflow_run_peak_rss_mb": {"producer": 3186.0, "local": 3571.0},
        "airflow_run_peak_by_process_kind_mb": {"producer": {"triggerer": 679.9, "scheduler": 240.3}},
        "bare_dbt_peak_rss_mb": 158.0,
    }
    lines = report._memory(body)
    assert "| triggerer | 680 MB |" in lines and "| scheduler | 240 MB |" in lines
    assert "| Process | PRODUCER |" in lines
    assert not [
        line for line in report._memory({**body, "airflow_run_peak_by_process_kind_mb": {}}) if "Process |" in line
    ]


def test_a_slow_first_result_is_split_into_the_wait_for_its_trigger_and_the_rest() -> None:
    ended = dt.datetime(2026, 12, 5, 12, 0, 10, tzinfo=dt.UTC)
    task = {"end_date": ended, "seconds": 9.0, "trigger_phases": {"pickup_seconds": 4.0}}  # deferred at 12:00:01
    assert trigger_started_at(task) == ended.timestamp() - 5.0
    assert trigger_started_at({**task, "trigger_phases": {"pickup_seconds": None}}) is None

    s = _producer(1.0, 1.0, 5.9, 2.0)
    s["node_task_lag_seconds"]["slowest"] = {
        "task_id": "source_freshness",
        "seconds": 5.94,
        "before_its_trigger_started_seconds": 4.5,
    }
    s |= {
        "dag_dbt_work_seconds": 6.0,
        "bare_dbt_work_seconds": 5.0,
        "last_trigger_started_seconds": {"median": 7.2, "min": 6.0, "max": 8.1, "n": 3},
        "first_result_seconds": {"median": 3.1, "min": 3.0, "max": 3.3, "n": 3},
    }
    text = report._producer_limits("producer", s, None, 21.0)
    assert "The slowest lag is `source_freshness`'s: 4.50 s of its 5.94 s passed before the triggerer" in text
    assert "first result 3.1 s after the run was queued, and the triggerer started the last of the run's" in text
    assert "triggers 7.2 s after it" in text
