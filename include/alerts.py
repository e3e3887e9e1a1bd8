"""Slack alerts for the greenery DAGs: what broke, why, and where its log is.

Messages go to the Airflow connection ``slack_alerts``, a Slack incoming webhook (connection type
``slackwebhook``, the webhook URL in the password field), through the Slack provider's ``SlackWebhookHook``.
Configure it with either environment variable:

    SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T000/B000/your-secret
    AIRFLOW_CONN_SLACK_ALERTS='{"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/..."}'

Without a connection each alert is written to the log as a warning instead, and nothing fails.

The alerts and what sends them:

- **failure** (``on_task_failure``, every task's ``on_failure_callback``): Airflow calls it once, when a task's
  last try failed, never for a try that will be retried. It names the dbt nodes that failed (a test with its
  failing row count), the first lines of dbt's error, the logical date, the try and a link to the log.
- **warning** (``notify_dbt_results``, called by the Cosmos callback in ``include.run_history`` after every
  dbt command): stale sources and tests that ended in ``warn``, when the dbt command itself succeeded.
- **recovery** (``on_dag_success``): a run succeeded and the run before it had failed.
- **run failure without a failed task** (``on_dag_failure``): the run hit its ``dagrun_timeout``.
- **lateness** (``daily_deadline()``): an Airflow deadline alert; the triggerer calls ``notify_deadline_missed``
  when a daily run has not succeeded within ``GREENERY_DAILY_DEADLINE_MINUTES`` of being queued.

Settings (environment variables): ``GREENERY_AIRFLOW_BASE_URL`` (the UI's address for links; default
Airflow's ``[api] base_url``), ``GREENERY_SLACK_TIMEOUT_SECONDS`` (10), ``GREENERY_SLACK_RETRIES`` (3; on
429, 5xx and timeouts, with a growing pause), ``GREENERY_SLACK_BACKOFF_SECONDS`` (1, the first pause),
``GREENERY_DAILY_DEADLINE_MINUTES`` (120).

Every text that leaves this module goes through ``redact`` (no webhook URL, no password) and is escaped and
shortened for Slack.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from include import settings
from include.dbt_artifacts import FRESHNESS_COMMAND, DbtInvocation, NodeResult

log = logging.getLogger(__name__)

SLACK_CONN_ID = settings.SLACK_CONN_ID
WEBHOOK_URL_ENV = "SLACK_WEBHOOK_URL"
CONNECTION_ENV = "AIRFLOW_CONN_SLACK_ALERTS"
BASE_URL_ENV = "GREENERY_AIRFLOW_BASE_URL"
DEADLINE_ENV = "GREENERY_DAILY_DEADLINE_MINUTES"

# Slack folds a message after ~4,000 characters; an alert is read on a phone, so keep it shorter.
MAX_MESSAGE_CHARS = 3000
MAX_ERROR_LINES = 6
MAX_ERROR_CHARS = 600
MAX_NODES_LISTED = 8
# A 429's Retry-After is honoured up to this many seconds: a callback must not hold a worker for minutes.


def _setting(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r} must be a number from {low:g} to {high:g}.")
    return value


# -- secrets -------------------------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@")
_SLACK_HOOK_PATH = re.compile(r"(?i)(hooks\.slack\.com/(?:services|workflows|triggers)/)[\w/-]+")
_PASSWORD_PAIR = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)")


def register_secret(value: str | None) -> None:
    """Never show ``value`` (a password, a webhook URL) in an alert or in a log line of this module."""
    if value and len(value.strip()) >= 4:
        _SECRETS.add(value.strip())


def redact(text: str) -> str:
    """``text`` without the secrets this process knows of, credentials in URLs and ``password=...`` pairs."""
    secrets = set(_SECRETS)
    for name in (WEBHOOK_URL_ENV, "PGPASSWORD"):
        register_value = os.environ.get(name, "").strip()
        if len(register_value) >= 4:
            secrets.add(register_value)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(r"\1:***@", text)
    text = _SLACK_HOOK_PATH.sub(r"\1***", text)
    return _PASSWORD_PAIR.sub(r"\1\2***", text)


class _RedactingFilter(logging.Filter):
    """slack_sdk logs the request URL when it retries; the URL holds the webhook's secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_slack_client_log = logging.getLogger(f"{__name__}.slack_client")
# INFO, not NOTSET: slack_sdk builds its DEBUG lines (URL and body) whenever the logger's own level allows it.
_slack_client_log.setLevel(logging.INFO)
_slack_client_log.addFilter(_RedactingFilter())


# -- Slack text ----------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def escape(text: str) -> str:
    """Text shown literally by Slack: its three control characters ``& < >`` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _clean(text: str) -> str:
    return _CONTROL.sub("", _ANSI.sub("", text))


def _code(name: Any) -> str:
    """A name (DAG, task, dbt node) in inline code; a backtick in it would end the code span."""
    text = escape(_clean(str(name)).replace("`", "'"))
    return f"`{text}`"


def error_excerpt(message: str | None) -> str | None:
    """The first lines of an error, without secrets, as a Slack code block (no formatting applies inside)."""
    if not message:
        return None
    lines = [
        line.rstrip()
        for line in _clean(redact(str(message))).strip().splitlines()
        # Paths into the temporary copy of the dbt project that no longer exists when anyone reads this.
        if line.strip() and not line.strip().startswith("compiled code at ")
    ]
    if not lines:
        return None
    text = "\n".join(lines[:MAX_ERROR_LINES]) + ("\n…" if len(lines) > MAX_ERROR_LINES else "")
    text = escape(shorten(text, MAX_ERROR_CHARS)).replace("```", "'''")
    return f"```{text}```"


def _fit(body: str, limit: int) -> str:
    """``body`` cut to ``limit`` characters without leaving a code block open."""
    if len(body) <= limit:
        return body
    body = body[: limit - 5].rstrip()
    if body.count("```") % 2:
        body += "```"
    return body + "\n…"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, minutes = divmod(int(minutes), 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _utc(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return escape(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return escape(str(value))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- what a message says -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFacts:
    """The facts about one task try that every task alert shows."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int | None = None
    max_tries: int | None = None
    map_index: int = -1
    logical_date: dt.datetime | None = None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskFacts:
        ti = context["ti"]
        dag_run = context.get("dag_run")
        logical_date = context.get("logical_date") or getattr(dag_run, "logical_date", None)
        map_index = getattr(ti, "map_index", None)
        return cls(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            try_number=getattr(ti, "try_number", None),
            max_tries=getattr(ti, "max_tries", None),
            map_index=map_index if isinstance(map_index, int) else -1,
            logical_date=logical_date,
        )

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number)

    def try_text(self) -> str:
        if not self.try_number:
            return "try unknown"
        # max_tries counts the retries; after a clear Airflow raises it, so the total can exceed retries + 1.
        if self.max_tries is not None and self.max_tries + 1 >= self.try_number:
            return f"try {self.try_number} of {self.max_tries + 1}"
        return f"try {self.try_number}"


def airflow_base_url() -> str:
    """The Airflow UI's address for links: ``GREENERY_AIRFLOW_BASE_URL``, else Airflow's ``[api] base_url``."""
    url = os.environ.get(BASE_URL_ENV, "").strip()
    if not url:
        try:
            from airflow.sdk.configuration import conf

            url = (conf.get("api", "base_url", fallback="") or "").strip()
        except Exception:
            url = os.environ.get("AIRFLOW__API__BASE_URL", "").strip()
    return (url or "http://localhost:8080").rstrip("/")


def run_url(dag_id: str, run_id: str) -> str:
    return f"{airflow_base_url()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_log_url(facts: TaskFacts) -> str:
    """The task try's page in the Airflow 3 UI (it opens on the log)."""
    url = f"{run_url(facts.dag_id, facts.run_id)}/tasks/{quote(facts.task_id, safe='')}"
    if facts.map_index >= 0:
        url += f"/mapped/{facts.map_index}"
    if facts.try_number:
        url += f"?try_number={facts.try_number}"
    return url


def _link(url: str, label: str) -> str:
    # Inside <url|label> a '|' or '>' in the URL would end it early; quote() already encoded both.
    return f"<{url}|{escape(label)}>"


def node_summary(result: NodeResult) -> str:
    """One bullet about one dbt node: what it is, what happened, and dbt's words for it."""
    what = f"{result.resource_type} {_code(result.name)}"
    if result.tested_node:
        target = result.tested_node + (f".{result.tested_column}" if result.tested_column else "")
        what += f" on {_code(target)}"
    if result.resource_type == "source" and (result.age_seconds is not None or result.max_loaded_at):
        thresholds = ", ".join(
            f"{kind} after {value}"
            for kind, value in (("warn", result.warn_after), ("error", result.error_after))
            if value
        )
        line = (
            f"• {what}: *{result.status}*, newest row {_utc(result.max_loaded_at)}, "
            f"*{_duration(result.age_seconds)} old*" + (f" ({thresholds})" if thresholds else "")
        )
        return line
    if result.resource_type == "test" and result.failures is not None and result.status in ("fail", "warn"):
        rows = _plural(result.failures, "row")
        outcome = f"*{rows} failed the test*" if result.status == "fail" else f"{rows} (warn)"
    else:
        outcome = f"*{result.status}*"
    line = f"• {what}: {outcome}"
    excerpt = error_excerpt(result.message)
    return f"{line}\n{excerpt}" if excerpt else line


def _node_lines(results: list[NodeResult], budget: int) -> list[str]:
    """Bullets for ``results`` within ``budget`` characters; what does not fit is counted, not cut in half."""
    lines: list[str] = []
    used = 0
    for index, result in enumerate(results):
        line = node_summary(result)
        if index >= MAX_NODES_LISTED or used + len(line) + 1 > budget:
            lines.append(f"… and {len(results) - index} more")
            break
        lines.append(line)
        used += len(line) + 1
    return lines


def _footer(facts: TaskFacts) -> str:
    date = _utc(facts.logical_date) if facts.logical_date else "none (manual run)"
    return (
        f"Logical date {date} · {facts.try_text()} · run {_code(facts.run_id)}\n"
        f"{_link(task_log_url(facts), 'Open the task log')}"
    )


def _message(header: str, body_lines: list[str], footer: str) -> str:
    body = _fit("\n".join([header, *body_lines]), MAX_MESSAGE_CHARS - len(footer) - 1)
    return f"{body}\n{footer}"


def failure_message(
    facts: TaskFacts, invocations: Iterable[DbtInvocation] = (), error: BaseException | str | None = None
) -> str:
    """The alert for a task whose last try failed: the failed dbt nodes, or the error when dbt did not say."""
    invocations = list(invocations)
    failed = [result for invocation in invocations for result in invocation.failed]
    warned = [result for invocation in invocations for result in invocation.warned]
    header = f":red_circle: *Failed:* {_code(facts.dag_id)} › {_code(facts.task_id)}"
    footer = _footer(facts)
    budget = MAX_MESSAGE_CHARS - len(header) - len(footer) - 100
    lines: list[str] = []
    if failed:
        kinds = "dbt source freshness" if all(r.resource_type == "source" for r in failed) else "dbt"
        lines.append(f"{kinds} reported {_plural(len(failed), 'failed node')}:")
        # What failed comes first; warnings get what room is left, at least a line saying how many there were.
        lines += _node_lines(failed, budget - (200 if warned else 0))
    elif error is not None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        lines.append(error_excerpt(text) or "The task failed without an error message.")
    else:
        lines.append("The task failed without an error message; the log says more.")
    if warned:
        lines.append(f"Also {_plural(len(warned), 'warning')}:")
        lines += _node_lines(warned, budget - sum(len(line) + 1 for line in lines))
    return _message(header, lines, footer)


def warning_message(facts: TaskFacts, invocations: Iterable[DbtInvocation]) -> str:
    """The alert for dbt warnings (stale sources, tests ending in warn) in a dbt command that succeeded."""
    invocations = list(invocations)
    warned = [result for invocation in invocations for result in invocation.warned]
    freshness = any(invocation.command == FRESHNESS_COMMAND for invocation in invocations)
    what = "Stale sources" if freshness and all(r.resource_type == "source" for r in warned) else "dbt warnings"
    header = f":warning: *{what}:* {_code(facts.dag_id)} › {_code(facts.task_id)} (the task went on)"
    footer = _footer(facts)
    return _message(header, _node_lines(warned, MAX_MESSAGE_CHARS - len(header) - len(footer) - 100), footer)


def recovery_message(dag_id: str, run_id: str, previous_run_id: str) -> str:
    return (
        f":large_green_circle: *Recovered:* {_code(dag_id)} run {_code(run_id)} succeeded; "
        f"the run before it, {_code(previous_run_id)}, had failed.\n"
        f"{_link(run_url(dag_id, run_id), 'Open the run')}"
    )


_RUN_FAILURE_REASONS = {
    "timed_out": "it ran longer than its dagrun_timeout; unfinished tasks were stopped",
    "all_tasks_deadlocked": "no task could start (a deadlock between task dependencies)",
}


def run_failure_message(dag_id: str, run_id: str, reason: str) -> str:
    said = _RUN_FAILURE_REASONS.get(reason, f"reason: {escape(reason)}")
    return (
        f":red_circle: *Run failed:* {_code(dag_id)} run {_code(run_id)}: {said}.\n"
        f"{_link(run_url(dag_id, run_id), 'Open the run')}"
    )


def deadline_message(dag_id: str, run_id: str, state: str | None, queued_at: Any, deadline_time: Any) -> str:
    return (
        f":hourglass: *Late:* {_code(dag_id)} run {_code(run_id)} has not succeeded by "
        f"{_utc(deadline_time)} (queued {_utc(queued_at)}, now {escape(str(state or 'unknown'))}).\n"
        f"{_link(run_url(dag_id, run_id), 'Open the run')}"
    )


# -- sending -------------------------------------------------------------------------------------------------


def _slack_connection_available() -> bool:
    """True when the ``slack_alerts`` connection exists (built from ``SLACK_WEBHOOK_URL`` when only that is set)."""
    webhook = os.environ.get(WEBHOOK_URL_ENV, "").strip()
    if webhook and not os.environ.get(CONNECTION_ENV):
        # Astro's .env and `make up` both pass the bare URL; Airflow reads AIRFLOW_CONN_* from the environment.
        os.environ[CONNECTION_ENV] = json.dumps({"conn_type": "slackwebhook", "password": webhook})
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

    Never raises. Retries 429, 5xx and timeouts with a growing pause; when Slack still refuses, or no connection
    is configured, the alert is written to the log as a warning instead.
    """
    text = _fit(redact(text), MAX_MESSAGE_CHARS)
    try:
        if not _slack_connection_available():
            log.warning(
                "No Slack connection %r (set %s or %s); the alert would have said:\n%s",
                SLACK_CONN_ID,
                WEBHOOK_URL_ENV,
                CONNECTION_ENV,
                text,
            )
            return False
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        from include.slack_retry import TransientSlackErrors

        retries = int(_setting("GREENERY_SLACK_RETRIES", 3, 0, 10))
        hook = SlackWebhookHook(
            slack_webhook_conn_id=SLACK_CONN_ID,
            timeout=int(_setting("GREENERY_SLACK_TIMEOUT_SECONDS", 10, 1, 120)),
            retry_handlers=[TransientSlackErrors(retries, _setting("GREENERY_SLACK_BACKOFF_SECONDS", 1, 0, 60))],
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


# -- Airflow callbacks ---------------------------------------------------------------------------------------

# dbt results of the task tries running in this process, kept from the Cosmos callback (after dbt) until the
# failure callback (after the task), which runs in the same process. Bounded: a `dag.test()` process runs many.
_DBT_RESULTS: OrderedDict[tuple[Any, ...], list[DbtInvocation]] = OrderedDict()
_ALERTED: OrderedDict[tuple[Any, ...], None] = OrderedDict()
_KEEP = 256


def _remember(store: OrderedDict, key: tuple[Any, ...], value: Any) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > _KEEP:
        store.popitem(last=False)


def notify_dbt_results(context: Mapping[str, Any], invocations: list[DbtInvocation]) -> None:
    """After a dbt command of a task: keep its results for the failure alert, and alert its warnings now if dbt
    succeeded (when it failed, the failure alert lists the warnings too: one message per task). Never raises."""
    try:
        facts = TaskFacts.from_context(context)
        _remember(_DBT_RESULTS, facts.key, [*_DBT_RESULTS.get(facts.key, []), *invocations])
        if any(invocation.failed for invocation in invocations):
            return
        if any(invocation.warned for invocation in invocations):
            send_alert(warning_message(facts, invocations))
    except Exception:
        log.exception("Could not alert the dbt warnings of this task")


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every task: one Slack message when a task's last try failed. Never raises."""
    try:
        facts = TaskFacts.from_context(context)
        if facts.key in _ALERTED:
            return  # wired twice (DAG default_args and the task itself): still one message
        _remember(_ALERTED, facts.key, None)
        invocations = _DBT_RESULTS.pop(facts.key, [])
        send_alert(failure_message(facts, invocations, context.get("exception")))
    except Exception:
        log.exception("Could not send the failure alert")


def _state(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def _previous_run(context: Mapping[str, Any]) -> tuple[str, str] | None:
    """(run_id, state) of the run before this one, by logical date; None for the first run or a run without one.

    The DAG processor answers through the task SDK; ``dag.test()`` runs callbacks in its own process, where
    the metadata database answers instead.
    """
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    if ti is None or dag_run is None or getattr(dag_run, "logical_date", None) is None:
        return None
    try:
        previous = ti.get_previous_dagrun()
        return (previous.run_id, _state(previous.state)) if previous else None
    except Exception as sdk_error:
        log.debug("Task SDK could not give the previous run (%s); asking the metadata database", sdk_error)
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        previous = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_run.dag_id, DagRun.logical_date < dag_run.logical_date)
            .order_by(DagRun.logical_date.desc())
            .limit(1)
        ).first()
        return (previous.run_id, _state(previous.state)) if previous else None


def on_dag_success(context: Mapping[str, Any]) -> None:
    """DAG ``on_success_callback``: the recovery message when the previous run had failed. Never raises."""
    try:
        previous = _previous_run(context)
        if previous and previous[1] == "failed":
            dag_run = context["dag_run"]
            send_alert(recovery_message(dag_run.dag_id, dag_run.run_id, previous[0]))
    except Exception:
        log.exception("Could not check for or send the recovery alert")


def on_dag_failure(context: Mapping[str, Any]) -> None:
    """DAG ``on_failure_callback``: speaks only when no task alert did (a timeout, a deadlock). Never raises."""
    try:
        reason = str(context.get("reason") or "")
        if reason == "task_failure":
            return  # the failed task has sent its own alert
        dag = context.get("dag")
        dag_id = getattr(dag, "dag_id", None) or getattr(context.get("dag_run"), "dag_id", "unknown")
        run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", "unknown"))
        send_alert(run_failure_message(dag_id, run_id, reason or "unknown"))
    except Exception:
        log.exception("Could not send the run failure alert")


async def notify_deadline_missed(context: Mapping[str, Any] | None = None, **_: Any) -> None:
    """Deadline callback, run by the triggerer when a run has not finished in time. Never raises."""
    try:
        dag_run = dict((context or {}).get("dag_run") or {})
        deadline = dict((context or {}).get("deadline") or {})
        text = deadline_message(
            dag_id=dag_run.get("dag_id", "unknown"),
            run_id=dag_run.get("dag_run_id") or dag_run.get("run_id") or "unknown",
            state=dag_run.get("state"),
            queued_at=dag_run.get("queued_at"),
            deadline_time=deadline.get("deadline_time"),
        )
        # The hook is synchronous; in a worker thread its connection lookup may block without stalling the
        # triggerer's event loop.
        await asyncio.to_thread(send_alert, text)
    except Exception:
        log.exception("Could not send the deadline alert")


def deadline_minutes() -> int:
    """Minutes after queueing when a daily run counts as late; 0 turns the lateness alert off."""
    return int(_setting(DEADLINE_ENV, 120, 0, 24 * 60))


def daily_deadline() -> Any:
    """The ``deadline=`` of ``greenery_daily``: alert when a run has not finished ``GREENERY_DAILY_DEADLINE_MINUTES``
    after it was queued. Counted from queueing, not from the logical date, so that a backfill of old dates does
    not alert at once. A run that succeeds in time cancels its deadline. None (no deadline) when the setting is 0:
    Airflow 3.3.2's ``airflow dags test`` crashes on a successful run of a DAG with a deadline."""
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    if deadline_minutes() == 0:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=dt.timedelta(minutes=deadline_minutes()),
        callback=AsyncCallback(notify_deadline_missed),
        name="greenery_daily_late",
    )
