"""The live shop: a step brings the raw tables up to `now` and keeps every rule of the data."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg2
import pytest
from data_helpers import END, dsn, row_counts, run_cli, scalar
from test_generated_rules import VIOLATIONS

from include.greenery_data import (
    COLUMNS,
    GreeneryDataError,
    append_activity,
    load_csv_dir,
    load_generated,
    simulate_step,
)

LOADED_AT = datetime.fromisoformat(END)


def _status_counts(conn) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute("select status, count(*) from raw.orders group by status")
        counts = dict(cur.fetchall())
    conn.rollback()
    return counts


def test_a_step_two_days_later_ships_delivers_and_brings_new_visits(database):
    conn, _ = database
    load_generated(conn, scale=1, end=END)
    before = _status_counts(conn)
    orders_before = scalar(conn, "select count(*) from raw.orders")
    now = LOADED_AT + timedelta(days=2)

    counts = simulate_step(conn, now=now, seed=1)

    after = _status_counts(conn)
    assert counts["shipped"] > 0 and counts["delivered"] > 0 and counts["visits"] > 0
    # Orders that were preparing two days ago have left the warehouse, and more have arrived.
    assert after.get("preparing", 0) < before["preparing"] + counts["orders"]
    assert after["delivered"] == before["delivered"] + counts["delivered"]
    assert scalar(conn, "select count(*) from raw.orders") == orders_before + counts["orders"]
    newest = scalar(conn, "select max(created_at) from raw.events")
    assert now - timedelta(hours=1) < newest <= now
    # The catch-up is at most an hour: nothing lands in the two days the simulator was not running.
    gap = scalar(
        conn,
        "select count(*) from raw.events where created_at > %s and created_at < %s",
        (LOADED_AT, now - timedelta(hours=1)),
    )
    assert gap == 0
    for rule, query in VIOLATIONS.items():
        assert scalar(conn, query) == 0, f"rule broken after a simulator step: {rule}"
    assert scalar(conn, "select count(*) from raw.orders where delivered_at > %s", (now,)) == 0


def test_steps_every_five_minutes_keep_the_shop_fresh(database):
    conn, _ = database
    load_generated(conn, scale=1, end=END)
    events = scalar(conn, "select count(*) from raw.events")
    now = LOADED_AT
    totals: dict[str, int] = {}
    for step in range(12):
        now += timedelta(minutes=5)
        for name, value in simulate_step(conn, now=now, seed=step).items():
            totals[name] = totals.get(name, 0) + value
    assert totals["visits"] >= 12  # at least one visit per step
    assert scalar(conn, "select count(*) from raw.events") == events + totals["events"]
    assert now - scalar(conn, "select max(created_at) from raw.events") < timedelta(minutes=10)
    assert scalar(conn, "select count(*) from raw.events where created_at > %s", (now,)) == 0
    for rule, query in VIOLATIONS.items():
        assert scalar(conn, query) == 0, f"rule broken after simulator steps: {rule}"


PRODUCTS_FINGERPRINT = (
    "select md5(string_agg(product_id || price || inventory, ',' order by product_id)) from raw.products"
)


def test_live_visits_complete_their_funnel(database):
    """Live visits are whole: a step does not cut them off at its end (no later step would finish them)."""
    conn, _ = database
    load_generated(conn, scale=1, end=END)
    now = LOADED_AT
    for step in range(48):
        now += timedelta(minutes=5)
        simulate_step(conn, now=now, seed=step)
    live = "from raw.events where session_id in (select session_id from raw.events where created_at > %s)"
    sessions = scalar(conn, f"select count(distinct session_id) {live}", (LOADED_AT,))
    carts = scalar(conn, f"select count(distinct session_id) {live} and event_type = 'add_to_cart'", (LOADED_AT,))
    checkouts = scalar(conn, f"select count(*) {live} and event_type = 'checkout'", (LOADED_AT,))
    assert sessions >= 48
    assert 0.6 <= carts / sessions <= 0.95
    assert 0.55 <= checkouts / carts <= 0.95


@pytest.mark.parametrize("price_changes", [False, True])
def test_product_and_profile_changes_happen_now_and_then(database, price_changes):
    conn, _ = database
    load_generated(conn, scale=1, end=END)
    prices = scalar(conn, "select md5(string_agg(product_id || price, ',' order by product_id)) from raw.products")
    products = scalar(conn, PRODUCTS_FINGERPRINT)
    now = LOADED_AT
    totals = {"product_changes": 0, "user_edits": 0}
    for step in range(40):
        now += timedelta(minutes=5)
        counts = simulate_step(conn, now=now, seed=step, price_changes=price_changes)
        totals["product_changes"] += counts["product_changes"]
        totals["user_edits"] += counts["user_edits"]
    assert totals["product_changes"] > 0 and totals["user_edits"] > 0
    assert scalar(conn, PRODUCTS_FINGERPRINT) != products
    assert scalar(conn, "select count(*) from raw.products where inventory < 0 or price < 5") == 0
    assert scalar(conn, "select max(updated_at) from raw.users") > LOADED_AT
    prices_now = scalar(conn, "select md5(string_agg(product_id || price, ',' order by product_id)) from raw.products")
    assert (prices_now != prices) == price_changes
    # Whatever the prices do, what a customer paid adds up.
    assert scalar(conn, VIOLATIONS["order_total = order_cost + shipping_cost - discount"]) == 0


def test_same_seed_and_state_make_the_same_step(fresh_database):

    results = []
    for _ in range(2):
        _, env = fresh_database("data")
        conn = psycopg2.connect(dsn(env))
        load_generated(conn, scale=1, end=END)
        simulate_step(conn, now=LOADED_AT + timedelta(hours=3), seed=5)
        results.append(
            scalar(
                conn,
                f"select md5(string_agg(row({', '.join(COLUMNS['events'])})::text, ',' order by event_id))"
                " from raw.events",
            )
        )
        conn.close()
    assert results[0] == results[1]


def test_the_course_data_moves_too(database, course_dir):
    conn, _ = database
    load_csv_dir(conn, course_dir)
    counts = simulate_step(conn, seed=3)
    # The course's 26 preparing orders are years overdue: they all leave the warehouse now.
    assert counts["shipped"] == 26
    assert scalar(conn, "select count(*) from raw.orders where status = 'preparing'") == counts["orders"]
    for rule, query in VIOLATIONS.items():
        assert scalar(conn, query) == 0, f"rule broken after a simulator step: {rule}"


def test_simulator_needs_loaded_data(database):
    conn, env = database
    with pytest.raises(GreeneryDataError, match="load data first"):
        simulate_step(conn)
    result = run_cli("simulate", "--once", env=env)
    assert result.returncode == 1 and "load data first" in result.stderr and "Traceback" not in result.stderr


def test_cli_runs_one_step(database):
    conn, env = database
    load_generated(conn, scale=1)
    result = run_cli("simulate", "--once", env=env)
    assert result.returncode == 0, result.stderr
    assert "visits" in result.stdout


def test_append_adds_a_day_of_traffic_on_top(database):
    conn, env = database
    load_generated(conn, scale=2, end=END)
    before = row_counts(conn)
    next_day = LOADED_AT + timedelta(days=1)
    result = run_cli("append", "--days", "1", "--end", next_day.isoformat(), "--scale", "2", "--seed", "3", env=env)
    assert result.returncode == 0, result.stderr
    after = row_counts(conn)
    assert after["products"] == before["products"] and after["promos"] == before["promos"]
    added_sessions = scalar(
        conn,
        "select count(distinct session_id) from raw.events where created_at > %s and event_type = 'page_view'",
        (LOADED_AT,),
    )
    # A day at scale 2 is about 2 x 578 / 30 visits.
    assert 25 <= added_sessions <= 55
    assert after["orders"] > before["orders"] and after["events"] > before["events"]
    assert scalar(conn, "select max(created_at) from raw.events") <= next_day
    assert scalar(conn, "select min(created_at) from raw.events where created_at > %s", (LOADED_AT,)) < (
        LOADED_AT + timedelta(hours=3)
    )
    for rule, query in VIOLATIONS.items():
        assert scalar(conn, query) == 0, f"rule broken after append: {rule}"
    counts = append_activity(conn, days=1, end=next_day + timedelta(days=1), seed=4)
    assert counts["visits"] > 0 and counts["delivered"] > 0
