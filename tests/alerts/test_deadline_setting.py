"""The lateness alert's setting: minutes after queueing, 0 to turn it off (bad values: test_slack_delivery)."""

from __future__ import annotations

import datetime as dt

import pytest

from include.alerts import callbacks


def test_default_deadline_is_two_hours_after_queueing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GREENERY_DAILY_DEADLINE_MINUTES", raising=False)
    deadline = callbacks.daily_deadline()
    assert deadline.interval == dt.timedelta(minutes=120)


def test_zero_turns_the_deadline_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENERY_DAILY_DEADLINE_MINUTES", "0")
    assert callbacks.daily_deadline() is None
