"""Alert delivery: post a text to the ``slack_alerts`` Slack incoming webhook, retrying what may pass.

The connection (type ``slackwebhook``, the webhook URL in the password field) comes from either variable:

    SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T000/B000/your-secret
    AIRFLOW_CONN_SLACK_ALERTS='{"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/..."}'

Without one, each alert is written to the log as a warning instead, and nothing fails. The Slack provider and
the retry policy (``include.alerts.slack_retry``, which imports slack_sdk) are imported only when an alert is
sent, so parsing a DAG file never loads them.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
from dataclasses import dataclass
from urllib.error import URLError
from urllib.parse import urlsplit

from include import settings
from include.alerts.messages import MAX_MESSAGE_CHARS, fit, shorten
from include.redaction import RedactingFilter, redact, register_secret

log = logging.getLogger(__name__)

SLACK_CONN_ID = settings.SLACK_CONN_ID
CONNECTION_ENV = "AIRFLOW_CONN_SLACK_ALERTS"

_slack_client_log = logging.getLogger(f"{__name__}.client")
# INFO, not NOTSET: slack_sdk builds its DEBUG lines (URL and body) whenever the logger's own level allows it.
_slack_client_log.setLevel(logging.INFO)
_slack_client_log.addFilter(RedactingFilter())


def _slack_connection_available() -> bool:
    """True when the ``slack_alerts`` connection exists (built from ``SLACK_WEBHOOK_URL`` when only that is set)."""
    webhook = settings.SLACK_WEBHOOK_URL.value()
    if webhook:
        # Astro's .env and `make up` both pass the bare URL; Airflow reads AIRFLOW_CONN_* from the environment.
        os.environ.setdefault(CONNECTION_ENV, json.dumps({"conn_type": "slackwebhook", "password": webhook}))
    try:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(SLACK_CONN_ID)
    except Exception as error:
        log.debug("No Slack connection %r: %s", SLACK_CONN_ID, redact(str(error)))
        return False
    register_secret(connection.password)
    register_secret(connection.host)
    return bool(connection.password and connection.password.strip())


def send_alert(text: str) -> bool:
    """Post ``text`` (Slack mrkdwn) to the ``slack_alerts`` webhook; True when Slack accepted it.

    Never raises. Retries 429, 5xx and timeouts with a growing pause (``GREENERY_SLACK_RETRIES``,
    ``GREENERY_SLACK_BACKOFF_SECONDS``, ``GREENERY_SLACK_TIMEOUT_SECONDS``); when Slack still refuses, or no
    connection is configured, the alert is written to the log as a warning instead.
    """
    text = fit(redact(text), MAX_MESSAGE_CHARS)
    try:
        if not _slack_connection_available():
            log.warning(
                "No Slack connection %r (set %s or %s); the alert would have said:\n%s",
                SLACK_CONN_ID,
                settings.SLACK_WEBHOOK_URL.name,
                CONNECTION_ENV,
                text,
            )
            return False
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        from include.alerts.slack_retry import TransientSlackErrors

        hook = SlackWebhookHook(
            slack_webhook_conn_id=SLACK_CONN_ID,
            timeout=int(settings.SLACK_TIMEOUT_SECONDS.value()),
            retry_handlers=[
                TransientSlackErrors(settings.SLACK_RETRIES.value(), settings.SLACK_BACKOFF_SECONDS.value())
            ],
            logger=_slack_client_log,
        )
        hook.send(text=text, unfurl_links=False, unfurl_media=False)
    except Exception as error:
        log.warning(
            "Slack did not take the alert (%s: %s); the alert would have said:\n%s",
            type(error).__name__,
            shorten(redact(str(error)), 300),
            text,
        )
        return False
    log.info("Slack alert sent: %s", shorten(text.splitlines()[0], 200))
    return True


@dataclass(frozen=True)
class Attempt:
    """How one POST to Slack ended: ``sent``, ``retry`` (429, 5xx, a timeout, a dropped connection: may pass;
    ``retry_after`` is Slack's own wait for a 429) or ``refused`` (a 4xx, a malformed webhook, no connection:
    will not heal by waiting)."""

    outcome: str
    detail: str = ""
    retry_after: float | None = None


def post(text: str, timeout: float) -> Attempt:
    """One POST of ``text`` to the ``slack_alerts`` webhook, no retries, within ``timeout`` seconds. Never raises."""
    if not _slack_connection_available():
        return Attempt("refused", f"no Slack connection {SLACK_CONN_ID!r} (set {settings.SLACK_WEBHOOK_URL.name})")
    try:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        hook = SlackWebhookHook(
            slack_webhook_conn_id=SLACK_CONN_ID, timeout=max(1, int(timeout)), logger=_slack_client_log
        )
        client = hook.client
        if not _well_formed(client.url):
            return Attempt("refused", f"the {SLACK_CONN_ID!r} webhook URL is malformed (want https://host/path)")
        response = client.send(text=text, unfurl_links=False, unfurl_media=False)
    except (URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        return Attempt("retry", shorten(redact(f"{type(error).__name__}: {error}"), 300))
    except Exception as error:  # a malformed webhook URL, a connection of the wrong type
        return Attempt("refused", shorten(redact(f"{type(error).__name__}: {error}"), 300))
    detail = shorten(redact(f"HTTP {response.status_code} {response.body}"), 300)
    if response.status_code == 200:
        return Attempt("sent", detail)
    if response.status_code == 429 or response.status_code >= 500:
        return Attempt("retry", detail, _retry_after(response.headers))
    return Attempt("refused", detail)


def _well_formed(url: str) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", url)


def _retry_after(headers: dict) -> float | None:
    for name, values in (headers or {}).items():
        if name.lower() == "retry-after" and values:
            value = values[0] if isinstance(values, list) else values
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None
