"""
### greenery_dev_shop_simulator: a live shop for the local platform (development only)

**When**: every 5 minutes, and only where `GREENERY_DEV_SIMULATOR=1` (`make up` sets it; production does
not, so there this DAG does not exist).

**What runs**: one step of the simulated greenery shop: new visits, page views, orders and deliveries are
written to the raw tables, so freshness stays green and the hourly snapshots and the daily build have
something new to process.

**When it fails**: the log names the problem (usually the warehouse is not running: `make warehouse`). Nothing
depends on it; the next step runs five minutes later.
"""

import datetime as dt

import pendulum
from airflow.sdk import DAG, task
from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable

from include import settings
from include.dbt_tasks import steps

if settings.DEV_SIMULATOR.value():
    with DAG(
        dag_id="greenery_dev_shop_simulator",
        schedule=CronTriggerTimetable("*/5 * * * *", timezone="UTC"),
        start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),
        catchup=False,  # a missed step is simply not simulated
        max_active_runs=1,
        dagrun_timeout=dt.timedelta(minutes=10),
        default_args=steps.default_args(alert_on_failure=False),  # development only: nobody is on call
        doc_md=__doc__,
        tags=["greenery", "dev"],
    ):

        @task
        def simulate_shop_activity() -> dict:
            from airflow.sdk import BaseHook
            from psycopg2.extensions import make_dsn

            from include.greenery_data import simulate_step
            from include.greenery_data.connection import connect

            warehouse = BaseHook.get_connection(settings.WAREHOUSE_CONN_ID)
            # The data tools speak psycopg2 (the Postgres provider's hook may hand out psycopg 3 connections).
            dsn = make_dsn(
                host=warehouse.host,
                port=warehouse.port,
                user=warehouse.login,
                password=warehouse.password,
                dbname=warehouse.schema,
            )
            conn = connect(dsn)
            try:
                return simulate_step(conn)
            finally:
                conn.close()

        simulate_shop_activity()
