"""The trigger form's ``rerun_failed_of``: rebuild what failed in an earlier run of ``greenery_daily``.

The earlier run's results are in the warehouse: ``dbt_meta`` keeps every node's result per dbt command, and
the last result of a node in a run is what counts (a model that failed once and succeeded on its retry did
not fail). A node task that failed without a dbt result (killed, out of memory) counts too, from Airflow's
own task states. Each failed node becomes a dbt selection of itself and everything downstream: a model
``fct_orders+``, a snapshot ``orders_snapshot+``, a source's test ``source:greenery.orders+``. A failed data
test reruns with the model it tests (``<model>+``): in this DAG a model's tests are one task right after it,
and a table rebuilt from fixed raw data is what the test must see. The nodes that were ``upstream_failed``
are downstream of a failure, so they come back with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg2 import sql

from include.dbt_tasks.selection import node_selector
from include.history.artifacts import FAILED_STATUSES
from include.history.store import meta_schema

LATEST = "latest"


def latest_run(connection: Any, dag_id: str, current_run_id: str) -> str | None:
    """The newest run of ``dag_id`` other than ``current_run_id`` that ran a dbt command, by its first one."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "select run_id from {}.invocations where dag_id = %s and run_id <> %s "
                "group by run_id order by min(started_at) desc nulls last limit 1"
            ).format(sql.Identifier(meta_schema())),
            (dag_id, current_run_id),
        )
        row = cursor.fetchone()
    connection.commit()
    return row[0] if row else None


def dags_of_run(connection: Any, run_id: str) -> list[str]:
    """The DAGs that have a run ``run_id`` with dbt results (a run id is unique only within its DAG)."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("select distinct dag_id from {}.invocations where run_id = %s order by 1").format(
                sql.Identifier(meta_schema())
            ),
            (run_id,),
        )
        rows = cursor.fetchall()
    connection.commit()
    return [row[0] for row in rows if row[0]]


def failed_nodes(connection: Any, dag_id: str, run_id: str) -> list[str]:
    """The unique ids whose last result in the run was a failure."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "select unique_id, status from ("
                "  select r.unique_id, r.status, row_number() over ("
                "    partition by r.unique_id"
                "    order by coalesce(r.completed_at, i.generated_at) desc nulls last, i.generated_at desc nulls last"
                "  ) as recency"
                "  from {schema}.node_results r join {schema}.invocations i using (invocation_id)"
                "  where i.dag_id = %s and i.run_id = %s"
                ") last_results where recency = 1 order by unique_id"
            ).format(schema=sql.Identifier(meta_schema())),
            (dag_id, run_id),
        )
        rows = cursor.fetchall()
    connection.commit()
    return [unique_id for unique_id, status in rows if status in FAILED_STATUSES]


def _anchor(manifest: Mapping[str, Any], unique_id: str) -> str | None:
    """The node whose rebuild reruns ``unique_id``: itself, or for a data test the node it tests."""
    node = manifest.get("nodes", {}).get(unique_id) or manifest.get("unit_tests", {}).get(unique_id)
    if unique_id in manifest.get("sources", {}):
        return unique_id
    if node is None:
        return None  # gone from the project since that run
    if node["resource_type"] == "unit_test":
        return node.get("model") and _model_id(manifest, node["model"])
    if node["resource_type"] == "test":
        return node.get("attached_node") or next(iter((node.get("depends_on") or {}).get("nodes") or []), None)
    return unique_id


def _model_id(manifest: Mapping[str, Any], name: str) -> str | None:
    return next((uid for uid, node in manifest.get("nodes", {}).items() if node.get("name") == name), None)


def criteria(manifest: Mapping[str, Any], unique_ids: Iterable[str]) -> list[str]:
    """dbt selection criteria that rebuild ``unique_ids`` and everything downstream of them."""
    found = set()
    for unique_id in unique_ids:
        anchor = _anchor(manifest, unique_id)
        if anchor is None:
            continue
        if anchor in manifest.get("sources", {}) or anchor in manifest.get("nodes", {}):
            found.add(f"{node_selector(manifest, anchor)}+")
    return sorted(found)
