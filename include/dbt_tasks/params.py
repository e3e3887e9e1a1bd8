"""Trigger parameters of ``greenery_daily`` and the check that runs before any dbt command.

The form in the Airflow UI ("Trigger DAG") shows ``full_refresh``, a date window and a dbt node selection
(``select`` / ``exclude``: ``include.dbt_tasks.selection``). Airflow itself rejects
values of the wrong type when the run is created (a date that is not ``YYYY-MM-DD``, a non-boolean
``full_refresh``); the first task, ``validate_params``, checks what a JSON schema cannot (an unknown
parameter, a start after the end, a window longer than ``GREENERY_MAX_WINDOW_DAYS``) and fails with one
sentence that says what to change, before any dbt command runs.

dbt receives the window as the vars ``start_date`` and ``end_date``: a half-open UTC interval
``[start_date, end_date)`` that the incremental models reprocess. A day is always a whole UTC calendar day: the
dates of the form name days, and a run without dates processes the days that ended during its data interval
(the 06:00 run: yesterday), so each scheduled or backfilled day is reprocessed exactly, the same rows as the
form's run for that date, and running it twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import Param

from include import settings
from include.dbt_tasks.selection import InvalidSelection, criteria, describe, resolve
from include.dbt_tasks.task_ids import VALIDATE_TASK_ID

log = logging.getLogger(__name__)

# The data interval of greenery_daily's schedule, for runs that have none.
DEFAULT_INTERVAL = dt.timedelta(days=1)

PARAMS: dict[str, Param] = {
    "full_refresh": Param(
        False,
        type="boolean",
        title="Full refresh",
        description="Rebuild the incremental models from scratch (dbt --full-refresh). The dates are then ignored.",
    ),
    "start_date": Param(
        None,
        type=["null", "string"],
        format="date",
        title="Start date",
        description="First day to reprocess (UTC, included). Leave both dates empty to process the UTC days that "
        "ended during the run's data interval (for the daily run: yesterday).",
    ),
    "end_date": Param(
        None,
        type=["null", "string"],
        format="date",
        title="End date",
        description="Last day to reprocess (UTC, included).",
    ),
    "select": Param(
        None,
        type=["null", "string"],
        title="Select",
        description="Build only these dbt nodes, in dbt's selection syntax, several separated by spaces: "
        "fct_orders+ (a model and everything downstream), tag:product, path:models/marts. Their tests run with "
        "them; every other node's task ends skipped. Empty: the whole project.",
    ),
    "exclude": Param(
        None,
        type=["null", "string"],
        title="Exclude",
        description="Leave these dbt nodes out (same syntax as Select), e.g. fct_page_views+.",
    ),
    "rerun_failed_of": Param(
        None,
        type=["null", "string"],
        title="Rerun failed of",
        description="A run id of greenery_daily, or latest: rebuild only the nodes that failed in that run and "
        "everything downstream of them, with that run's dates and full_refresh (dates given here win). Leave "
        "Select empty.",
    ),
    "only": Param(
        "all",
        type="string",
        enum=["all", "changed", "fresher"],
        title="Only",
        description="all: every selected node. changed: models whose code or config changed since the last "
        "green full run, and their downstream (dbt state:modified+). fresher: models downstream of the raw "
        "tables that received rows since that run (dbt source_status:fresher+).",
    ),
}


class InvalidParams(ValueError):
    """The trigger parameters cannot be used; the message says what to change."""


@dataclass(frozen=True)
class RunWindow:
    """What one run of ``greenery_daily`` processes."""

    start: dt.datetime
    end: dt.datetime
    full_refresh: bool
    # The unique ids of the dbt nodes to build (None: all of them; empty: none), and why, as the user reads it.
    selected: tuple[str, ...] | None = None
    selection_text: str | None = None
    # "all" or "changed" when a green run leaves its state for a later only=changed/fresher (project_state).
    state_mode: str | None = "all"

    def as_xcom(self) -> dict[str, Any]:
        """The validated parameters as the dbt tasks read them: ISO timestamps, a boolean, the selection."""
        return {
            "start_date": self.start.isoformat(),
            "end_date": self.end.isoformat(),
            "full_refresh": self.full_refresh,
            "selected": None if self.selected is None else list(self.selected),
            "selection_text": self.selection_text,
            "state_mode": self.state_mode,
        }

    def describe(self) -> str:
        days = (self.end - self.start) / dt.timedelta(days=1)
        refresh = "full refresh of incremental models" if self.full_refresh else "incremental"
        plural = "" if days == 1 else "s"
        if self.selected is None:
            nodes = "every node"
        elif not self.selected:
            nodes = f"no node ({self.selection_text})"
        else:
            nodes = f"{len(self.selected)} nodes ({self.selection_text})"
        return f"[{self.start.isoformat()}, {self.end.isoformat()}) ({days:g} day{plural}), {refresh}, {nodes}"


def with_selection(window: RunWindow, params: Mapping[str, Any]) -> RunWindow:
    """``window`` with the nodes that the ``select`` and ``exclude`` parameters pick (dbt resolves them)."""
    try:
        select, exclude = criteria("select", params.get("select")), criteria("exclude", params.get("exclude"))
        selected = resolve(select, exclude)
    except InvalidSelection as error:
        raise InvalidParams(str(error)) from None
    if selected is None:
        return window
    return dataclasses.replace(
        window, selected=tuple(selected), selection_text=describe(select, exclude), state_mode=None
    )


def _parse_date(name: str, value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidParams(f"{name} {value!r} is not a date: write it as YYYY-MM-DD, e.g. 2024-01-31.") from None


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise InvalidParams(f"full_refresh {value!r} is not true or false.")


def _utc(moment: dt.datetime) -> dt.datetime:
    """A plain ``datetime`` in UTC (Airflow hands out pendulum objects, whose arithmetic differs)."""
    moment = moment.astimezone(dt.UTC)
    return dt.datetime(*moment.timetuple()[:6], moment.microsecond, tzinfo=dt.UTC)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def resolve_window(
    conf: Mapping[str, Any] | None,
    params: Mapping[str, Any],
    data_interval_start: dt.datetime | None,
    data_interval_end: dt.datetime | None,
    run_after: dt.datetime | None = None,
    max_days: int | None = None,
) -> RunWindow:
    """Check the parameters of one run and turn them into the window dbt reprocesses.

    ``conf`` is what the user passed when triggering (only its keys are checked for typos), ``params`` the
    resolved values (defaults filled in). Without dates the window is the UTC days that ended during the run's
    data interval, ``[midnight of its start, midnight of its end)``: the daily run at 06:00 processes the whole of
    yesterday, and a backfill run processes the same day as the scheduled run of its logical date. A run
    created without a logical date (``airflow dags trigger`` without one, the REST API) has no data interval and
    gets the ``DEFAULT_INTERVAL`` before ``run_after`` instead, as a scheduled run would. Raises
    :class:`InvalidParams` with a message for the user.
    """
    unknown = sorted(set(conf or {}) - set(PARAMS))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, PARAMS, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidParams(
            f"Unknown trigger parameter {', '.join(hints)}: greenery_daily accepts only {', '.join(sorted(PARAMS))}."
        )
    full_refresh = _parse_bool(params.get("full_refresh", False))
    start_day = _parse_date("start_date", params.get("start_date"))
    end_day = _parse_date("end_date", params.get("end_date"))

    if start_day is None and end_day is None:
        if data_interval_start is None or data_interval_end is None:
            if run_after is None:
                raise InvalidParams("This run has neither a data interval nor a start time: give the dates.")
            data_interval_start, data_interval_end = run_after - DEFAULT_INTERVAL, run_after
        interval_start, interval_end = _utc(data_interval_start), _utc(data_interval_end)
        start, end = _midnight(interval_start.date()), _midnight(interval_end.date())
        if end <= start:
            raise InvalidParams(
                f"The run's data interval [{interval_start.isoformat()}, {interval_end.isoformat()}) contains no "
                "end of a UTC day: give start_date and end_date."
            )
        return RunWindow(start, end, full_refresh)

    if start_day is None or end_day is None:
        given, missing = ("start_date", "end_date") if end_day is None else ("end_date", "start_date")
        raise InvalidParams(
            f"{given} is set but {missing} is not: give both (the same day twice for one day), "
            "or neither to process the run's data interval."
        )
    if start_day > end_day:
        raise InvalidParams(
            f"start_date {start_day.isoformat()} is after end_date {end_day.isoformat()}: "
            "the window runs from start_date to end_date, both included."
        )
    limit = max_days if max_days is not None else settings.MAX_WINDOW_DAYS.value()
    days = (end_day - start_day).days + 1
    if days > limit:
        raise InvalidParams(
            f"The window {start_day.isoformat()} to {end_day.isoformat()} is {days} days, longer than the "
            f"{limit}-day limit: split it into several runs (or a backfill), or raise {settings.MAX_WINDOW_DAYS.name}."
        )
    return RunWindow(_midnight(start_day), _midnight(end_day + dt.timedelta(days=1)), full_refresh)


def dbt_vars() -> dict[str, str]:
    """dbt vars for every dbt task of the daily DAG, rendered from what ``validate_params`` returned."""
    pulled = f"ti.xcom_pull(task_ids='{VALIDATE_TASK_ID}')"
    return {
        "start_date": "{{ " + pulled + "['start_date'] }}",
        "end_date": "{{ " + pulled + "['end_date'] }}",
    }


def full_refresh_template() -> str:
    return "{{ ti.xcom_pull(task_ids='" + VALIDATE_TASK_ID + "')['full_refresh'] }}"
