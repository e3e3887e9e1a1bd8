"""How the benchmark reads dbt's timings out of dbt's console output and a Cosmos task's log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from bench.cosmos_overhead import critical_path
from bench.task_logs import parse_dbt_output, read_task_log, read_trigger_log

DBT_OUTPUT = """\
\x1b[0m09:00:01  Running with dbt=1.11.16
\x1b[0m09:00:01  Unable to do partial parsing because config vars, config profile, or config target have changed
\x1b[0m09:00:13  Found 18 models, 106 data tests, 2 snapshots, 7 sources
\x1b[0m09:00:14  1 of 3 START sql view model analytics_staging.stg_greenery__orders ..... [RUN]
\x1b[0m09:00:14  1 of 3 OK created sql view model stg_greenery__orders [\x1b[32mCREATE VIEW\x1b[0m in 0.32s]
\x1b[0m09:00:14  2 of 3 PASS not_null_stg_greenery__orders_order_id ..... [\x1b[32mPASS\x1b[0m in 0.05s]
\x1b[0m09:00:14  3 of 3 WARN 2 accepted_values_stg_greenery__orders_status ..... [\x1b[33mWARN 2\x1b[0m in 0.10s]
\x1b[0m09:00:14  1 of 1 OK hook: greenery.on-run-end.0 ..... [\x1b[32mOK\x1b[0m in 0.05s]
\x1b[0m09:00:14  Finished running 1 view model, 2 data tests in 0 hours 0 minutes and 0.81 seconds (0.81s).
\x1b[0m09:00:14  Done. PASS=1 WARN=1 ERROR=0 SKIP=0 NO-OP=0 TOTAL=3
"""


def test_dbt_output_gives_node_time_hooks_elapsed_and_full_parse():
    timing = parse_dbt_output(DBT_OUTPUT.splitlines())

    assert timing.nodes == 3
    assert timing.node_seconds == 0.47
    assert timing.hook_seconds == 0.05
    assert timing.elapsed_seconds == 0.81
    assert timing.full_parse is True
    assert timing.node_results == {"OK": 1, "PASS": 1, "WARN": 1}


def test_output_without_a_reparse_or_nodes_reads_as_such():
    timing = parse_dbt_output(["09:00:01  Running with dbt=1.11.16", "09:00:02  Nothing to do."])

    assert (timing.nodes, timing.node_seconds, timing.full_parse, timing.elapsed_seconds) == (0, 0.0, False, None)


def _record(moment: dt.datetime, event: str, logger: str, **extra) -> str:
    stamp = moment.isoformat().replace("+00:00", "Z")
    return json.dumps({"timestamp": stamp, "level": "info", "event": event, "logger": logger, **extra})


def test_task_log_is_split_into_phases(tmp_path: Path):
    t0 = dt.datetime(2026, 1, 1, 9, 0, 0, tzinfo=dt.UTC)
    at = lambda seconds: t0 + dt.timedelta(seconds=seconds)  # noqa: E731
    lines = [
        _record(at(1), "Worker startup parse complete", "task", dag_file_parse_ms=250),
        _record(at(4), "Trying to run dbtRunner with:\n ['run', '--select', 'x']", "cosmos.dbt.runner"),
        *(_record(at(5 + i), line, "task.stdout") for i, line in enumerate(DBT_OUTPUT.splitlines())),
    ]
    log = tmp_path / "attempt=1.log"
    log.write_text("\n".join(lines) + "\n\n")

    phases = read_task_log(log, started=t0, ended=at(20))

    assert phases.dag_file_parse_seconds == 0.25
    assert phases.to_dbt_start_seconds == 4.0
    assert phases.dbt_parse_seconds == 3.0  # Cosmos calls dbt at 4 s; dbt prints "Found ..." at 7 s
    assert phases.dbt_seconds == 10.0  # dbt's last line at 14 s
    assert phases.after_dbt_seconds == 6.0
    assert phases.dbt.node_seconds == 0.47


@pytest.mark.parametrize(
    ("loaded", "full_parse"),
    [
        ("dbt project loaded (nothing had changed since its last parse on this machine).", False),
        ("dbt project loaded (parsed in full: saved manifest not found. Starting full parse).", True),
    ],
)
def test_a_task_that_loads_the_kept_parse_starts_dbt_at_its_own_line(tmp_path: Path, loaded, full_parse):
    t0 = dt.datetime(2026, 1, 1, 9, 0, 0, tzinfo=dt.UTC)
    at = lambda seconds: t0 + dt.timedelta(seconds=seconds)  # noqa: E731
    logger = "include.dbt_tasks.parsed_project"
    # dbt itself is silent about the parse now: the task's own line says how the project was loaded.
    output = [line for line in DBT_OUTPUT.splitlines() if "partial parsing" not in line]
    lines = [
        _record(at(2), "Starting dbt run --select x --vars {}", logger),
        _record(at(3), loaded, logger),
        *(_record(at(4 + i), line, "task.stdout") for i, line in enumerate(output)),
    ]
    log = tmp_path / "attempt=1.log"
    log.write_text("\n".join(lines) + "\n")

    phases = read_task_log(log, started=t0, ended=at(20))

    assert phases.to_dbt_start_seconds == 2.0
    assert phases.dbt.full_parse is full_parse


def test_a_missing_log_gives_no_phases(tmp_path: Path):
    phases = read_task_log(tmp_path / "absent.log", started=None, ended=None)

    assert phases.to_dbt_start_seconds is None
    assert phases.dbt.nodes == 0


def test_a_node_task_in_the_triggerer_is_split_into_pickup_trigger_and_write_back(tmp_path: Path):
    t0 = dt.datetime(2026, 1, 1, 9, 0, 0, tzinfo=dt.UTC)
    at = lambda seconds: t0 + dt.timedelta(seconds=seconds)  # noqa: E731
    log = tmp_path / "attempt=1.log.trigger.7.log"
    log.write_text(
        "\n".join(
            [
                _record(at(2.5), "trigger greenery_daily/r/models.a.run/-1/1 (ID 4) starting", "triggerer"),
                _record(at(2.75), "dbt success a in 0.30 s", "follower"),
                _record(at(3), "Trigger fired event", "triggerer"),
                _record(at(3.01), "trigger completed", "triggerer"),
            ]
        )
    )

    assert read_trigger_log(log, started=t0, ended=at(4)) == {
        "pickup_seconds": 2.5,
        "trigger_seconds": 0.5,
        "write_back_seconds": 1.0,
    }
    assert read_trigger_log(tmp_path / "absent.log", t0, at(4))["pickup_seconds"] is None


def test_the_critical_path_follows_the_upstream_task_that_ended_last():
    tasks = [
        {"task_id": "validate", "on_worker": True, "start_offset": 1.0, "end_offset": 3.0},
        {"task_id": "a", "on_worker": False, "start_offset": 3.5, "end_offset": 6.0},
        {"task_id": "b", "on_worker": False, "start_offset": 3.5, "end_offset": 9.0},
        {"task_id": "c", "on_worker": False, "start_offset": 9.5, "end_offset": 12.0},
        {"task_id": "never_ran", "on_worker": False},
    ]
    upstream = {"validate": [], "a": ["validate"], "b": ["validate"], "c": ["a", "b", "never_ran"]}

    path = critical_path(tasks, upstream)

    assert [step["task_id"] for step in path["steps"]] == ["validate", "b", "c"]
    assert [step["wait_seconds"] for step in path["steps"]] == [1.0, 0.5, 0.5]
    assert path["tasks_in_triggerer"] == 2 and path["run_seconds_in_triggerer"] == 8.0
    assert path["run_seconds_on_workers"] == 2.0 and path["wait_seconds"] == 2.0
    assert critical_path([], upstream) == {"steps": []}
