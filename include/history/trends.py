"""Each node's history as the dbt health page charts it, read from ``dbt_meta``: a model's time in its last builds
with a regression flag, a test's pass/warn/fail results with failing-row counts, a source's freshness checks against
its thresholds. One query each (a window over the node's results, which ``schema.INDEXES`` keeps cheap).
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from include.history.artifacts import FAILED_STATUSES, WARNED_STATUSES
from include.history.health import BUILT_TYPES, query

# A model is flagged when its newest build took more than REGRESSION_FACTOR times the median of the builds before it,
# and at least REGRESSION_MIN_SECONDS more: a view going from 0.05 s to 0.2 s is noise, not a regression.
REGRESSION_FACTOR = 2.0
REGRESSION_MIN_SECONDS = 1.0
TEST_TYPES = ("test", "unit_test")
_PERIOD_HOURS = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}


def _last_results(kind: str) -> str:
    """Each node's last ``%(runs)s`` results of ``kind`` (built or tested nodes), oldest first."""
    statuses = "n.status = 'success'" if kind == "built" else "n.status <> 'skipped'"
    types = BUILT_TYPES if kind == "built" else TEST_TYPES
    return f"""
        select * from (
            select
                n.unique_id, n.node_name as name, n.resource_type, n.status, n.started_at, n.execution_seconds,
                n.failures, n.tested_node, i.dag_id, i.run_id,
                row_number() over (partition by n.unique_id order by n.started_at desc) as recency
            from {{s}}.node_results as n
            inner join {{s}}.invocations as i on i.invocation_id = n.invocation_id
            where n.resource_type in ({", ".join(f"'{t}'" for t in types)}) and {statuses}
                and n.started_at is not null
        ) as ranked
        where recency <= %(runs)s
        order by unique_id, started_at
    """


def _by_node(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["unique_id"], []).append(row)
    return grouped


def regression(seconds: list[float]) -> tuple[float | None, bool]:
    """The median of the builds before the newest (``seconds`` oldest first), and whether the newest is a
    regression: more than ``REGRESSION_FACTOR`` times that median and ``REGRESSION_MIN_SECONDS`` more."""
    if len(seconds) < 2:
        return None, False
    median = statistics.median(seconds[:-1])
    latest = seconds[-1]
    return median, latest > REGRESSION_FACTOR * median and latest - median >= REGRESSION_MIN_SECONDS


def model_trends(connection: Any, runs: int = 30) -> list[dict[str, Any]]:
    """Per model, snapshot and seed: the time of its last ``runs`` successful builds (oldest first), their median
    before the newest, and whether the newest is a regression (``regression``). Regressions first."""
    trends = []
    for unique_id, results in _by_node(query(connection, _last_results("built"), {"runs": runs})).items():
        seconds = [row["execution_seconds"] or 0.0 for row in results]
        median, flagged = regression(seconds)
        trends.append(
            {
                "unique_id": unique_id,
                "name": results[-1]["name"],
                "resource_type": results[-1]["resource_type"],
                "latest_seconds": seconds[-1],
                "median_seconds": median,
                "ratio": round(seconds[-1] / median, 2) if median else None,
                "regression": flagged,
                "builds": [
                    {"started_at": row["started_at"], "seconds": row["execution_seconds"], "run_id": row["run_id"]}
                    for row in results
                ],
            }
        )
    return sorted(trends, key=lambda trend: (not trend["regression"], trend["name"]))


def test_trends(connection: Any, runs: int = 30) -> list[dict[str, Any]]:
    """Per data and unit test: its last ``runs`` results (oldest first) with failing-row counts, and how many
    passed, warned and failed. The ones whose newest result failed come first, then those that ever did."""
    trends = []
    for unique_id, results in _by_node(query(connection, _last_results("tested"), {"runs": runs})).items():
        statuses = [row["status"] for row in results]
        trends.append(
            {
                "unique_id": unique_id,
                "name": results[-1]["name"],
                "tested_node": results[-1]["tested_node"],
                "passed": sum(status == "pass" for status in statuses),
                "warned": sum(status in WARNED_STATUSES for status in statuses),
                "failed": sum(status in FAILED_STATUSES for status in statuses),
                "last_status": statuses[-1],
                "last_failures": results[-1]["failures"],
                "results": [
                    {
                        "started_at": row["started_at"],
                        "status": row["status"],
                        "failures": row["failures"],
                        "run_id": row["run_id"],
                    }
                    for row in results
                ],
            }
        )
    return sorted(
        trends,
        key=lambda t: (t["last_status"] not in FAILED_STATUSES, not (t["failed"] or t["warned"]), t["name"]),
    )


_FRESHNESS = """
    select * from (
        select
            f.unique_id, f.source_name, f.table_name, f.status, f.snapshotted_at, f.age_seconds, f.warn_after,
            f.error_after, f.error_message,
            row_number() over (partition by f.unique_id order by f.snapshotted_at desc) as recency
        from {s}.source_freshness as f
        where f.snapshotted_at is not null
    ) as ranked
    where recency <= %(runs)s
    order by unique_id, snapshotted_at
"""


def hours(period: str | None) -> float | None:
    """A freshness threshold as the history keeps it (``12 hours``, ``1 day``) in hours; None when there is none."""
    match = re.fullmatch(r"(\d+) (minute|hour|day)s?", (period or "").strip())
    return int(match[1]) * _PERIOD_HOURS[match[2]] if match else None


def freshness_trends(connection: Any, runs: int = 30) -> list[dict[str, Any]]:
    """Per source table: the age of its newest row at each of its last ``runs`` freshness checks (oldest first),
    against its warn and error thresholds (the newest check's, in hours)."""
    trends = []
    for unique_id, checks in _by_node(query(connection, _FRESHNESS, {"runs": runs})).items():
        newest = checks[-1]
        trends.append(
            {
                "unique_id": unique_id,
                "name": f"{newest['source_name']}.{newest['table_name']}",
                "warn_after": newest["warn_after"],
                "error_after": newest["error_after"],
                "warn_hours": hours(newest["warn_after"]),
                "error_hours": hours(newest["error_after"]),
                "last_status": newest["status"],
                "last_age_hours": _age_hours(newest["age_seconds"]),
                "stale": sum(check["status"] != "pass" for check in checks),
                "checks": [
                    {
                        "checked_at": check["snapshotted_at"],
                        "age_hours": _age_hours(check["age_seconds"]),
                        "status": check["status"],
                    }
                    for check in checks
                ],
            }
        )
    return sorted(trends, key=lambda trend: (trend["last_status"] == "pass", trend["name"]))


def _age_hours(seconds: float | None) -> float | None:
    return round(seconds / 3600, 2) if seconds is not None else None
