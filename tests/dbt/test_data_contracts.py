"""The data contracts on the raw tables think like the data: time runs forward, an order's status and its
shipping fields agree, two tables that describe the same order agree, an event delivered twice is noticed, and
money and counts stay in plausible ranges. Clean generated data passes every one of these tests; then one bad row
per rule, crafted so that no row breaks another rule, makes exactly its test fail (error) or warn, with one
failing row each; and a failing contract stops the marts built on its table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dbt_runs import DbtRun, Warehouse

from include.greenery_data import load_generated

TABLES = ("users", "products", "orders", "order_items", "events")


@dataclass(frozen=True)
class Rule:
    test: str
    severity: str  # "error": the test fails; "warn": it warns
    breaking_sql: str  # the one bad row


def nth_order(status: str, n: int) -> str:
    """The id of a different order for each rule: the n-th one with this status (and a delivery estimate,
    unless preparing), so that no two rules touch the same order."""
    estimate = "" if status == "preparing" else " and estimated_delivery_at is not null"
    return f"(select order_id from raw.orders where status = '{status}'{estimate} order by order_id offset {n} limit 1)"


def nth(table: str, key: str, n: int, where: str = "true") -> str:
    return f"(select {key} from raw.{table} where {where} order by {key} offset {n} limit 1)"


def nth_page_view(n: int) -> str:
    return nth("events", "event_id", n, "event_type = 'page_view'")


EVENT_COLUMNS = "session_id, user_id, page_url, created_at, event_type, order_id, product_id"

# Updates first, inserts last: an inserted event must not shift the offsets that later statements pick rows by.
RULES = [
    # time runs forward
    Rule(
        "source_not_in_the_future_greenery_users_created_at",
        "error",
        # updated_at goes too: a future created_at would otherwise also be a profile changed before it existed.
        f"update raw.users set created_at = now() + interval '1 day', updated_at = null"
        f" where user_id = {nth('users', 'user_id', 0)}",
    ),
    Rule(
        "source_not_in_the_future_greenery_users_updated_at",
        "error",
        f"update raw.users set updated_at = now() + interval '1 day' where user_id = {nth('users', 'user_id', 1)}",
    ),
    Rule(
        "source_greenery_users_updated_after_created",
        "warn",
        f"update raw.users set updated_at = created_at - interval '1 day' where user_id = {nth('users', 'user_id', 2)}",
    ),
    Rule(
        "source_not_in_the_future_greenery_orders_created_at",
        "error",
        # A preparing order has no estimate or delivery that a future created_at would put before the order.
        f"update raw.orders set created_at = now() + interval '1 day' where order_id = {nth_order('preparing', 0)}",
    ),
    Rule(
        "source_not_in_the_future_greenery_orders_delivered_at",
        "error",
        f"update raw.orders set delivered_at = now() + interval '1 day' where order_id = {nth_order('delivered', 0)}",
    ),
    Rule(
        "source_greenery_orders_estimated_delivery_after_order",
        "warn",
        "update raw.orders set estimated_delivery_at = created_at - interval '1 day'"
        f" where order_id = {nth_order('shipped', 0)}",
    ),
    Rule(
        "source_not_in_the_future_greenery_events_created_at",
        "error",
        f"update raw.events set created_at = now() + interval '1 day' where event_id = {nth_page_view(0)}",
    ),
    # lifecycle states and their fields
    Rule(
        "source_greenery_orders_delivered_orders_have_delivered_at",
        "error",
        f"update raw.orders set delivered_at = null where order_id = {nth_order('delivered', 1)}",
    ),
    Rule(
        "source_greenery_orders_only_delivered_orders_have_delivered_at",
        "error",
        "update raw.orders set delivered_at = created_at + interval '1 day'"
        f" where order_id = {nth_order('shipped', 1)}",
    ),
    Rule(
        "source_greenery_orders_preparing_orders_have_no_shipment",
        "warn",
        f"update raw.orders set tracking_id = 'printed-too-early' where order_id = {nth_order('preparing', 1)}",
    ),
    # two tables, one order
    Rule(
        "source_greenery_orders_user_is_the_checkout_user",
        "error",
        "update raw.orders as o set user_id = (select min(user_id) from raw.users where user_id <> o.user_id)"
        f" where order_id = {nth_order('shipped', 2)}",
    ),
    Rule(
        "source_greenery_events_shipment_in_the_checkout_session",
        "error",
        "update raw.events set session_id = 'some-other-session'"
        f" where event_type = 'package_shipped' and order_id = {nth_order('shipped', 3)}",
    ),
    # money and counts
    Rule(
        "source_greenery_products_price_is_not_zero",
        "error",
        f"update raw.products set price = 0 where product_id = {nth('products', 'product_id', 0)}",
    ),
    Rule(
        "source_greenery_products_price_is_below_ceiling",
        "warn",
        f"update raw.products set price = 4500 where product_id = {nth('products', 'product_id', 1)}",
    ),
    Rule(
        "source_greenery_orders_shipping_cost_is_below_ceiling",
        "warn",
        f"update raw.orders set shipping_cost = 650 where order_id = {nth_order('shipped', 4)}",
    ),
    Rule(
        "source_greenery_order_items_quantity_is_below_ceiling",
        "warn",
        "update raw.order_items set quantity = 400"
        f" where (order_id, product_id) = (select order_id, product_id from raw.order_items"
        f" where order_id = {nth_order('shipped', 5)} order by product_id limit 1)",
    ),
    # the same checkout twice, from another session (a preparing order: no package_shipped event to disagree)
    Rule(
        "source_greenery_events_one_checkout_per_order",
        "error",
        f"insert into raw.events (event_id, {EVENT_COLUMNS})"
        " select 'second-checkout', 'another-tab', user_id, page_url, created_at, event_type, order_id, product_id"
        f" from raw.events where event_type = 'checkout' and order_id = {nth_order('preparing', 2)}",
    ),
    # an event delivered twice under a new id
    Rule(
        "source_greenery_events_natural_key_is_unique",
        "warn",
        f"insert into raw.events (event_id, {EVENT_COLUMNS}) select 'delivered-again', {EVENT_COLUMNS}"
        f" from raw.events where event_id = {nth_page_view(2)}",
    ),
]
# Within the hour of clock skew that not_in_the_future allows (the live simulator writes near now): no failure.
WITHIN_CLOCK_SKEW = (
    f"update raw.events set created_at = now() + interval '30 minutes' where event_id = {nth_page_view(1)}"
)

CONTRACT_TESTS = [rule.test for rule in RULES]


@pytest.fixture(scope="module")
def shop(warehouse_factory) -> Warehouse:
    """Small generated data, with a copy of each raw table to put it back from. The raw tables lose their keys so
    that bad rows can land, as in a raw copy made by a loader that does not enforce the source's constraints."""
    warehouse = warehouse_factory("dbt_contracts")
    load_generated(warehouse.conn, scale=0.3, days=3, seed=13, end="2024-05-20T12:00:00+00:00")
    for table, constraint in warehouse.query(
        "select conrelid::regclass::text, conname from pg_constraint"
        " where connamespace = 'raw'::regnamespace order by contype = 'p'"
    ):
        warehouse.execute(f'alter table {table} drop constraint "{constraint}"')
    warehouse.execute("create schema clean")
    for table in TABLES:
        warehouse.execute(f"create table clean.{table} as table raw.{table}")
    return warehouse


def restore(warehouse: Warehouse) -> None:
    for table in TABLES:
        warehouse.execute(f"truncate raw.{table}")
        warehouse.execute(f"insert into raw.{table} select * from clean.{table}")


def statuses(run: DbtRun) -> dict[str, str]:
    return {name: run.status(name) for name in CONTRACT_TESTS}


def test_clean_generated_data_passes_every_contract(shop):
    run = shop.dbt.run("test", "--select", *CONTRACT_TESTS)
    assert run.ok, run.tail()
    assert statuses(run) == dict.fromkeys(CONTRACT_TESTS, "pass"), run.tail()


def test_each_bad_row_breaks_its_own_contract(shop):
    try:
        for rule in RULES:
            shop.execute(rule.breaking_sql)
        shop.execute(WITHIN_CLOCK_SKEW)
        run = shop.dbt.run("test", "--select", *CONTRACT_TESTS)
    finally:
        restore(shop)

    expected = {rule.test: "fail" if rule.severity == "error" else "warn" for rule in RULES}
    assert statuses(run) == expected, run.tail(80)
    failures = {name: run.results[name]["failures"] for name in CONTRACT_TESTS}
    assert failures == dict.fromkeys(CONTRACT_TESTS, 1), run.tail(80)
    assert run.returncode == 1
    for rule in RULES:
        kind = "Failure" if rule.severity == "error" else "Warning"
        assert f"{kind} in test {rule.test}" in run.output, run.tail(80)


def test_a_broken_contract_stops_the_marts_built_on_its_table(shop):
    rule = RULES[CONTRACT_TESTS.index("source_not_in_the_future_greenery_orders_created_at")]
    try:
        shop.execute(rule.breaking_sql)
        run = shop.dbt.run("build", "--select", "source:greenery.orders+")
    finally:
        restore(shop)

    assert run.returncode == 1, run.tail()
    assert run.failed() == {rule.test}, run.tail()
    for node in ("stg_greenery__orders", "int_orders_priced", "fct_orders", "user_order_facts", "product_conversion"):
        assert run.status(node) == "skipped", f"{node} was built from an order placed in the future:\n{run.tail()}"
