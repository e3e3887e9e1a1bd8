"""Alerts are never lost: each one is recorded in the warehouse (dbt_meta.alert_outbox) before it is sent, tried
at once within a budget that a task process always has, and delivered later, exactly once, when Slack was slow
or away. Real PostgreSQL, real HTTP (tests/alerts/slack_stub.py); time passing is simulated by moving a row's
next_attempt_at, never by waiting."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from slack_stub import Reply, SlackWebhookStub

from include.alerts import outbox
from include.alerts.delivery import AlertDeliveryTrigger
from tests.conftest import query_rows, warehouse_connection_json

TEXT = ":red_circle: *Failed:* `greenery_daily` › `models.stg_greenery__orders`"


@pytest.fixture
def warehouse(fresh_database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An empty warehouse database as the ``greenery_warehouse`` connection."""
    _, env = fresh_database("outbox")
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", warehouse_connection_json(env))
    return env


def _rows(env: dict[str, str]) -> list[tuple]:
    return query_rows(
        env,
        "select alert_id, state, attempts, next_attempt_at > now() + interval '60 seconds' "
        "from dbt_meta.alert_outbox order by created_at",
    )


def _time_passes(env: dict[str, str]) -> None:
    query_rows(env, "update dbt_meta.alert_outbox set next_attempt_at = now() where state <> 'sent'")


def test_the_in_task_try_fits_in_what_airflow_gives_a_task_process_after_it_ends() -> None:
    from airflow.configuration import conf

    overtime = conf.getint("core", "task_success_overtime")
    # One more try may start just before the budget ends and run its whole timeout.
    assert overtime > outbox.SEND_NOW_BUDGET_SECONDS + outbox.SEND_NOW_TIMEOUT_SECONDS


def test_a_hanging_slack_loses_nothing_and_the_alert_arrives_once_when_it_answers_again(
    warehouse, slack: SlackWebhookStub, caplog: pytest.LogCaptureFixture
) -> None:
    # Slack hangs 30 s per request and then does not post it: every try times out.
    slack.reply_with(*[Reply(503, "hung", delay=30)] * 10)
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    outbox.raise_alert("failure:greenery_daily:run1:t:-1:1", "failure", TEXT)
    assert time.monotonic() - started < 20, "the in-task try outlived [core] task_success_overtime"
    assert TEXT in caplog.text, "the task log always shows the alert's text"
    [(alert_id, state, attempts, _)] = _rows(warehouse)
    assert (alert_id, state) == ("failure:greenery_daily:run1:t:-1:1", "pending") and attempts >= 1

    slack._replies.clear()  # Slack is back: it answers at once again
    _time_passes(warehouse)
    assert outbox.deliver_pending() == {"sent": 1, "pending": 0, "failed": 0}
    assert outbox.deliver_pending() == {"sent": 0, "pending": 0, "failed": 0}
    outbox.raise_alert("failure:greenery_daily:run1:t:-1:1", "failure", TEXT)  # the callback ran twice
    assert slack.delivered == [TEXT]
    assert [row[1] for row in _rows(warehouse)] == ["sent"]


def test_a_rate_limit_waits_for_retry_after_in_the_outbox_not_in_the_task(warehouse, slack) -> None:
    slack.reply_with(Reply(429, "rate_limited", headers={"Retry-After": "120"}))
    started = time.monotonic()
    outbox.raise_alert("late:greenery_daily:run2", "late", ":hourglass: *Late:*")
    assert time.monotonic() - started < 5, "the task process must not sleep through Retry-After"
    [(_, state, attempts, waits_for_retry_after)] = _rows(warehouse)
    assert (state, attempts, waits_for_retry_after) == ("pending", 1, True)

    assert outbox.deliver_pending() == {"sent": 0, "pending": 0, "failed": 0}, "not due before Retry-After"
    assert slack.attempts == 1
    _time_passes(warehouse)
    assert outbox.deliver_pending()["sent"] == 1
    assert slack.delivered == [":hourglass: *Late:*"]


def test_server_errors_are_retried_in_the_task_then_left_for_the_delivery_dag(warehouse, slack) -> None:
    slack.reply_with(*[Reply(500, "internal_error")] * 4)
    outbox.raise_alert("run_failed:greenery_daily:run3", "run_failed", "timed out")
    assert slack.attempts == 4 and slack.delivered == []  # GREENERY_SLACK_RETRIES=3 retries
    assert [row[1] for row in _rows(warehouse)] == ["pending"]
    _time_passes(warehouse)
    assert outbox.deliver_pending()["sent"] == 1 and slack.delivered == ["timed out"]


def test_refused_connections_are_retried_later_against_the_same_connection(
    warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = SlackWebhookStub()
    url = stub.url
    stub.close()  # nothing listens on that port now
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps({"conn_type": "slackwebhook", "password": url}))
    monkeypatch.setenv("GREENERY_SLACK_BACKOFF_SECONDS", "0.05")
    outbox.raise_alert("recovered:greenery_daily:run4", "recovered", "recovered")
    assert [row[1] for row in _rows(warehouse)] == ["pending"]

    back = SlackWebhookStub()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", back.connection_json())
        _time_passes(warehouse)
        assert outbox.deliver_pending()["sent"] == 1 and back.delivered == ["recovered"]
    finally:
        back.close()


def test_a_malformed_webhook_ends_the_alert_as_failed_with_one_clear_line(
    warehouse, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_ALERTS", json.dumps({"conn_type": "slackwebhook", "password": "https:///services/T/B/x"})
    )
    caplog.set_level(logging.INFO)
    outbox.raise_alert("failure:x:run5:t:-1:1", "failure", "broken")
    assert [row[1] for row in _rows(warehouse)] == ["failed"]
    refused = [r.getMessage() for r in caplog.records if "will not be retried" in r.getMessage()]
    assert len(refused) == 1 and "fix the 'slack_alerts' connection" in refused[0]
    assert "broken" in caplog.text


def test_without_a_warehouse_the_alert_is_sent_directly(slack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_GREENERY_WAREHOUSE",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "login": "x", "schema": "x"}),
    )
    outbox.raise_alert("failure:x:run6:t:-1:1", "failure", "no warehouse")
    assert slack.delivered == ["no warehouse"]


def test_the_delivery_trigger_sends_what_is_due_and_ends_the_task(warehouse, slack) -> None:
    from airflow.triggers.base import TaskSuccessEvent

    slack.reply_with(Reply(503, "busy"), Reply(503, "busy"), Reply(503, "busy"), Reply(503, "busy"))
    outbox.raise_alert("warning:greenery_daily:run7:t:-1:1:abc", "warning", "stale")
    _time_passes(warehouse)

    async def first_event():
        async for event in AlertDeliveryTrigger(budget_seconds=30).run():
            return event

    event = asyncio.run(first_event())
    assert isinstance(event, TaskSuccessEvent) and event.xcoms == {
        "return_value": {"sent": 1, "pending": 0, "failed": 0}
    }
    assert slack.delivered == ["stale"]
