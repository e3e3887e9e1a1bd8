"""The bench's CeleryExecutor comparison: each ``-celery`` mode against the same mode on LocalExecutor, as the goals
and RESULTS.md report it (from summaries shaped like a run's, so a wrong pairing or ratio shows)."""

from __future__ import annotations

from bench import report
from bench.run import goals
from bench.sizes import MODES, celery_twin


def _mode(run: float, queued: float, to_dbt: float | None, wait: float) -> dict:
    return {
        "dag_run_seconds": {"median": run},
        "ratio": {"median": run / 10},
        "per_task_phase_medians_seconds": {"queued_seconds": queued, "to_dbt_start_seconds": to_dbt},
        "other_task_seconds": {"median": 2.0},
        "critical_path": {"wait_seconds": wait, "run_seconds_on_workers": run / 2},
        "node_tasks_on_workers_per_run": 0,
        "peak_platform_rss_mb": 3000,
    }


def test_each_celery_mode_runs_the_same_dags_as_its_local_twin_on_celery() -> None:
    for mode, env in MODES.items():
        twin = celery_twin(mode)
        assert (env["GREENERY_EXECUTOR"] == "celery") == (twin is not None)
        if twin:
            assert env["GREENERY_COSMOS_EXECUTION_MODE"] == MODES[twin]["GREENERY_COSMOS_EXECUTION_MODE"]


def test_the_celery_run_is_reported_against_the_same_mode_on_local_executor() -> None:
    modes = {
        "producer": {"summary": _mode(50.0, 0.4, None, 8.0)},
        "local": {"summary": _mode(90.0, 1.0, 1.5, 20.0)},
        "producer-celery": {"summary": _mode(60.0, 0.9, None, 12.0)},
    }
    found = goals({"cosmos_overhead": {"dag_id": "greenery_daily", "modes": modes}})

    assert found["celery_producer_vs_local_executor"]["measured"] == 1.2
    assert found["celery_producer_vs_local_executor"]["target"] is None
    assert "celery_local_vs_local_executor" not in found  # no local-celery run to compare with
    assert found["cosmos_producer-celery_vs_bare_dbt"]["target"] is None

    table = report._celery_against_local({mode: body["summary"] for mode, body in modes.items()})
    (row,) = [line for line in table if line.startswith("| PRODUCER |")]
    assert "| 50.0 s | 60.0 s | 1.20× | 8.0 s → 12.0 s | 25.0 s → 30.0 s | 0.40 s → 0.90 s |" in row


def test_a_producer_mode_chain_is_its_steps_around_dbt_build_not_the_node_tasks_lineage() -> None:
    # Node tasks that follow dbt live start with the run, long before their upstream tasks end: the lineage's
    # "waits" would come out negative. The chain that decides the run is validate_params → dbt_build → the end.
    phases = {
        "to_first_task": 1.0,
        "validate_params": 0.5,
        "to_producer_start": 0.5,
        "dbt_commands": 6.0,
        "producer_around_dbt": 4.0,
        "tail": 2.0,
    }
    local = {**_mode(14.0, 0.4, None, -140.0), "run_phases_seconds": phases}
    celery = {**_mode(16.0, 0.9, None, -150.0), "run_phases_seconds": {**phases, "to_producer_start": 2.5}}

    table = report._celery_against_local({"producer": local, "producer-celery": celery})
    (row,) = [line for line in table if line.startswith("| PRODUCER |")]
    assert "| 14.0 s | 16.0 s | 1.14× | 3.5 s → 5.5 s | 10.5 s → 10.5 s |" in row
