"""How the benchmark reads dbt's timings out of dbt's console output and a Cosmos task's log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from bench.task_logs import parse_dbt_output, read_task_log

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


def test_a_missing_log_gives_no_phases(tmp_path: Path):
    phases = read_task_log(tmp_path / "absent.log", started=None, ended=None)

    assert phases.to_dbt_start_seconds is None
    assert phases.dbt.nodes == 0
