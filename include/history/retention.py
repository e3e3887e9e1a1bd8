"""A bounded run history: ``dbt_meta`` keeps ``GREENERY_HISTORY_RETENTION_DAYS`` (90) days of dbt results.

The daily run prunes it once, right after its ``dbt source freshness`` results are recorded: the ``source_freshness``
task calls ``prune_run_history`` as a Cosmos callback, and in the producer mode ``dbt_build`` calls it after that
step. Every invocation that started before the cutoff goes, with its node results and freshness checks (the
foreign keys cascade), so the dbt health page and the monitoring models read a table that stops growing. Pruning
is best effort: a warehouse that cannot be reached is logged, and the next daily run prunes what is left.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from psycopg2 import sql

from include import settings
from include.history.schema import INVOCATIONS, ensure_tables, meta_schema
from include.history.store import warehouse_connection
from include.redaction import redact

log = logging.getLogger(__name__)


def cutoff(days: int | None = None, now: dt.datetime | None = None) -> dt.datetime:
    """The start before which results are deleted: ``days`` (default: the setting) before ``now``."""
    days = settings.HISTORY_RETENTION_DAYS.value() if days is None else days
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)


def prune(connection: Any, days: int | None = None, now: dt.datetime | None = None) -> int:
    """Delete the invocations that started more than ``days`` before ``now`` (an invocation without a start: was
    recorded then), with their results, and commit. Returns how many invocations went."""
    ensure_tables(connection)
    with connection.cursor() as cursor:
        cursor.execute("set local lock_timeout = '10s'; set local statement_timeout = '10min'")
        # Two index conditions (started_at's index also finds its nulls), so the daily delete reads only old rows.
        cursor.execute(
            sql.SQL(
                "delete from {}.{} where started_at < %(cutoff)s or (started_at is null and recorded_at < %(cutoff)s)"
            ).format(sql.Identifier(meta_schema()), sql.Identifier(INVOCATIONS.name)),
            {"cutoff": cutoff(days, now)},
        )
        deleted = cursor.rowcount
    connection.commit()
    return deleted


def prune_run_history(
    project_dir: str | None = None,
    context: Mapping[str, Any] | None = None,
    conn_id: str = settings.WAREHOUSE_CONN_ID,
    **_: Any,
) -> None:
    """Cosmos callback of the daily run's ``source_freshness`` (and a step of ``dbt_build``): prune the history to
    ``GREENERY_HISTORY_RETENTION_DAYS``. Never raises: the freshness result stands as dbt reported it."""
    days = settings.HISTORY_RETENTION_DAYS.value()
    connection = None
    try:
        connection = warehouse_connection(conn_id)
        deleted = prune(connection, days)
    except Exception as error:
        log.warning(
            "Could not prune the dbt run history in %s: %s: %s. The next daily run tries again.",
            meta_schema(),
            type(error).__name__,
            redact(str(error)).strip(),
        )
        return
    finally:
        if connection is not None:
            connection.close()
    log.info(
        "Pruned the dbt run history in %s: deleted %d dbt invocation(s), with their results, older than %d days (%s).",
        meta_schema(),
        deleted,
        days,
        settings.HISTORY_RETENTION_DAYS.name,
    )
