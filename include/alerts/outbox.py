"""Alerts that are never lost: each one is recorded in the warehouse before it is sent, then delivered until
Slack takes it.

``raise_alert`` is what the callbacks call. It writes the alert's text to the log (the task log always shows
it), records it in ``dbt_meta.alert_outbox`` under a key that names the event (a task try, a run), and tries
to deliver it at once within ``SEND_NOW_BUDGET_SECONDS``: well inside the time Airflow gives a task process
after its end (``[core] task_success_overtime``, 20 s), so that no process is killed mid-send. What Slack did
not take then (it hung, answered 429 or 5xx, or refused connections) stays ``pending`` and the
``greenery_alert_delivery`` DAG delivers it, honouring Slack's ``Retry-After``: every alert reaches Slack once,
at the latest a few minutes after Slack answers again. A second call with the same key (a callback run twice)
sends nothing.

Each alert goes to the Slack connection it was raised for (``conn_id``: ``slack_alerts``, or a dbt group's
``slack_alerts_<group>``), now and at every later try.

Slack's refusals that waiting does not heal (a 4xx, a malformed webhook URL, no connection at all) end the
alert as ``failed`` with one log line that says what to fix; the text is in the log already. When the
warehouse itself cannot be reached, the alert is sent directly with the retry budget of ``send_alert``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from include import settings
from include.alerts.messages import MAX_MESSAGE_CHARS, fit
from include.alerts.slack import Attempt, how_to_set, post, send_alert
from include.history import schema
from include.history.schema import Table, meta_schema
from include.history.store import warehouse_connection
from include.redaction import redact

log = logging.getLogger(__name__)

# The in-process try: a task process has [core] task_success_overtime (20 s by default) after its end.
SEND_NOW_BUDGET_SECONDS = 12.0
SEND_NOW_TIMEOUT_SECONDS = 5.0
# What one run of the delivery DAG may spend before it leaves the rest to the next run.
DELIVERY_BUDGET_SECONDS = 90.0
# A pending alert's next try when Slack said nothing about when (a 429's Retry-After says when).
PAUSE = dt.timedelta(minutes=1)
# A try that started and never ended (the process died) is taken up again after this long.
LEASE = dt.timedelta(minutes=2)

OUTBOX = Table(
    "alert_outbox",
    (
        ("alert_id", "text not null"),
        ("kind", "text not null"),
        ("message", "text not null"),
        ("state", "text not null"),
        ("attempts", "integer not null"),
        ("created_at", "timestamptz not null"),
        ("next_attempt_at", "timestamptz not null"),
        ("sent_at", "timestamptz"),
        ("last_error", "text"),
        # Added after the first release: rows recorded before it were all for slack_alerts.
        ("conn_id", f"text not null default '{settings.SLACK_CONN_ID}'"),
    ),
    key=("alert_id",),
    references_invocation=False,
)


@dataclass(frozen=True)
class Alert:
    alert_id: str
    kind: str
    message: str
    attempts: int
    conn_id: str = settings.SLACK_CONN_ID


def _table() -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(meta_schema()), sql.Identifier(OUTBOX.name))


def ensure_table(connection: Any) -> None:
    schema.ensure_table(connection, OUTBOX)


def raise_alert(alert_id: str, kind: str, text: str, conn_id: str = settings.SLACK_CONN_ID) -> None:
    """Log ``text``, record it under ``alert_id`` for Slack connection ``conn_id`` and try to deliver it now.
    Never raises."""
    text = fit(redact(text), MAX_MESSAGE_CHARS)
    log.info("Alert %s (to %s):\n%s", alert_id, conn_id, text)
    try:
        connection = warehouse_connection()
    except Exception as error:
        log.warning(
            "Could not record the alert in the warehouse (%s: %s); sending it directly.",
            type(error).__name__,
            redact(str(error)).strip(),
        )
        send_alert(text, conn_id)
        return
    try:
        ensure_table(connection)
        alert = Alert(alert_id, kind, text, 0, conn_id)
        if _record(connection, alert):
            _deliver(connection, alert, SEND_NOW_BUDGET_SECONDS, SEND_NOW_TIMEOUT_SECONDS)
        else:
            log.info("Alert %s was raised before; it is not sent again.", alert_id)
    except Exception:
        log.exception("Could not deliver alert %s; greenery_alert_delivery retries what was recorded", alert_id)
    finally:
        connection.close()


def _record(connection: Any, alert: Alert) -> bool:
    """Insert the alert as being sent now (a lease, so the delivery DAG leaves it alone); False if it exists."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "insert into {} (alert_id, kind, message, conn_id, state, attempts, created_at, next_attempt_at) "
                "values (%s, %s, %s, %s, 'sending', 0, now(), now() + %s) on conflict (alert_id) do nothing"
            ).format(_table()),
            (alert.alert_id, alert.kind, alert.message, alert.conn_id, LEASE),
        )
        inserted = cursor.rowcount == 1
    connection.commit()
    return inserted


def _deliver(connection: Any, alert: Alert, budget: float, timeout: float) -> str:
    """Try ``alert`` until Slack takes it, refuses it, asks to wait, or ``budget`` seconds are spent; record how
    it ended. Returns the new state."""
    started = time.monotonic()
    pause = settings.SLACK_BACKOFF_SECONDS.value()
    attempts = alert.attempts
    retries_left = settings.SLACK_RETRIES.value()
    while True:
        left = budget - (time.monotonic() - started)
        attempt = post(
            alert.message, min(timeout, settings.SLACK_TIMEOUT_SECONDS.value(), max(left, 1.0)), alert.conn_id
        )
        attempts += 1
        if attempt.outcome != "retry" or attempt.retry_after is not None or retries_left == 0:
            break
        if time.monotonic() - started + pause + timeout > budget:
            break
        time.sleep(pause)
        pause *= 2
        retries_left -= 1
    return _settle(connection, alert, attempt, attempts)


def _settle(connection: Any, alert: Alert, attempt: Attempt, attempts: int) -> str:
    if attempt.outcome == "sent":
        state, wait = "sent", None
        log.info("Slack took alert %s (%s, try %d).", alert.alert_id, alert.conn_id, attempts)
    elif attempt.outcome == "refused":
        state, wait = "failed", None
        log.warning(
            "Slack refused alert %s (%s); it will not be retried: fix the %r connection (%s). "
            "Its text is in the log line above.",
            alert.alert_id,
            attempt.detail,
            alert.conn_id,
            how_to_set(alert.conn_id),
        )
    else:
        state = "pending"
        wait = dt.timedelta(seconds=attempt.retry_after) if attempt.retry_after is not None else PAUSE
        log.warning(
            "Slack did not take alert %s yet (%s); greenery_alert_delivery tries again in %d s.",
            alert.alert_id,
            attempt.detail,
            wait.total_seconds(),
        )
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "update {} set state = %s, attempts = %s, last_error = %s, "
                "sent_at = case when %s = 'sent' then now() end, "
                "next_attempt_at = now() + coalesce(%s, interval '0 seconds'), recorded_at = now() "
                "where alert_id = %s"
            ).format(_table()),
            (state, attempts, None if state == "sent" else attempt.detail, state, wait, alert.alert_id),
        )
    connection.commit()
    return state


def deliver_pending(budget: float = DELIVERY_BUDGET_SECONDS) -> dict[str, int]:
    """Deliver every recorded alert that is due (pending, or a try whose process died), oldest first, within
    ``budget`` seconds; returns how many ended in each state. Concurrent callers never take the same alert."""
    started = time.monotonic()
    counts = {"sent": 0, "pending": 0, "failed": 0}
    connection = warehouse_connection()
    try:
        ensure_table(connection)
        while time.monotonic() - started < budget:
            alert = _claim(connection)
            if alert is None:
                break
            left = budget - (time.monotonic() - started)
            counts[_deliver(connection, alert, left, settings.SLACK_TIMEOUT_SECONDS.value())] += 1
    finally:
        connection.close()
    return counts


def _claim(connection: Any) -> Alert | None:
    """The oldest due alert, leased to this caller (``sending`` until ``LEASE`` has passed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "update {table} set state = 'sending', next_attempt_at = now() + %s where alert_id = ("
                "select alert_id from {table} where state in ('pending', 'sending') and next_attempt_at <= now() "
                "order by created_at limit 1 for update skip locked) "
                "returning alert_id, kind, message, attempts, conn_id"
            ).format(table=_table()),
            (LEASE,),
        )
        row = cursor.fetchone()
    connection.commit()
    return Alert(*row) if row else None
