"""A small DAG wired like the greenery DAGs (same callbacks, same Cosmos callback) over the alerts' fixture dbt
project, for tests/alerts/test_alert_callbacks.py. Run by that test as a script: ``python alerts_fixture.py
'<plan>'`` runs ``dag.test()`` once per entry of the JSON plan (logical date, Slack connection, dbt selection) in
one process, which pays Airflow's start-up once, and prints each run's task states.

- ``source_freshness``: ``dbt source freshness`` (stale sources warn or fail it)
- ``dbt_build``: ``dbt build`` (of everything by default, which fails a test)
- ``flaky``: fails its first try and succeeds on the retry
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

from airflow.sdk import DAG, task
from cosmos.config import ProfileConfig
from cosmos.constants import InvocationMode
from cosmos.operators.local import DbtBuildLocalOperator, DbtSourceLocalOperator
from cosmos.profiles.postgres.user_pass import PostgresUserPasswordProfileMapping

from include.alerts import callbacks

PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_fixture"
DBT_ARGS = {
    "project_dir": str(PROJECT_DIR),
    "profile_config": ProfileConfig(
        profile_name="alerts_fixture",
        target_name="airflow",
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id="greenery_warehouse", profile_args={"schema": "fixture"}
        ),
    ),
    "invocation_mode": InvocationMode.DBT_RUNNER,
    "install_deps": False,
    "emit_datasets": False,
    "callback": "include.dbt_tasks.dbt_results.record_dbt_artifacts",
}

with DAG(
    dag_id="alerts_fixture",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    default_args={"owner": "analytics", "retries": 0, "on_failure_callback": callbacks.on_task_failure},
    on_success_callback=callbacks.on_dag_success,
    on_failure_callback=callbacks.on_dag_failure,
    tags=["test"],
) as dag:
    freshness = DbtSourceLocalOperator(task_id="source_freshness", **DBT_ARGS)
    build = DbtBuildLocalOperator(task_id="dbt_build", **DBT_ARGS)
    freshness >> build

    @task(retries=1, retry_delay=dt.timedelta(0))
    def flaky(run_id: str | None = None) -> None:
        marker = Path(os.environ["ALERTS_FIXTURE_STATE_DIR"]) / f"flaky-{run_id}".replace(":", "_")
        if not marker.exists():
            marker.touch()
            raise ConnectionError("the warehouse dropped the connection (first try only)")

    flaky()


if __name__ == "__main__":
    for step in json.loads(sys.argv[1]):
        os.environ["AIRFLOW_CONN_SLACK_ALERTS"] = step["slack_connection"]
        build.select = step.get("select")
        run = dag.test(logical_date=dt.datetime.fromisoformat(step["logical_date"]))
        states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
        print("FIXTURE_RUN " + json.dumps({"run_id": run.run_id, "state": str(run.state), "tasks": states}))
