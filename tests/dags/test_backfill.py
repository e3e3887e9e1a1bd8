"""``make backfill FROM=... TO=...``: the UTC days a person names become the runs that process exactly those
days, and input that would not do so ends in one message, with nothing created.

The tests of refusals run the real command; where it would ask Airflow, the answer of ``airflow dags list-runs``
is given instead (the real platform answers in tests/e2e/test_platform.py).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pendulum
import pytest

from include.dbt_tasks import backfill
from include.dbt_tasks.backfill import BackfillPlan, BackfillRefused, plan_backfill
from include.dbt_tasks.params import resolve_window
from include.dbt_tasks.steps import daily_schedule
from tests.conftest import REPO_ROOT

NOW = dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.UTC)
DEFAULTS = {"full_refresh": False, "start_date": None, "end_date": None}


def _windows(from_date: dt.datetime, to_date: dt.datetime) -> list[tuple[str, str, str]]:
    """(logical date, dbt window start, end) of each run ``airflow backfill create --from-date --to-date`` makes:
    the runs Airflow's backfill iterates over the DAG's schedule, each resolved as its ``validate_params`` would."""
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("backfill_days", schedule=daily_schedule(), start_date=pendulum.datetime(2021, 1, 1, tz="UTC")) as dag:
        pass
    runs = DagSerialization.from_dict(DagSerialization.to_dict(dag)).iter_dagrun_infos_between(from_date, to_date)
    windows = []
    for run in runs:
        window = resolve_window({}, DEFAULTS, run.data_interval.start, run.data_interval.end)
        windows.append((run.logical_date.isoformat(), window.start.isoformat(), window.end.isoformat()))
    return windows


def test_three_named_days_become_the_three_runs_that_process_exactly_those_days() -> None:
    plan = plan_backfill(dt.date(2026, 11, 28), dt.date(2026, 11, 30), NOW, hour=6)

    assert (plan.from_date.isoformat(), plan.to_date.isoformat()) == (
        "2026-11-29T06:00:00+00:00",
        "2026-12-01T06:00:00+00:00",
    )
    assert _windows(plan.from_date, plan.to_date) == [
        ("2026-11-28T06:00:00+00:00", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00"),
        ("2026-11-29T06:00:00+00:00", "2026-11-29T00:00:00+00:00", "2026-11-30T00:00:00+00:00"),
        ("2026-11-30T06:00:00+00:00", "2026-11-30T00:00:00+00:00", "2026-12-01T00:00:00+00:00"),
    ]


def test_the_plain_cli_with_the_same_dates_would_process_other_days() -> None:
    # What issue #16 measured: `airflow backfill create --from-date 2026-11-28 --to-date 2026-11-30`.
    plain = _windows(dt.datetime(2026, 11, 28, tzinfo=dt.UTC), dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    assert [window[1][:10] for window in plain] == ["2026-11-27", "2026-11-28"]


def test_the_backfill_runs_one_at_a_time_and_reprocesses_days_that_already_ran() -> None:
    args = plan_backfill(dt.date(2026, 11, 28), dt.date(2026, 11, 28), NOW, hour=6).airflow_args()
    assert args == [
        *("backfill", "create", "--dag-id", "greenery_daily"),
        *("--from-date", "2026-11-29T06:00:00+00:00", "--to-date", "2026-11-29T06:00:00+00:00"),
        *("--max-active-runs", "1", "--reprocess-behavior", "completed"),
    ]


def test_the_daily_hour_moves_the_runs_not_the_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENERY_DAILY_HOUR", "0")
    plan = plan_backfill(dt.date(2026, 11, 28), dt.date(2026, 11, 29), NOW)
    assert plan.from_date == dt.datetime(2026, 11, 29, 0, tzinfo=dt.UTC)
    assert [window[1] for window in _windows(plan.from_date, plan.to_date)] == [
        "2026-11-28T00:00:00+00:00",
        "2026-11-29T00:00:00+00:00",
    ]


def test_a_day_whose_run_is_not_due_yet_is_refused() -> None:
    # At 22:00 on December 1, yesterday's run (today 06:00) is due; today's (tomorrow 06:00) is not.
    assert plan_backfill(dt.date(2026, 11, 30), dt.date(2026, 11, 30), NOW, hour=6).days == [dt.date(2026, 11, 30)]
    with pytest.raises(BackfillRefused, match="2026-12-01 is processed by the run due 2026-12-02T06:00:00"):
        plan_backfill(dt.date(2026, 11, 30), dt.date(2026, 12, 1), NOW, hour=6)


def test_unfinished_runs_are_read_from_the_list_of_runs() -> None:
    listed = json.dumps(
        [
            {"run_id": "scheduled__2026-12-01T06:00:00+00:00", "state": "running"},
            {"run_id": "backfill__2026-11-29T06:00:00+00:00", "state": "queued"},
            {"run_id": "scheduled__2026-11-30T06:00:00+00:00", "state": "success"},
        ]
    )
    airflow_log = "2026-12-01T23:40:00Z [warning  ] section/key [openlineage/namespace] not found in config\n"
    assert backfill.unfinished_runs(airflow_log + "[info] starting\n" + listed) == [
        "scheduled__2026-12-01T06:00:00+00:00 (running)",
        "backfill__2026-11-29T06:00:00+00:00 (queued)",
    ]
    assert backfill.unfinished_runs("[]") == []
    assert backfill.unfinished_runs("No data found\n") == []


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "include.dbt_tasks.backfill", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-11-30", "2026-11-28", "TO=2026-11-28 is before FROM=2026-11-30: FROM is the first day to reprocess"),
        ("2026-11-31", "2026-12-01", "FROM='2026-11-31' is not a date of the calendar."),
        ("28.11.2026", "2026-11-30", "FROM='28.11.2026' is not a date: write it as YYYY-MM-DD"),
        ("2026-11-28", "", "TO='' is not a date: write it as YYYY-MM-DD"),
        ("2026-11-28", "2999-01-01", "2999-01-01 is processed by the run due 2999-01-02T06:00:00+00:00, which has not"),
    ],
    ids=["end-before-start", "no-such-day", "not-iso", "missing", "future"],
)
def test_bad_days_end_in_one_message_and_a_non_zero_exit(first: str, last: str, message: str) -> None:
    result = _command("--from", first, "--to", last)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Backfill refused: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""  # refused before a plan was printed or Airflow asked


def test_a_backfill_next_to_an_unfinished_run_is_refused_and_nothing_is_created(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls: list[tuple[str, ...]] = []
    running = json.dumps([{"run_id": "scheduled__2026-12-01T06:00:00+00:00", "state": "running"}])

    def airflow(*args: str) -> subprocess.CompletedProcess:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout=running, stderr="")

    monkeypatch.setattr(backfill, "_airflow", airflow)

    assert backfill.main(["--from", "2026-11-01", "--to", "2026-11-02"]) == 1

    assert calls == [("dags", "list-runs", "greenery_daily", "-o", "json")]  # never `backfill create`
    error = capsys.readouterr().err
    assert error.startswith(
        "Backfill refused: greenery_daily has runs that have not finished: scheduled__2026-12-01T06:00:00+00:00 "
        "(running). Wait until they end"
    )


def test_airflow_refusing_a_second_backfill_is_one_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def airflow(*args: str) -> subprocess.CompletedProcess:
        if args[0] == "dags":
            return subprocess.CompletedProcess(args, 0, stdout="[]", stderr="")
        trace = "Traceback ...\nairflow.models.backfill.AlreadyRunningBackfill: Another backfill is running for Dag"
        return subprocess.CompletedProcess(args, 1, stdout="", stderr=trace)

    monkeypatch.setattr(backfill, "_airflow", airflow)

    assert backfill.main(["--from", "2026-11-01", "--to", "2026-11-02"]) == 1
    assert capsys.readouterr().err == (
        "Backfill refused: Another backfill of greenery_daily has not finished: wait for it, then run this again.\n"
    )


def test_the_plan_says_which_days_and_runs() -> None:
    plan = BackfillPlan(dt.date(2026, 11, 28), dt.date(2026, 11, 30), 6)
    assert plan.describe() == (
        "greenery_daily: reprocessing 2026-11-28 to 2026-11-30 (3 days, UTC, one run at a time, oldest first): "
        "the runs due 2026-11-29T06:00:00+00:00 to 2026-12-01T06:00:00+00:00"
    )
