"""End-to-end harness: a warehouse database with generated shop data, and ``dag.test()`` runs of the real DAG files
against it (Airflow's metadata in the test session's cluster, every task run in this process, one at a time)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg2
import pytest

from include import settings
from tests.alerts.slack_stub import SlackWebhookStub
from tests.dags.conftest import dbt_manifest  # noqa: F401  (shared session fixture)

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
MART_SCHEMAS = ("analytics_core", "analytics_marketing", "analytics_product")


@dataclass
class Warehouse:
    """A database of the test cluster holding greenery's raw tables, wired to the DAGs as ``greenery_warehouse``."""

    dbname: str
    dsn: str
    libpq_env: dict[str, str]

    def query(self, statement: str, *args: Any) -> list[tuple]:
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(statement, args)
            rows = cur.fetchall() if cur.description else []
        conn.close()
        return rows

    def execute(self, statement: str, *args: Any) -> None:
        self.query(statement, *args)

    def mart_tables(self) -> list[str]:
        rows = self.query(
            "select table_schema || '.' || table_name from information_schema.tables"
            " where table_schema = any(%s) and table_type = 'BASE TABLE' order by 1",
            list(MART_SCHEMAS),
        )
        return [row[0] for row in rows]

    def fingerprint(self) -> dict[str, tuple[int, str]]:
        """Row count and a hash of every row, per mart table: equal fingerprints mean identical contents."""
        result = {}
        for table in self.mart_tables():
            count, digest = self.query(
                f"select count(*), md5(coalesce(string_agg(r, '|' order by r), '')) "
                f"from (select t::text as r from {table} t) rows"
            )[0]
            result[table] = (count, digest)
        return result


@dataclass
class DagRunResult:
    state: str
    run_id: str
    tasks: dict[str, str] = field(default_factory=dict)
    executed: set[str] = field(default_factory=set)

    def ran(self) -> set[str]:
        """Tasks that were executed, as opposed to marked successful, skipped or never started."""
        return self.executed


@pytest.fixture(scope="module")
def warehouse(pg_cluster, module_database_factory, dbt_manifest, airflow_db, tmp_path_factory) -> Iterator[Warehouse]:  # noqa: F811
    """A fresh database with four days of generated data up to now, its project built once with plain dbt
    (setup, not the thing under test), the Airflow connection and the snapshot pool in place."""
    from include.dbt_tasks.cosmos_config import POOLS, _dbt_executable
    from include.greenery_data import apply_schema, load_generated

    dbname, libpq_env = module_database_factory("e2e")
    dsn = pg_cluster.dsn(dbname)
    conn = psycopg2.connect(dsn)
    try:
        apply_schema(conn)
        load_generated(conn, scale=1, days=4)
    finally:
        conn.close()

    connection = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": pg_cluster.port,
        "login": pg_cluster.user,
        "password": pg_cluster.password,
        "schema": dbname,
    }
    previous = os.environ.get("AIRFLOW_CONN_GREENERY_WAREHOUSE")
    os.environ["AIRFLOW_CONN_GREENERY_WAREHOUSE"] = json.dumps(connection)

    scratch = tmp_path_factory.mktemp("dbt-setup")
    build = subprocess.run(
        [
            *(_dbt_executable(), "run", "--profiles-dir", ".", "--project-dir", "."),
            *("--target-path", str(scratch / "target"), "--log-path", str(scratch / "logs")),
        ],
        cwd=settings.DBT_PROJECT_DIR,
        env={**os.environ, **libpq_env},
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, f"initial dbt run failed:\n{build.stdout[-4000:]}"
    for name, slots, description in POOLS:
        created = subprocess.run(
            [sys.executable, "-m", "airflow", "pools", "set", name, str(slots), description],
            capture_output=True,
            text=True,
        )
        assert created.returncode == 0, created.stderr[-2000:]
    try:
        yield Warehouse(dbname, dsn, libpq_env)
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_GREENERY_WAREHOUSE", None)
        else:
            os.environ["AIRFLOW_CONN_GREENERY_WAREHOUSE"] = previous


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    # Airflow 3.3.2's dag.test() cannot finish a successful run of a DAG with a deadline alert: it looks the
    # alerts up by id, but dag.test() hands the run the serialised alert instead (psycopg2 "can't adapt type
    # 'dict'"). The scheduler is not affected; the deadline is tested through it, not here.
    dag.deadline = None
    # Retries as configured, without the pause between them: dag.test() would otherwise sit out the back-off
    # (minutes) before a failing model's next try.
    for task in dag.tasks:
        task.retry_delay = dt.timedelta(0)
        task.retry_exponential_backoff = 0
        task.max_retry_delay = None
    return dag


def run_dag(
    dag_id: str,
    logical_date=None,
    conf: dict | None = None,
    only: set[str] | None = None,
) -> DagRunResult:
    """``dag.test()`` of one DAG file; with ``only``, every other task is marked successful without running."""
    # dag.test() runs every task in this process, with no triggerer: the DAG as the local execution mode renders
    # it, each dbt node in its own task. The producer mode, whose node tasks live in the triggerer, is tested on
    # the real scheduler and triggerer (tests/e2e/test_platform.py).
    with mock.patch.dict(os.environ, {settings.COSMOS_EXECUTION_MODE.name: "local"}):
        return _run_dag(dag_id, logical_date, conf, only)


def _run_dag(dag_id: str, logical_date, conf: dict | None, only: set[str] | None) -> DagRunResult:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    dag = load_dag(dag_id)
    kwargs: dict[str, Any] = {"run_conf": conf}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    if only is not None:
        unknown = only - set(dag.task_ids)
        assert not unknown, f"no such tasks in {dag_id}: {sorted(unknown)}"
        kwargs["mark_success_pattern"] = "(?!(?:" + "|".join(re.escape(t) for t in sorted(only)) + ")$).*"
    dag_run = dag.test(**kwargs)
    with create_session() as session:
        rows = session.query(TaskInstance.task_id, TaskInstance.state, TaskInstance.hostname).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id
        )
        tasks, executed = {}, set()
        for task_id, state, hostname in rows:
            tasks[task_id] = str(getattr(state, "value", state))
            if hostname:  # a task marked successful never started, so no host picked it up
                executed.add(task_id)
    return DagRunResult(str(getattr(dag_run.state, "value", dag_run.state)), dag_run.run_id, tasks, executed)


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackWebhookStub]:
    """A local Slack webhook for a module's platform (its own per module, so alerts of one module never mix)."""
    stub = SlackWebhookStub()
    yield stub
    stub.close()
