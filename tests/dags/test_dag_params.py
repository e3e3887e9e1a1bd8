"""The trigger parameters of greenery_daily: what a user can type into the form and what dbt then reprocesses."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest

from include.dbt_tasks.params import InvalidParams, resolve_window

UTC = dt.UTC
# Airflow hands the task pendulum datetimes, not the standard library's.
INTERVAL = (pendulum.datetime(2024, 3, 1, 6, tz="UTC"), pendulum.datetime(2024, 3, 2, 6, tz="UTC"))
DEFAULTS = {"full_refresh": False, "start_date": None, "end_date": None}


def _resolve(conf: dict, max_days: int = 31):
    return resolve_window(conf, {**DEFAULTS, **conf}, *INTERVAL, max_days=max_days)


def test_without_dates_a_run_processes_the_utc_day_that_ended_in_its_data_interval() -> None:
    window = _resolve({})  # the 06:00 run of March 2: its data interval is March 1 06:00 to March 2 06:00
    assert window.as_xcom() == {
        "start_date": "2024-03-01T00:00:00+00:00",
        "end_date": "2024-03-02T00:00:00+00:00",
        "full_refresh": False,
        "selected": None,
        "selection_text": None,
        "state_mode": "all",
    }
    assert window.describe() == (
        "[2024-03-01T00:00:00+00:00, 2024-03-02T00:00:00+00:00) (1 day), incremental, every node"
    )
    assert window == _resolve({"start_date": "2024-03-01", "end_date": "2024-03-01"})  # the form's March 1


def test_a_run_without_a_logical_date_processes_the_day_before_it_was_triggered() -> None:
    run_after = pendulum.datetime(2024, 3, 2, 9, 30, tz="UTC")
    window = resolve_window({}, DEFAULTS, None, None, run_after=run_after, max_days=31)
    assert (window.start.isoformat(), window.end.isoformat()) == (
        "2024-03-01T00:00:00+00:00",
        "2024-03-02T00:00:00+00:00",
    )


def test_dates_are_whole_utc_days_with_the_end_day_included() -> None:
    window = _resolve({"start_date": "2024-01-30", "end_date": "2024-02-01", "full_refresh": True})
    assert window.as_xcom() == {
        "start_date": "2024-01-30T00:00:00+00:00",
        "end_date": "2024-02-02T00:00:00+00:00",
        "full_refresh": True,
        "selected": None,
        "selection_text": None,
        "state_mode": "all",
    }
    assert window.describe().startswith("[2024-01-30T00:00:00+00:00, 2024-02-02T00:00:00+00:00) (3 days)")


def test_one_day_is_the_same_date_twice() -> None:
    window = _resolve({"start_date": "2024-02-29", "end_date": "2024-02-29"})
    assert window.end - window.start == dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"start_date": "2024-02-30", "end_date": "2024-03-01"}, "start_date '2024-02-30' is not a date"),
        ({"start_date": "2024-03-01", "end_date": "yesterday"}, "end_date 'yesterday' is not a date"),
        (
            {"start_date": "2024-03-05", "end_date": "2024-03-01"},
            "start_date 2024-03-05 is after end_date 2024-03-01",
        ),
        (
            {"start_date": "2024-01-01", "end_date": "2024-03-01"},
            "The window 2024-01-01 to 2024-03-01 is 61 days, longer than the 31-day limit",
        ),
        ({"start_date": "2024-03-01"}, "start_date is set but end_date is not"),
        ({"end_date": "2024-03-01"}, "end_date is set but start_date is not"),
        ({"full_refrsh": True}, "Unknown trigger parameter 'full_refrsh' (did you mean 'full_refresh'?)"),
        (
            {"start": "2024-03-01"},
            "greenery_daily accepts only end_date, exclude, full_refresh, only, rerun_failed_of, select, start_date",
        ),
        ({"full_refresh": "maybe"}, "full_refresh 'maybe' is not true or false"),
    ],
)
def test_bad_parameters_are_rejected_with_a_message_that_says_what_to_change(conf: dict, message: str) -> None:
    with pytest.raises(InvalidParams) as error:
        _resolve(conf)
    assert message in str(error.value)


def test_the_window_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = {"start_date": "2024-01-01", "end_date": "2024-03-01"}
    monkeypatch.setenv("GREENERY_MAX_WINDOW_DAYS", "90")
    assert resolve_window(conf, {**DEFAULTS, **conf}, *INTERVAL).full_refresh is False
    monkeypatch.setenv("GREENERY_MAX_WINDOW_DAYS", "60")
    with pytest.raises(InvalidParams, match="longer than the 60-day limit"):
        resolve_window(conf, {**DEFAULTS, **conf}, *INTERVAL)
