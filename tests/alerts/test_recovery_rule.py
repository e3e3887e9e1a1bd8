"""When a successful run says "Recovered": only when the run before it (by logical date) failed and had finished
before this one started. Runs of a backfill that ran side by side did not recover from each other.

The run objects are stand-ins for what the task SDK hands the DAG processor's callback (its supervisor does not
exist in a test); the alert is caught where the callback hands it on, before any delivery.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from include.alerts import callbacks

T0 = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
THIS_RUN = "backfill__2026-11-30T06:00:00+00:00"
PREVIOUS_RUN = "backfill__2026-11-29T06:00:00+00:00"


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    name = "raise_alert" if hasattr(callbacks, "raise_alert") else "send_alert"
    monkeypatch.setattr(callbacks, name, lambda *args, **_: sent.append(args[-1]))
    return sent


def _success_of_a_run(started: dt.datetime, previous_state: str | None, previous_end: dt.datetime | None) -> dict:
    previous = (
        None
        if previous_state is None
        else SimpleNamespace(run_id=PREVIOUS_RUN, state=previous_state, end_date=previous_end)
    )
    dag_run = SimpleNamespace(dag_id="greenery_daily", run_id=THIS_RUN, logical_date=T0, start_date=started)
    return {"dag_run": dag_run, "ti": SimpleNamespace(get_previous_dagrun=lambda: previous)}


def test_a_success_after_a_failed_run_that_had_finished_says_recovered(alerts: list[str]) -> None:
    callbacks.on_dag_success(_success_of_a_run(started=T0 + 10 * MINUTE, previous_state="failed", previous_end=T0))
    assert len(alerts) == 1
    assert f"`{THIS_RUN}` succeeded; the run before it, `{PREVIOUS_RUN}`, had failed." in alerts[0]


@pytest.mark.parametrize(
    ("previous_state", "previous_end"),
    [
        ("failed", T0 + 5 * MINUTE),  # failed while this run was already running: side by side
        ("failed", None),  # no end recorded
        ("success", T0 - MINUTE),
        (None, None),  # the first run
    ],
    ids=["failed-during-this-run", "failed-without-end", "previous-succeeded", "first-run"],
)
def test_no_recovery_when_the_previous_run_did_not_fail_before_this_one_started(
    alerts: list[str], previous_state: str | None, previous_end: dt.datetime | None
) -> None:
    callbacks.on_dag_success(_success_of_a_run(started=T0, previous_state=previous_state, previous_end=previous_end))
    assert alerts == []
