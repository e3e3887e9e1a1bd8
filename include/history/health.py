"""The runs the dbt health page shows, read from the run history in ``dbt_meta`` (``include/health_site.py`` serves
the page; ``trends`` reads each node's history):

- ``recent_runs``: the last runs of each DAG, with their dbt commands, dbt's time, and the nodes whose last result in
  the run failed or warned (a node that failed and passed on its retry did not fail the run);
- ``run_timeline``: dbt's own start and end of every node one run built, and its critical path (``timeline``).

Each is one or two queries, kept cheap by the history's indexes (``schema.INDEXES``) and its retention.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from psycopg2 import sql
from psycopg2.extras import RealDictCursor

from include.history.artifacts import FAILED_STATUSES, FRESHNESS_COMMAND, WARNED_STATUSES
from include.history.schema import meta_schema
from include.history.timeline import TimedNode, critical_path

BUILT_TYPES = ("model", "snapshot", "seed")
_MESSAGE_CHARS = 300


def query(connection: Any, statement: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``statement`` (``{s}`` stands for the history schema), read in a read-only transaction."""
    with connection.cursor(cursor_factory=RealDictCursor) as cursor:
        cursor.execute("set transaction read only")
        # Timestamps come back in UTC, whatever the server's time zone: the page shows UTC, as Airflow's UI does.
        # Sorting a test's 90 days of results in memory rather than on disk.
        cursor.execute("set local statement_timeout = '20s'; set local timezone = 'UTC'; set local work_mem = '32MB'")
        cursor.execute(sql.SQL(statement).format(s=sql.Identifier(meta_schema())), params)
        rows = [dict(row) for row in cursor.fetchall()]
    connection.rollback()
    return rows


def _message(text: str | None) -> str | None:
    """dbt's message as the page shows it: its first line, cut short."""
    if not text:
        return None
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 1] + "…"


def _own_try(row: Mapping[str, Any]) -> int | None:
    """The try of the node's task, when it is the task that ran the command (the producer's node tasks keep theirs)."""
    return row["try_number"] if row["task_id"] == row["invocation_task_id"] else None


# The runs of a DAG, newest first by their first dbt command; every query below starts from these.
_RUNS = """
    runs as (
        select
            dag_id,
            run_id,
            min(started_at) as started_at,
            max(coalesce(started_at + elapsed_seconds * interval '1 second', generated_at)) as ended_at,
            row_number() over (partition by dag_id order by min(started_at) desc nulls last) as recency
        from {s}.invocations
        where dag_id is not null
        group by dag_id, run_id
    )"""

_RUN_INVOCATIONS = f"""
    with {_RUNS}
    select
        runs.dag_id, runs.run_id, runs.started_at as run_started_at, runs.ended_at as run_ended_at,
        i.invocation_id, i.command, i.status, i.started_at, i.elapsed_seconds, i.node_count, i.task_id, i.try_number
    from runs
    inner join {{s}}.invocations as i on i.dag_id = runs.dag_id and i.run_id = runs.run_id
    where runs.recency <= %(per_dag)s
    order by runs.started_at desc, i.started_at
"""

# Each node's last result in each run (a retry's result replaces the try before it), with the stale sources.
_RUN_PROBLEMS = f"""
    with {_RUNS},
    results as (
        select
            i.dag_id, i.run_id, n.unique_id, n.node_name as name, n.resource_type, n.status, n.failures, n.message,
            coalesce(n.task_id, i.task_id) as task_id, i.task_id as invocation_task_id, i.try_number,
            coalesce(n.completed_at, i.generated_at) as finished_at
        from runs
        inner join {{s}}.invocations as i on i.dag_id = runs.dag_id and i.run_id = runs.run_id
        inner join {{s}}.node_results as n on n.invocation_id = i.invocation_id
        where runs.recency <= %(per_dag)s
        union all
        select
            i.dag_id, i.run_id, f.unique_id, f.source_name || '.' || f.table_name, 'source', f.status, null,
            coalesce(f.error_message, 'newest row ' || round(f.age_seconds / 3600) || ' h old'),
            coalesce(f.task_id, i.task_id), i.task_id, i.try_number, coalesce(f.snapshotted_at, i.generated_at)
        from runs
        inner join {{s}}.invocations as i on i.dag_id = runs.dag_id and i.run_id = runs.run_id
        inner join {{s}}.source_freshness as f on f.invocation_id = i.invocation_id
        where runs.recency <= %(per_dag)s
    ),
    last_results as (
        select distinct on (dag_id, run_id, unique_id) *
        from results
        order by dag_id, run_id, unique_id, finished_at desc nulls last
    )
    select * from last_results
    where status = any(%(problems)s) or resource_type not in ('test', 'unit_test', 'source')
"""


def recent_runs(connection: Any, per_dag: int = 30) -> list[dict[str, Any]]:
    """The last ``per_dag`` runs of each DAG that ran dbt, newest first: when dbt started and ended in it, its dbt
    commands, how many nodes it built and which failed or warned (their last result in the run)."""
    params = {"per_dag": per_dag, "problems": sorted(FAILED_STATUSES | WARNED_STATUSES)}
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for row in query(connection, _RUN_INVOCATIONS, params):
        key = (row["dag_id"], row["run_id"])
        run = runs.setdefault(
            key,
            {
                "dag_id": row["dag_id"],
                "run_id": row["run_id"],
                "started_at": row["run_started_at"],
                "ended_at": row["run_ended_at"],
                "dbt_seconds": _seconds_between(row["run_started_at"], row["run_ended_at"]),
                "invocations": [],
                "built": 0,
                "failed": [],
                "warned": [],
            },
        )
        run["invocations"].append(
            {
                "command": row["command"],
                "status": row["status"],
                "started_at": row["started_at"],
                "elapsed_seconds": row["elapsed_seconds"],
                "nodes": row["node_count"],
                "task_id": row["task_id"],
                "try_number": row["try_number"],
            }
        )
    for row in query(connection, _RUN_PROBLEMS, params):
        run = runs.get((row["dag_id"], row["run_id"]))
        if run is None:
            continue
        if row["resource_type"] in BUILT_TYPES and row["status"] not in ("skipped",):
            run["built"] += 1
        if row["status"] in FAILED_STATUSES:
            group = "failed"
        elif row["status"] in WARNED_STATUSES:
            group = "warned"
        else:
            continue
        run[group].append(
            {
                "unique_id": row["unique_id"],
                "name": row["name"],
                "resource_type": row["resource_type"],
                "status": row["status"],
                "failures": row["failures"],
                "message": _message(row["message"]),
                "task_id": row["task_id"],
                "try_number": _own_try(row),
            }
        )
    for run in runs.values():
        run["status"] = "failed" if run["failed"] else "warned" if run["warned"] else "success"
        for group in ("failed", "warned"):
            run[group].sort(key=lambda node: node["name"])
    return list(runs.values())


def _seconds_between(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def latest_run(connection: Any, dag_id: str) -> str | None:
    """The newest run of ``dag_id`` that ran dbt, by its first dbt command."""
    rows = query(
        connection,
        "select run_id from {s}.invocations where dag_id = %(dag_id)s "
        "group by run_id order by min(started_at) desc nulls last limit 1",
        {"dag_id": dag_id},
    )
    return rows[0]["run_id"] if rows else None


_TIMELINE = """
    select
        n.unique_id, n.node_name as name, n.resource_type, n.status, n.started_at, n.completed_at,
        n.execution_seconds, n.failures, n.message, i.command, i.invocation_id,
        coalesce(n.task_id, i.task_id) as task_id, i.task_id as invocation_task_id, i.try_number
    from {s}.invocations as i
    inner join {s}.node_results as n on n.invocation_id = i.invocation_id
    where i.dag_id = %(dag_id)s and i.run_id = %(run_id)s and n.status <> 'skipped' and n.started_at is not null
    union all
    select
        'source freshness:' || i.invocation_id, 'source freshness (' || i.node_count || ' tables)',
        'source freshness', i.status, i.started_at, i.started_at + i.elapsed_seconds * interval '1 second',
        i.elapsed_seconds, null, null, i.command, i.invocation_id, i.task_id, i.task_id, i.try_number
    from {s}.invocations as i
    where i.dag_id = %(dag_id)s and i.run_id = %(run_id)s and i.command = %(freshness)s and i.started_at is not null
    order by 5, 6
"""


def run_timeline(
    connection: Any, dag_id: str, run_id: str, parents: Mapping[str, frozenset[str]] | None = None
) -> dict[str, Any] | None:
    """dbt's own start and end of every node the run built or tested (a retried node once per try), and the
    critical path through them (``timeline.critical_path``; ``parents`` from the manifest). None: no such run."""
    rows = query(connection, _TIMELINE, {"dag_id": dag_id, "run_id": run_id, "freshness": FRESHNESS_COMMAND})
    if not rows:
        return None
    timed = [TimedNode(row["unique_id"], row["started_at"], row["completed_at"] or row["started_at"]) for row in rows]
    path = critical_path(timed, parents or {})
    on_path = set(path)
    start = min(node.started_at for node in timed)
    end = max(node.completed_at for node in timed)
    nodes = [
        {
            "unique_id": row["unique_id"],
            "name": row["name"],
            "resource_type": row["resource_type"],
            "status": row["status"],
            "command": row["command"],
            "started_at": row["started_at"],
            "completed_at": row["completed_at"],
            "execution_seconds": row["execution_seconds"],
            "failures": row["failures"],
            "message": _message(row["message"]) if row["status"] in FAILED_STATUSES | WARNED_STATUSES else None,
            "critical": index in on_path,
            "task_id": row["task_id"],
            "try_number": _own_try(row),
        }
        for index, row in enumerate(rows)
    ]
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "started_at": start,
        "ended_at": end,
        "dbt_seconds": _seconds_between(start, end),
        "nodes": nodes,
        "critical_path": [rows[index]["name"] for index in path],
        "critical_seconds": round(sum(timed[index].seconds for index in path), 3),
        "has_dependencies": bool(parents),
    }
