"""What the alerts say, as pure functions of what happened: Slack mrkdwn text, escaped and shortened.

Nothing here sends or reads Airflow's state; ``include.alerts.callbacks`` gathers the facts and
``include.alerts.slack`` delivers the text. Every text that leaves this module went through ``redact``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from include import settings
from include.history.artifacts import FRESHNESS_COMMAND, DbtInvocation, NodeResult
from include.redaction import redact

log = logging.getLogger(__name__)

# Slack folds a message after ~4,000 characters; an alert is read on a phone, so keep it shorter.
MAX_MESSAGE_CHARS = 3000
MAX_ERROR_LINES = 6
MAX_ERROR_CHARS = 600
MAX_NODES_LISTED = 8
MAX_OWNERS_LISTED = 10

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Slack ids: a member (U..., W... on Enterprise Grid) or a user group (S...), upper-case letters and digits.
_SLACK_MEMBER = re.compile(r"[UW][A-Z0-9]{8,20}")
_SLACK_USER_GROUP = re.compile(r"S[A-Z0-9]{8,20}")


def escape(text: str) -> str:
    """Text shown literally by Slack: its three control characters ``& < >`` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(owner: str) -> str:
    """An owner as Slack shows it: a member id as an @-mention (``<@U...>``), a user-group id as the group's
    mention (``<!subteam^S...>``), anything else (a name, a handle) as plain text."""
    owner = _clean(owner).strip()
    if _SLACK_MEMBER.fullmatch(owner):
        return f"<@{owner}>"
    if _SLACK_USER_GROUP.fullmatch(owner):
        return f"<!subteam^{owner}>"
    return escape(shorten(owner, 80))


def owners_line(owners: Sequence[str]) -> str | None:
    """``Owners: <@U...>, ...``, or None without owners."""
    shown = [mention(owner) for owner in owners[:MAX_OWNERS_LISTED]]
    if len(owners) > MAX_OWNERS_LISTED:
        shown.append(f"and {len(owners) - MAX_OWNERS_LISTED} more")
    return f"Owners: {', '.join(shown)}" if shown else None


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


def fit(body: str, limit: int) -> str:
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
    # The try failed with AirflowFailException (a data test, a stale source): no retry follows, whatever is left.
    not_retried: bool = False

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskFacts:
        from airflow.sdk.exceptions import AirflowFailException

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
            not_retried=isinstance(context.get("exception"), AirflowFailException),
        )

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number)

    def try_text(self) -> str:
        if not self.try_number:
            return "try unknown"
        if self.not_retried and self.max_tries is not None and self.max_tries + 1 > self.try_number:
            return f"try {self.try_number}, not retried"
        # max_tries counts the retries; after a clear Airflow raises it, so the total can exceed retries + 1.
        if self.max_tries is not None and self.max_tries + 1 >= self.try_number:
            return f"try {self.try_number} of {self.max_tries + 1}"
        return f"try {self.try_number}"


def airflow_base_url() -> str:
    """The Airflow UI's address for links: ``GREENERY_AIRFLOW_BASE_URL``, else Airflow's ``[api] base_url``."""
    try:
        url = settings.AIRFLOW_BASE_URL.value()
    except settings.ConfigurationError as error:
        # A bad link setting must not cost the alert itself: say so, and link to Airflow's own address.
        log.warning("%s Alert links use Airflow's [api] base_url instead.", error)
        url = None
    if not url:
        from airflow.sdk.configuration import conf

        url = (conf.get("api", "base_url", fallback="") or "").strip()
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
    body = fit("\n".join([header, *body_lines]), MAX_MESSAGE_CHARS - len(footer) - 1)
    return f"{body}\n{footer}"


def failure_message(
    facts: TaskFacts,
    invocations: Iterable[DbtInvocation] = (),
    error: BaseException | str | None = None,
    owners: Sequence[str] = (),
) -> str:
    """The alert for a task whose last try failed: who owns what failed (``owners``: Slack ids or names), the
    failed dbt nodes, or the error when dbt did not say."""
    invocations = list(invocations)
    failed = [result for invocation in invocations for result in invocation.failed]
    warned = [result for invocation in invocations for result in invocation.warned]
    header = f":red_circle: *Failed:* {_code(facts.dag_id)} › {_code(facts.task_id)}"
    owners_text = owners_line(list(owners))
    if owners_text:
        header += f"\n{owners_text}"  # under the header, where cutting a long message never reaches it
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
