"""Reprocess chosen UTC days of ``greenery_daily``: ``make backfill FROM=2026-11-28 TO=2026-11-30``.

Airflow bounds a backfill by when its runs are due, not by the days they process. The run of ``greenery_daily``
due at D+1 06:00 (``GREENERY_DAILY_HOUR``) has the data interval [D 06:00, D+1 06:00), logical date D 06:00, and
processes the UTC day that ended in that interval, day D (``params.resolve_window``); ``airflow backfill create
--from-date A --to-date B`` creates the runs due between A 00:00 and B 00:00, which process A-1 to B-2. This
command turns the days a person names, both included, into the bounds that create exactly their runs, refuses
what would not process exactly those days, and creates the backfill with the ``airflow`` CLI:

- one run at a time (``--max-active-runs 1``): a backfill's own limit, 10 unless given, overrides the DAG's
  ``max_active_runs``, and two runs rebuilding the same dbt views at once break each other;
- days that already ran are run again (``--reprocess-behavior completed``), oldest first.

It refuses, with one message and nothing created: a malformed date, an end before the start, a day whose run
is not due yet, and any run of ``greenery_daily`` still queued or running (a scheduled run, a manual one, or
another backfill): Airflow counts a backfill's runs apart from the others, so they would run at the same time.

It drives the airflow CLI of the environment it runs in; ``make backfill`` sources ``.local/airflow.env``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from include import settings
from include.settings import ConfigurationError

DAG_ID = "greenery_daily"
UNFINISHED = ("queued", "running")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class BackfillRefused(ValueError):
    """The backfill cannot be created as asked; the message says why and what to do."""


@dataclass(frozen=True)
class BackfillPlan:
    """The days to reprocess and when the runs that process them are due."""

    first: dt.date
    last: dt.date
    hour: int

    @property
    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def run_after(self, day: dt.date) -> dt.datetime:
        """When the run that processes ``day`` is due: the next morning at the daily hour."""
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(self.hour), tzinfo=dt.UTC)

    @property
    def from_date(self) -> dt.datetime:
        return self.run_after(self.first)

    @property
    def to_date(self) -> dt.datetime:
        return self.run_after(self.last)

    def airflow_args(self, dry_run: bool = False) -> list[str]:
        """``airflow backfill create`` for exactly these runs."""
        return [
            *("backfill", "create", "--dag-id", DAG_ID),
            *("--from-date", self.from_date.isoformat(), "--to-date", self.to_date.isoformat()),
            *("--max-active-runs", "1", "--reprocess-behavior", "completed"),
            *(["--dry-run"] if dry_run else []),
        ]

    def describe(self) -> str:
        count = len(self.days)
        days = self.first.isoformat() if count == 1 else f"{self.first.isoformat()} to {self.last.isoformat()}"
        return (
            f"{DAG_ID}: reprocessing {days} ({count} day{'' if count == 1 else 's'}, UTC, one run at a time, "
            f"oldest first): the runs due {self.from_date.isoformat()} to {self.to_date.isoformat()}"
        )


def parse_day(name: str, text: str) -> dt.date:
    if not _DAY.fullmatch(text or ""):
        raise BackfillRefused(f"{name}={text!r} is not a date: write it as YYYY-MM-DD, e.g. 2026-11-28.")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BackfillRefused(f"{name}={text!r} is not a date of the calendar.") from None


def plan_backfill(first: dt.date, last: dt.date, now: dt.datetime, hour: int | None = None) -> BackfillPlan:
    """The runs that process the UTC days ``first`` to ``last``, both included; raises :class:`BackfillRefused`
    when the end is before the start or the last day's run is not due by ``now``."""
    if last < first:
        raise BackfillRefused(
            f"TO={last.isoformat()} is before FROM={first.isoformat()}: FROM is the first day to reprocess and TO "
            "the last, both included (the same date twice for one day)."
        )
    plan = BackfillPlan(first, last, settings.DAILY_HOUR.value() if hour is None else hour)
    if plan.to_date > now:
        raise BackfillRefused(
            f"{last.isoformat()} is processed by the run due {plan.to_date.isoformat()}, which has not come yet: "
            "end the backfill at an earlier day, the scheduled run will process this one."
        )
    return plan


def unfinished_runs(list_runs_output: str) -> list[str]:
    """``run_id (state)`` of the queued or running runs in the JSON of ``airflow dags list-runs -o json``."""
    runs: list = []
    decoder = json.JSONDecoder()
    # Airflow's own log lines come first on stdout and hold brackets too ("[warning]"): take the first line
    # that starts a JSON list.
    for line in list_runs_output.splitlines(keepends=True):
        if not line.lstrip().startswith("["):
            continue
        rest = list_runs_output[list_runs_output.index(line) :].lstrip()
        try:
            found, _ = decoder.raw_decode(rest)
        except ValueError:
            continue
        if isinstance(found, list):
            runs = found
            break
    return [f"{run['run_id']} ({run['state']})" for run in runs if str(run.get("state")) in UNFINISHED]


def _airflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def _tail(result: subprocess.CompletedProcess, lines: int = 15) -> str:
    return "\n".join((result.stderr or result.stdout).strip().splitlines()[-lines:])


def check_nothing_running() -> None:
    listed = _airflow("dags", "list-runs", DAG_ID, "-o", "json")
    if listed.returncode != 0:
        raise BackfillRefused(
            f"Could not list the runs of {DAG_ID} (is Airflow up and the DAG parsed? `make up`):\n{_tail(listed)}"
        )
    running = unfinished_runs(listed.stdout)
    if running:
        raise BackfillRefused(
            f"{DAG_ID} has runs that have not finished: {', '.join(running)}. Wait until they end (or mark them "
            "failed in the UI), then run this again: a backfill next to them would rebuild the same dbt models "
            "at the same time."
        )


def create_backfill(plan: BackfillPlan, dry_run: bool = False) -> str:
    """Create the backfill (or print Airflow's dry run); returns what to tell the user."""
    result = _airflow(*plan.airflow_args(dry_run))
    output = f"{result.stdout}\n{result.stderr}"
    if result.returncode != 0:
        if "AlreadyRunningBackfill" in output or "Another backfill is running" in output:
            raise BackfillRefused(f"Another backfill of {DAG_ID} has not finished: wait for it, then run this again.")
        raise BackfillRefused(f"airflow backfill create failed, nothing was reprocessed:\n{_tail(result)}")
    if dry_run:
        return result.stdout.strip()
    return (
        f"Backfill created. Follow it in the UI ({DAG_ID} > Backfills) or with "
        f'`make airflow ARGS="dags list-runs {DAG_ID}"`.'
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m include.dbt_tasks.backfill",
        description=f"Reprocess the UTC days FROM to TO (both included) of {DAG_ID}, one run at a time.",
    )
    parser.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD", help="first day, included")
    parser.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD", help="last day, included")
    parser.add_argument("--dry-run", action="store_true", help="show the runs Airflow would create, create none")
    args = parser.parse_args(argv)
    try:
        plan = plan_backfill(parse_day("FROM", args.first), parse_day("TO", args.last), dt.datetime.now(dt.UTC))
        print(plan.describe(), flush=True)
        if not args.dry_run:
            check_nothing_running()
        print(create_backfill(plan, args.dry_run))
    except (BackfillRefused, ConfigurationError) as error:
        print(f"Backfill refused: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
