"""Which failed dbt commands a retry can heal.

A data test that finds bad rows, or a source that is stale, gives the same answer a minute later: retrying only
delays the alert. A command that failed because the warehouse went away (a restart, a fail-over, a laptop that
slept) usually succeeds on the next try. So test and freshness tasks carry the same retries as model tasks, and
this Cosmos callback, which runs after their dbt command and before Cosmos decides the task's fate, fails them at
once — with Airflow's ``AirflowFailException``, which skips the remaining tries — unless every failure dbt reported
was a dropped connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from include.history.artifacts import DbtInvocation, NodeResult, read_invocations

log = logging.getLogger(__name__)

# What PostgreSQL and libpq say when the connection, not the query, failed (lower case). SQLSTATE classes 08
# (connection exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now) and 40001/40P01
# (serialization failure, deadlock: the transaction was rolled back and may simply be run again).
DROPPED_CONNECTION_MESSAGES = (
    "connection refused",
    "could not connect to server",
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "terminating connection because of crash of another server process",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "no connection to the server",
    "connection already closed",
    "ssl syscall error: eof detected",
    "could not receive data from server",
    "could not send data to server",
    "could not serialize access",
    "deadlock detected",
)

# Cosmos resolves a callback given as a dotted path when the task runs.
CALLBACK = "include.dbt_tasks.retries.fail_unless_connection_dropped"


def is_dropped_connection(message: str | None) -> bool:
    """True when ``message`` (a dbt node's error) says the connection to the warehouse failed."""
    text = (message or "").lower()
    return any(pattern in text for pattern in DROPPED_CONNECTION_MESSAGES)


def failures_a_retry_cannot_heal(invocations: Iterable[DbtInvocation]) -> list[NodeResult]:
    """Failed node results that are not a dropped connection (a failing test, a stale source, an SQL error)."""
    return [
        result
        for invocation in invocations
        for result in invocation.failed
        if not is_dropped_connection(result.message)
    ]


def fail_unless_connection_dropped(project_dir: str | Path, context: Mapping[str, Any] | None = None, **_: Any) -> None:
    """Cosmos ``callback`` of test and freshness tasks: raise ``AirflowFailException`` (no retry) when dbt failed on
    the data; return (Cosmos then fails the try as usual, and Airflow retries it) when it failed only because the
    connection dropped, or when it did not fail."""
    try:
        invocations = read_invocations(Path(project_dir) / "target")
    except Exception:
        log.exception("Could not read the dbt artifacts in %s; Airflow's retries decide", project_dir)
        return
    failures = failures_a_retry_cannot_heal(invocations)
    if failures:
        detail = "; ".join(f"{result.name}: {(result.message or result.status).strip()}" for result in failures)
        raise AirflowFailException(
            f"dbt invocation completed with errors: {detail}. Not retried: a retry cannot heal it."
        )
    if any(invocation.failed for invocation in invocations):
        log.warning(
            "dbt failed because the warehouse connection dropped; Airflow retries this task if it has tries left"
        )
