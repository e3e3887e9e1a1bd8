"""
### greenery_daily: the whole dbt project, once a day

**When**: every day at 06:00 UTC (`GREENERY_DAILY_HOUR`); one run at a time. A run processes one whole UTC
day, the day of its logical date: the 06:00 run processes yesterday. Trigger it by hand with the form to
reprocess chosen days, to rebuild the incremental models (`full_refresh`) or to build only some dbt nodes
(`select` / `exclude` in dbt's selection syntax, e.g. `fct_orders+` or `tag:product`: the other node tasks end
skipped; a selection that matches nothing fails `validate_params`, naming the closest nodes), to rerun what
failed in an earlier run and its downstream (`rerun_failed_of`: a run id or `latest`, with that run's dates) or
to build only what changed since the last green full run (`only`: `changed`, or `fresher` for what reads the
raw tables that received rows); a run with nothing to build ends green with every dbt task skipped. Backfill
days A to B with `make backfill FROM=A TO=B`. The Backfill dialog's From and To are when runs are due (day D's
run is due at D+1 06:00): for days A to B choose A+1 06:00 to B+1 06:00, and keep Max Active Runs at 1.

**What runs**: `validate_params` (checks the trigger parameters, no dbt) → `source_freshness` →
`snapshots` → `models` (each dbt model is a task, its data tests a task right after it; a source's tests run
before the models that read it) → `docs_generate` (Browse > dbt Docs (greenery)).

**When it fails**: the failed task names the dbt node; its log shows dbt's error. A failed *test* means bad
data: fix the data or the model, then clear the test task (a test is retried only when its connection to the
warehouse dropped, never when the data failed it). A failed *model* has already been retried twice: check the
warehouse, then clear the task. A failed `source_freshness` means a raw table stopped receiving rows; the
build still ran (`GREENERY_FRESHNESS_BLOCKS=1` makes it stop instead).
"""

import datetime as dt

import pendulum
from airflow.sdk import DAG

from include.alerts import callbacks
from include.dbt_tasks import params, producer_mode, run_plan, steps

DAG_ID = "greenery_daily"
# Every dbt command of a run reprocesses the same validated window and honours full_refresh.
DBT_ARGS = {"vars": params.dbt_vars(), "full_refresh": params.full_refresh_template()}

with DAG(
    dag_id=DAG_ID,
    schedule=steps.daily_schedule(),
    start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),  # before the first greenery order: backfills reach it
    catchup=False,  # a new deployment must not replay every day since start_date; backfill on purpose
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=3),
    default_args=steps.default_args(),
    params=params.PARAMS,
    on_success_callback=callbacks.on_dag_success,  # "recovered" after a failed run
    on_failure_callback=callbacks.on_dag_failure,  # a run that timed out
    deadline=callbacks.daily_deadline(),  # "still not done" when a run takes too long
    doc_md=__doc__,
    tags=["greenery", "dbt", "daily"],
):
    validated = run_plan.validate_params_task()
    # The form's select/exclude/rerun_failed_of/only: node tasks left out of the run's selection end skipped.
    freshness = steps.source_freshness(DAG_ID, DBT_ARGS, selectable=True)
    snapshots = steps.snapshot_group(DBT_ARGS, selectable=True)
    steps.freshness_then_snapshots(validated, freshness, snapshots)
    snapshots >> steps.model_group(DBT_ARGS, selectable=True) >> steps.docs_generate(DAG_ID, DBT_ARGS, selectable=True)
    # GREENERY_COSMOS_EXECUTION_MODE=producer: one dbt process runs every step; the tasks above show its results.
    producer_mode.one_dbt_process(validated, DBT_ARGS, selectable=True)
