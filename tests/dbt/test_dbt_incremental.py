"""The incremental event models (fct_page_views, fct_sessions): a run after new and late events gives exactly
what a full refresh gives, and a backfill of one day (vars start_date/end_date) rebuilds exactly that day,
the same way every time."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from dbt_runs import DbtRun, Warehouse

from include.greenery_data import load_generated

INCREMENTAL = {"fct_page_views": "analytics_product.fct_page_views", "fct_sessions": "analytics_product.fct_sessions"}
END = "2024-05-20T12:00:00+00:00"
BACKFILL_DAY = date(2024, 5, 18)


def copy_tables(warehouse: Warehouse, suffix: str) -> None:
    for name, relation in INCREMENTAL.items():
        warehouse.execute(f"drop table if exists scratch.{name}_{suffix}")
        warehouse.execute(f"create table scratch.{name}_{suffix} as table {relation}")


def differences(warehouse: Warehouse, relation: str, other: str) -> int:
    """Rows in one table and not the other, both ways (0 means identical, duplicates included)."""
    return warehouse.scalar(
        f"""
        select count(*) from (
            (select * from {relation} except all select * from {other})
            union all
            (select * from {other} except all select * from {relation})
        ) as diff
        """
    )


def rows_inserted(run: DbtRun, model: str) -> int:
    return run.results[model]["adapter_response"]["rows_affected"]


@pytest.fixture(scope="module")
def shop(warehouse_factory) -> Warehouse:
    """Generated data whose newest events are held back, as if the last load had not happened yet."""
    warehouse = warehouse_factory("dbt_incremental")
    load_generated(warehouse.conn, scale=0.5, days=4, seed=11, end=END)
    warehouse.execute("create schema scratch")
    # Held back: everything in the last 8 hours, and a third of the 5 hours before that (events that arrive
    # late: older than the newest event the first build sees, but inside the 6-hour lookback window).
    warehouse.execute(
        """
        create table scratch.held_events as
        select * from raw.events
        where created_at >= %(end)s::timestamptz - interval '8 hours'
           or (created_at >= %(end)s::timestamptz - interval '13 hours' and hashtext(event_id) %% 3 = 0)
        """,
        {"end": END},
    )
    warehouse.execute("delete from raw.events where event_id in (select event_id from scratch.held_events)")
    warehouse.dbt.build_ok("run", "--select", "+tag:incremental")
    return warehouse


@pytest.fixture(scope="module")
def incremental_run(shop) -> DbtRun:
    """The next load arrives; the incremental run picks it up."""
    shop.execute("insert into raw.events select * from scratch.held_events")
    return shop.dbt.build_ok("run", "--select", "tag:incremental")


@pytest.fixture(scope="module")
def full_refresh(shop, incremental_run) -> None:
    """The incremental result is kept in scratch.*_incremental; the models are then rebuilt from scratch."""
    copy_tables(shop, "incremental")
    shop.dbt.build_ok("run", "--select", "tag:incremental", "--full-refresh")


def test_held_back_events_span_sessions_and_arrive_late(shop):
    # The test means something only if the new load both adds events to sessions that the first build had
    # already summarized and brings events older than the newest one already processed.
    sessions_continued = shop.scalar(
        """
        select count(distinct held.session_id) from scratch.held_events as held
        join raw.events as earlier on earlier.session_id = held.session_id
        where earlier.event_id not in (select event_id from scratch.held_events)
        """
    )
    late_events = shop.scalar(
        """
        select count(*) from scratch.held_events
        where created_at < (
            select max(created_at) from raw.events where event_id not in (select event_id from scratch.held_events)
        )
        """
    )
    assert sessions_continued > 0
    assert late_events > 0


def test_incremental_run_processes_only_the_window(shop, incremental_run):
    total_page_views = shop.scalar("select count(*) from raw.events where event_type = 'page_view'")
    assert 0 < rows_inserted(incremental_run, "fct_page_views") < total_page_views / 2
    total_sessions = shop.scalar("select count(distinct session_id) from raw.events")
    assert 0 < rows_inserted(incremental_run, "fct_sessions") < total_sessions / 2


@pytest.mark.parametrize("model", list(INCREMENTAL))
def test_incremental_run_equals_full_refresh(shop, full_refresh, model):
    assert shop.scalar(f"select count(*) from {INCREMENTAL[model]}") > 0
    assert differences(shop, INCREMENTAL[model], f"scratch.{model}_incremental") == 0


@pytest.fixture(scope="module")
def backfill_runs(shop, full_refresh) -> list[DbtRun]:
    """One day's rows are lost from both models; a backfill of that day, run twice, must bring them back."""
    copy_tables(shop, "truth")
    shop.execute(f"delete from {INCREMENTAL['fct_page_views']} where viewed_date = %s", (BACKFILL_DAY,))
    shop.execute(f"delete from {INCREMENTAL['fct_sessions']} where session_date = %s", (BACKFILL_DAY,))
    window = {"start_date": BACKFILL_DAY.isoformat(), "end_date": (BACKFILL_DAY + timedelta(days=1)).isoformat()}
    return [shop.dbt.build_ok("run", "--select", "tag:incremental", dbt_vars=window) for _ in range(2)]


@pytest.mark.parametrize("model", list(INCREMENTAL))
def test_backfill_of_one_day_restores_it_idempotently(shop, backfill_runs, model):
    assert differences(shop, INCREMENTAL[model], f"scratch.{model}_truth") == 0


def test_backfill_reprocesses_exactly_that_day(shop, backfill_runs):
    day_page_views = shop.scalar(
        "select count(*) from raw.events where event_type = 'page_view' and (created_at at time zone 'UTC')::date = %s",
        (BACKFILL_DAY,),
    )
    day_sessions = shop.scalar(
        "select count(distinct session_id) from raw.events where (created_at at time zone 'UTC')::date = %s",
        (BACKFILL_DAY,),
    )
    for run in backfill_runs:
        assert rows_inserted(run, "fct_page_views") == day_page_views
        assert rows_inserted(run, "fct_sessions") == day_sessions


def test_a_window_that_is_not_a_date_stops_with_a_message(shop):
    run = shop.dbt.run("run", "--select", "fct_page_views", dbt_vars={"start_date": "last tuesday"})
    assert run.returncode == 1
    assert "var start_date='last tuesday' is neither a date (YYYY-MM-DD) nor an ISO 8601 timestamp" in run.output
