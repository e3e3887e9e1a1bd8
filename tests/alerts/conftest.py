"""Fixtures of the alert tests: a local Slack webhook (the fixture shop's database and dbt artifacts, shared with
the run-history tests, are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_stub import SlackWebhookStub


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackWebhookStub]:
    """A local Slack webhook, configured as the ``slack_alerts`` connection, with short retry pauses."""
    stub = SlackWebhookStub()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", stub.connection_json())
    monkeypatch.setenv("GREENERY_SLACK_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("GREENERY_AIRFLOW_BASE_URL", "http://airflow.test:8080")
    yield stub
    stub.close()
