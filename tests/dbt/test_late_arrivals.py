"""Late-arriving events reach the marts: for random sequences of daily runs and of events arriving on time or
after their day's run, the incremental event models end up identical to a full refresh. Hypothesis draws the
sequences; every example runs the real dbt project against the test session's PostgreSQL, so their number is
kept small."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from dbt_runs import Warehouse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from include.greenery_data import COLUMNS, load_generated

MODELS = {"fct_page_views": "analytics_product.fct_page_views", "fct_sessions": "analytics_product.fct_sessions"}
END = "2024-06-05T00:00:00+00:00"
DAYS = [date(2024, 6, 2), date(2024, 6, 3), date(2024, 6, 4)]  # held back; 2024-06-01 is in the first build
EVENT_COLUMNS = ", ".join(COLUMNS["events"])  # no _loaded_at: the warehouse stamps the arrival, as on a load


@pytest.fixture(scope="module")
def shop(warehouse_factory) -> Warehouse:
    warehouse = warehouse_factory("dbt_late")
    load_generated(warehouse.conn, scale=0.2, days=4, seed=5, end=END)
    warehouse.execute("create schema scratch")
    warehouse.execute(
        "create table scratch.held as select * from raw.events where created_at >= %s", (DAYS[0].isoformat(),)
    )
    warehouse.execute("delete from raw.events where event_id in (select event_id from scratch.held)")
    return warehouse


def arrive(warehouse: Warehouse, day: date, half: int) -> None:
    """Half of the day's events reach the warehouse now (whatever day it is for the runs)."""
    warehouse.execute(
        f"insert into raw.events ({EVENT_COLUMNS}) select {EVENT_COLUMNS} from scratch.held "
        "where (created_at at time zone 'UTC')::date = %s and abs(hashtext(event_id)) %% 2 = %s "
        "and event_id not in (select event_id from raw.events)",
        (day, half),
    )


def daily_run(warehouse: Warehouse, day: date) -> None:
    """The scheduled run for ``day``: its window is that day, as greenery_daily passes it."""
    window = {"start_date": day.isoformat(), "end_date": (day + timedelta(days=1)).isoformat()}
    warehouse.dbt.build_ok("run", "--select", "tag:incremental", dbt_vars=window)


def differences(warehouse: Warehouse, relation: str, other: str) -> int:
    return warehouse.scalar(
        f"select count(*) from ((select * from {relation} except all select * from {other}) union all "
        f"(select * from {other} except all select * from {relation})) as diff"
    )


steps = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.sampled_from(DAYS), st.sampled_from([0, 1])),
        st.tuples(st.just("run"), st.sampled_from(DAYS), st.just(0)),
    ),
    min_size=3,
    max_size=6,
)


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=steps)
def test_incremental_runs_after_late_events_equal_a_full_refresh(shop: Warehouse, program) -> None:
    shop.execute("delete from raw.events where event_id in (select event_id from scratch.held)")
    shop.dbt.build_ok("run", "--select", "+tag:incremental", "--full-refresh")
    for kind, day, half in program:
        if kind == "arrive":
            arrive(shop, day, half)
        else:
            daily_run(shop, day)
    # Whatever arrived late, the next scheduled run (here: the last day's) brings the models up to date.
    daily_run(shop, DAYS[-1])
    for name, relation in MODELS.items():
        shop.execute(f"drop table if exists scratch.{name}_incremental")
        shop.execute(f"create table scratch.{name}_incremental as table {relation}")
    shop.dbt.build_ok("run", "--select", "tag:incremental", "--full-refresh")
    for name, relation in MODELS.items():
        assert differences(shop, relation, f"scratch.{name}_incremental") == 0, (name, program)


def test_a_late_event_reaches_the_marts_on_the_next_run_and_only_once(shop: Warehouse) -> None:
    """The case by hand: half of a day arrives after that day's run; the next day's run picks it up."""
    shop.execute("delete from raw.events where event_id in (select event_id from scratch.held)")
    shop.dbt.build_ok("run", "--select", "+tag:incremental", "--full-refresh")
    arrive(shop, DAYS[0], 0)
    daily_run(shop, DAYS[0])
    arrive(shop, DAYS[0], 1)  # late: after its day's run
    late = shop.scalar(
        "select count(*) from raw.events where event_type = 'page_view' and (created_at at time zone 'UTC')::date = %s",
        (DAYS[0],),
    )
    before = shop.scalar(f"select count(*) from {MODELS['fct_page_views']} where viewed_date = %s", (DAYS[0],))
    assert before < late, "the late half should not be in the model yet"
    for day in DAYS[1:]:
        daily_run(shop, day)
    after = shop.scalar(f"select count(*) from {MODELS['fct_page_views']} where viewed_date = %s", (DAYS[0],))
    assert after == late
    assert shop.scalar(f"select count(*) - count(distinct event_id) from {MODELS['fct_page_views']}") == 0
