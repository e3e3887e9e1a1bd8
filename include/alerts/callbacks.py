"""The Airflow callbacks that turn task and run events into Slack alerts.

- **failure** (``on_task_failure``, every task's ``on_failure_callback``): Airflow calls it once, when a task's
  last try failed, never for a try that will be retried. It mentions the owners of the dbt nodes that failed
  (``include.alerts.owners``), names those nodes (a test with its failing row count), the first lines of dbt's
  error, the logical date, the try and a link to the log. When every failed node belongs to one dbt group and
  the connection ``slack_alerts_<group>`` exists, it goes there; otherwise to ``slack_alerts``, one message
  per failed task whatever the number of groups.
- **warning** (``notify_dbt_results``, called by the Cosmos callback in ``include.history.store`` after every
  dbt command): stale sources and tests that ended in ``warn``, when the dbt command itself succeeded.
- **recovery** (``on_dag_success``): a run succeeded and the run before it had failed.
- **run failure without a failed task** (``on_dag_failure``): the run hit its ``dagrun_timeout``.
- **lateness** (``daily_deadline()``): an Airflow deadline alert; the triggerer calls ``notify_deadline_missed``
  when a daily run has not succeeded within ``GREENERY_DAILY_DEADLINE_MINUTES`` of being queued.

Plain functions rather than the Slack provider's ``BaseNotifier`` classes: a notifier renders Jinja templates
on every call and re-raises what its ``notify`` raises, while these have nothing to template and must never
raise (an exception in a callback would hide the task's own result).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from include import settings
from include.alerts.messages import (
    TaskFacts,
    deadline_message,
    failure_message,
    recovery_message,
    run_failure_message,
    warning_message,
)
from include.alerts.outbox import raise_alert
from include.alerts.owners import ownership
from include.alerts.slack import connection_for
from include.history.artifacts import DbtInvocation

log = logging.getLogger(__name__)

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


def _key_text(key: tuple[Any, ...]) -> str:
    """A task try's key as the outbox's alert id: dag, run, task, map index, try."""
    return ":".join(str(part) for part in key)


def notify_dbt_results(context: Mapping[str, Any], invocations: list[DbtInvocation]) -> None:
    """After a dbt command of a task: keep its results for the failure alert, and alert its warnings now if dbt
    succeeded (when it failed, the failure alert lists the warnings too: one message per task). Never raises."""
    try:
        facts = TaskFacts.from_context(context)
        _remember(_DBT_RESULTS, facts.key, [*_DBT_RESULTS.get(facts.key, []), *invocations])
        if any(invocation.failed for invocation in invocations):
            return
        if any(invocation.warned for invocation in invocations):
            ids = ",".join(invocation.invocation_id for invocation in invocations)
            raise_alert(f"warning:{_key_text(facts.key)}:{ids}", "warning", warning_message(facts, invocations))
    except Exception:
        log.exception("Could not alert the dbt warnings of this task")


def failed_nodes(invocations: list[DbtInvocation], task: Any) -> list[str]:
    """Unique ids of the dbt nodes a failure is about: those dbt reported failed, else the task's own node (a
    Cosmos node task carries it in ``extra_context``; a test task's node is the model it tests)."""
    failed = [result.unique_id for invocation in invocations for result in invocation.failed]
    if failed:
        return failed
    node = (getattr(task, "extra_context", None) or {}).get("dbt_node_config") or {}
    return [node["unique_id"]] if node.get("unique_id") else []


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every task: one Slack message when a task's last try failed, mentioning the
    owners of what failed, in their group's channel when it has one. Never raises."""
    try:
        facts = TaskFacts.from_context(context)
        if facts.key in _ALERTED:
            return  # wired twice (DAG default_args and the task itself): still one message
        _remember(_ALERTED, facts.key, None)
        invocations = _DBT_RESULTS.pop(facts.key, [])
        owned = ownership(failed_nodes(invocations, context.get("task")))
        text = failure_message(facts, invocations, context.get("exception"), owned.owners)
        raise_alert(f"failure:{_key_text(facts.key)}", "failure", text, connection_for(owned.group))
    except Exception:
        log.exception("Could not send the failure alert")


def _state(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def _previous_run(context: Mapping[str, Any]) -> tuple[str, str, dt.datetime | None, dt.datetime | None] | None:
    """(run_id, state, end_date) of the run before this one, by logical date, and when this one started; None
    for the first run or a run without a logical date.

    The DAG processor answers through the task SDK. The metadata-database fallback stays because ``dag.test()``
    and ``airflow dags test`` run DAG callbacks in their own process, where no API server answers the SDK; they
    also give a run its logical date as start date, so there this run started when its first task did.
    """
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    if ti is None or dag_run is None or getattr(dag_run, "logical_date", None) is None:
        return None
    try:
        previous = ti.get_previous_dagrun()
        if previous is None:
            return None
        return previous.run_id, _state(previous.state), previous.end_date, dag_run.start_date
    except Exception as sdk_error:
        log.debug("Task SDK could not give the previous run (%s); asking the metadata database", sdk_error)
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        previous = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_run.dag_id, DagRun.logical_date < dag_run.logical_date)
            .order_by(DagRun.logical_date.desc())
            .limit(1)
        ).first()
        if previous is None:
            return None
        started = session.scalar(
            select(func.min(TaskInstance.start_date)).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        )
        return previous.run_id, _state(previous.state), previous.end_date, started or dag_run.start_date


def on_dag_success(context: Mapping[str, Any]) -> None:
    """DAG ``on_success_callback``: the recovery message when the previous run (by logical date) failed and had
    finished before this one started. A run beside it (a backfill's runs side by side) or one still going is
    not something this run recovered from. Never raises."""
    try:
        previous = _previous_run(context)
        if previous is None:
            return
        previous_run_id, state, previous_end, started = previous
        if state == "failed" and previous_end is not None and started is not None and previous_end <= started:
            dag_run = context["dag_run"]
            text = recovery_message(dag_run.dag_id, dag_run.run_id, previous_run_id)
            raise_alert(f"recovered:{dag_run.dag_id}:{dag_run.run_id}", "recovered", text)
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
        text = run_failure_message(dag_id, run_id, reason or "unknown")
        raise_alert(f"run_failed:{dag_id}:{run_id}", "run_failed", text)
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
        run = dag_run.get("dag_run_id") or dag_run.get("run_id") or "unknown"
        await asyncio.to_thread(raise_alert, f"late:{dag_run.get('dag_id', 'unknown')}:{run}", "late", text)
    except Exception:
        log.exception("Could not send the deadline alert")


def deadline_minutes() -> float:
    """Minutes after queueing when a daily run counts as late; 0 turns the lateness alert off."""
    return settings.DAILY_DEADLINE_MINUTES.value()


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
