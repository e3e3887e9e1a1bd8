"""Alert delivery: post a text to the ``slack_alerts`` Slack incoming webhook, retrying what may pass.

The connection (type ``slackwebhook``, the webhook URL in the password field) comes from either variable:

    SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T000/B000/your-secret
    AIRFLOW_CONN_SLACK_ALERTS='{"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/..."}'

Without one, each alert is written to the log as a warning instead, and nothing fails. A failure owned by one
dbt group goes to that group's own webhook, the connection ``slack_alerts_<group>`` (e.g.
``AIRFLOW_CONN_SLACK_ALERTS_CORE``), when it exists (``connection_for``). The Slack provider and
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


# A group's connection id is slack_alerts_<group>: only names that make a valid AIRFLOW_CONN_* variable.
_GROUP_NAME = re.compile(r"[A-Za-z0-9_]{1,100}")


def _connection_env(conn_id: str) -> str:
    """The environment variable that defines connection ``conn_id`` (``AIRFLOW_CONN_SLACK_ALERTS_CORE``)."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def how_to_set(conn_id: str) -> str:
    """The variables that define connection ``conn_id``, for a message that says what to set."""
    if conn_id == SLACK_CONN_ID:
        return f"{settings.SLACK_WEBHOOK_URL.name} or {CONNECTION_ENV}"
    return _connection_env(conn_id)


def _slack_connection_available(conn_id: str = SLACK_CONN_ID) -> bool:
    """True when connection ``conn_id`` exists with a webhook URL (``slack_alerts`` is built from
    ``SLACK_WEBHOOK_URL`` when only that is set)."""
    webhook = settings.SLACK_WEBHOOK_URL.value()
    if webhook and conn_id == SLACK_CONN_ID:
        # Astro's .env and `make up` both pass the bare URL; Airflow reads AIRFLOW_CONN_* from the environment.
        os.environ.setdefault(CONNECTION_ENV, json.dumps({"conn_type": "slackwebhook", "password": webhook}))
    try:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(conn_id)
    except Exception as error:
        log.debug("No Slack connection %r: %s", conn_id, redact(str(error)))
        return False
    register_secret(connection.password)
    register_secret(connection.host)
    return bool(connection.password and connection.password.strip())


def connection_for(group: str | None) -> str:
    """Where an alert about dbt group ``group`` goes: ``slack_alerts_<group>`` when that connection exists, else
    ``slack_alerts`` (also for no group). Never raises."""
    if group and _GROUP_NAME.fullmatch(group):
        conn_id = f"{SLACK_CONN_ID}_{group}"
        if _slack_connection_available(conn_id):
            return conn_id
        log.debug("No Slack connection %r for group %r; the alert goes to %r", conn_id, group, SLACK_CONN_ID)
    return SLACK_CONN_ID


def send_alert(text: str, conn_id: str = SLACK_CONN_ID) -> bool:
    """Post ``text`` (Slack mrkdwn) to the webhook of connection ``conn_id``; True when Slack accepted it.

    Never raises. Retries 429, 5xx and timeouts with a growing pause (``GREENERY_SLACK_RETRIES``,
    ``GREENERY_SLACK_BACKOFF_SECONDS``, ``GREENERY_SLACK_TIMEOUT_SECONDS``); when Slack still refuses, or no
    connection is configured, the alert is written to the log as a warning instead.
    """
    text = fit(redact(text), MAX_MESSAGE_CHARS)
    try:
        if not _slack_connection_available(conn_id):
            log.warning(
                "No Slack connection %r (set %s); the alert would have said:\n%s",
                conn_id,
                how_to_set(conn_id),
                text,
            )
            return False
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        from include.alerts.slack_retry import TransientSlackErrors

        hook = SlackWebhookHook(
            slack_webhook_conn_id=conn_id,
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
    log.info("Slack alert sent to %r: %s", conn_id, shorten(text.splitlines()[0], 200))
    return True


@dataclass(frozen=True)
class Attempt:
    """How one POST to Slack ended: ``sent``, ``retry`` (429, 5xx, a timeout, a dropped connection: may pass;
    ``retry_after`` is Slack's own wait for a 429) or ``refused`` (a 4xx, a malformed webhook, no connection:
    will not heal by waiting)."""

    outcome: str
    detail: str = ""
    retry_after: float | None = None


def post(text: str, timeout: float, conn_id: str = SLACK_CONN_ID) -> Attempt:
    """One POST of ``text`` to the webhook of connection ``conn_id``, no retries, within ``timeout`` seconds.
    Never raises."""
    if not _slack_connection_available(conn_id):
        return Attempt("refused", f"no Slack connection {conn_id!r} (set {how_to_set(conn_id)})")
    try:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=max(1, int(timeout)), logger=_slack_client_log)
        client = hook.client
        if not _well_formed(client.url):
            return Attempt("refused", f"the {conn_id!r} webhook URL is malformed (want https://host/path)")
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
