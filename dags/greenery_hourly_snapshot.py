"""
### greenery_hourly_snapshot: dbt snapshots, every hour

**When**: every hour at half past (UTC); one run at a time.

**What runs**: every dbt snapshot (`orders_snapshot`, `products_snapshot`, ...), one task each, so the
history of order statuses and product prices has hourly resolution. Snapshot tasks of this DAG and of
`greenery_daily` share the one-slot pool `dbt_snapshots`, so two snapshots never run at the same time.

**When it fails**: the task log shows dbt's error; the next hour's run catches up on its own (a snapshot
compares the current rows with the last recorded version), so clearing the task is optional.
"""

import datetime as dt

import pendulum
from airflow.sdk import DAG

from include.alerts import callbacks
from include.dbt_tasks import producer_mode, steps

with DAG(
    dag_id="greenery_hourly_snapshot",
    schedule=steps.hourly_schedule(),
    start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),
    catchup=False,  # a missed hour needs no replay: the next snapshot records the current state
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=45),
    default_args=steps.default_args(),
    on_success_callback=callbacks.on_dag_success,
    on_failure_callback=callbacks.on_dag_failure,
    doc_md=__doc__,
    tags=["greenery", "dbt", "hourly"],
):
    producer_mode.one_dbt_process(steps.snapshot_group())
