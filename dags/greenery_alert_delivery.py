"""
### greenery_alert_delivery: alerts that Slack did not take at once

**When**: every 2 minutes; one run at a time. A run that finds nothing to send ends in a second.

**What runs**: `deliver_alerts` sends the alerts recorded in the warehouse (`dbt_meta.alert_outbox`) that
Slack did not take when they were raised (it hung, answered 429 or 5xx, or refused connections), honouring
Slack's `Retry-After`. It runs in the triggerer and never takes a worker slot. Every alert is also in the log of
the task that raised it.

**When it fails**: the warehouse could not be reached; the alerts stay recorded and the next run sends them.
An alert that Slack refused for good (a deleted webhook, a malformed URL) is marked `failed` in the table with
the reason: fix the `slack_alerts` connection, then set its `state` back to `pending` to send it.
"""

import datetime as dt

import pendulum
from airflow.sdk import DAG
from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable

from include.alerts.delivery import DeliverAlertsOperator
from include.dbt_tasks import steps

with DAG(
    dag_id="greenery_alert_delivery",
    schedule=CronTriggerTimetable("*/2 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),
    catchup=False,  # one run delivers everything that is due, however long Slack was away
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=10),
    # Its own failure cannot be alerted through itself; the next run two minutes later tries again.
    default_args=steps.default_args(alert_on_failure=False),
    doc_md=__doc__,
    tags=["greenery", "alerts"],
):
    DeliverAlertsOperator(task_id="deliver_alerts", retries=0)
