"""Delivery through the Slack provider's webhook hook to a local server that plays Slack: retries on 429, 5xx
and timeouts, gives up without raising, and never leaks the webhook URL."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest
from slack_stub import Reply, SlackWebhookStub

from include.alerts import callbacks
from include.alerts.slack import send_alert


@pytest.fixture
def alert_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def test_a_message_arrives_once_intact(slack: SlackWebhookStub) -> None:
    text = "*Failed:* `fct_orders` – Grüße 🌱 &amp; more"

    assert send_alert(text) is True

    assert slack.delivered == [text]
    assert slack.requests[0].path == f"/services/{slack.token}"
    assert slack.requests[0].payload["unfurl_links"] is False


def test_server_errors_are_retried_with_a_pause_then_delivered(slack: SlackWebhookStub) -> None:
    slack.reply_with(Reply(500, "internal_error"), Reply(503, "service_unavailable"))

    assert send_alert("the build failed") is True

    assert slack.attempts == 3
    assert slack.delivered == ["the build failed"]


def test_rate_limits_wait_for_retry_after(slack: SlackWebhookStub) -> None:
    slack.reply_with(Reply(429, "rate_limited", headers={"Retry-After": "1"}))

    assert send_alert("late") is True

    assert slack.attempts == 2


def test_a_timeout_is_retried(slack: SlackWebhookStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENERY_SLACK_TIMEOUT_SECONDS", "1")
    slack.reply_with(Reply(200, delay=3))

    assert send_alert("slow slack") is True

    assert slack.attempts == 2


def test_when_slack_keeps_failing_the_alert_is_logged_and_nothing_raises(
    slack: SlackWebhookStub, alert_log: pytest.LogCaptureFixture
) -> None:
    slack.reply_with(*[Reply(500, "internal_error")] * 10)

    assert send_alert("dbt test not_null_x failed") is False

    assert slack.attempts == 4  # the first try and 3 retries
    logged = _logged(alert_log)
    assert "Slack did not take the alert" in logged and "Status Code: 500" in logged
    assert "dbt test not_null_x failed" in logged
    assert slack.token not in logged and slack.url not in logged


def test_a_client_error_is_not_retried(slack: SlackWebhookStub, alert_log: pytest.LogCaptureFixture) -> None:
    slack.reply_with(Reply(404, "no_service"))

    assert send_alert("to a deleted webhook") is False

    assert slack.attempts == 1
    assert "no_service" in _logged(alert_log)


def test_without_a_connection_the_alert_goes_to_the_log(
    monkeypatch: pytest.MonkeyPatch, alert_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_ALERTS", raising=False)
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)

    assert send_alert("nobody listens") is False

    [warning] = [record for record in alert_log.records if record.levelno == logging.WARNING]
    assert "No Slack connection 'slack_alerts' (set SLACK_WEBHOOK_URL or AIRFLOW_CONN_SLACK_ALERTS)" in (
        warning.getMessage()
    )
    assert warning.getMessage().endswith("nobody listens")


def test_slack_webhook_url_alone_configures_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = SlackWebhookStub()
    try:
        # setenv first so that monkeypatch also removes the connection alerts builds from the URL afterwards.
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", "")
        monkeypatch.delenv("AIRFLOW_CONN_SLACK_ALERTS")
        monkeypatch.setenv("SLACK_WEBHOOK_URL", stub.url)

        assert send_alert("configured from .env") is True

        assert stub.delivered == ["configured from .env"]
    finally:
        stub.close()


def test_the_deadline_callback_says_which_run_is_late(slack: SlackWebhookStub) -> None:
    # The context the scheduler hands a missed deadline's callback (airflow.models.deadline.Deadline.handle_miss).
    context = {
        "dag_run": {
            "dag_id": "greenery_daily",
            "dag_run_id": "scheduled__2024-01-03T06:00:00+00:00",
            "state": "running",
            "queued_at": "2024-01-03T06:00:02+00:00",
        },
        "deadline": {"id": "d1", "deadline_time": "2024-01-03T08:00:02+00:00"},
    }

    asyncio.run(callbacks.notify_deadline_missed(context=context))

    [text] = slack.delivered
    assert text.startswith(":hourglass: *Late:* `greenery_daily` run `scheduled__2024-01-03T06:00:00+00:00`")
    assert "has not succeeded by 2024-01-03 08:00 UTC (queued 2024-01-03 06:00 UTC, now running)" in text


def test_the_daily_deadline_counts_from_when_the_run_was_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import DeadlineReference

    monkeypatch.setenv("GREENERY_DAILY_DEADLINE_MINUTES", "90")

    deadline = callbacks.daily_deadline()

    assert deadline.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert deadline.interval == dt.timedelta(minutes=90)
    assert deadline.callback.path == "include.alerts.callbacks.notify_deadline_missed"


def test_a_bad_deadline_setting_says_what_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENERY_DAILY_DEADLINE_MINUTES", "two hours")

    with pytest.raises(ValueError, match=r"GREENERY_DAILY_DEADLINE_MINUTES='two hours' must be a number from 0 to"):
        callbacks.daily_deadline()
