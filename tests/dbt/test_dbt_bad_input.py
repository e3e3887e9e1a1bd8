"""Bad raw data stops the build on a test that names the problem, and the marts built on it keep their last good
data: each case breaks one rule in the raw tables, runs `dbt build` on everything downstream of the broken
table, checks what failed and what was skipped, and puts the raw table back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from dbt_runs import DbtRun, Warehouse

from include.greenery_data import load_generated

MARTS = {
    "fct_orders": "analytics_core.fct_orders",
    "dim_users": "analytics_core.dim_users",
    "dim_products": "analytics_core.dim_products",
    "user_order_facts": "analytics_marketing.user_order_facts",
    "fct_sessions": "analytics_product.fct_sessions",
    "fct_page_views": "analytics_product.fct_page_views",
    "product_funnel": "analytics_product.product_funnel",
    "product_conversion": "analytics_product.product_conversion",
}
ORDER_MARTS = {"fct_orders", "user_order_facts", "product_conversion"}
EVENT_MARTS = {"fct_sessions", "fct_page_views", "product_funnel", "product_conversion"}


@dataclass(frozen=True)
class BadInput:
    table: str
    breaking_sql: str
    failing_test: str
    skipped_marts: set[str]


FIRST_ORDER = "(select min(order_id) from raw.orders)"

CASES = {
    "duplicate order key": BadInput(
        "orders",
        f"insert into raw.orders select * from raw.orders where order_id = {FIRST_ORDER}",
        "source_unique_greenery_orders_order_id",
        ORDER_MARTS,
    ),
    "orphan order item": BadInput(
        "order_items",
        "insert into raw.order_items (order_id, product_id, quantity)"
        " select 'no-such-order', min(product_id), 1 from raw.products",
        "source_relationships_greenery_order_items_order_id__order_id__source_greenery_orders_",
        ORDER_MARTS,
    ),
    "unknown order status": BadInput(
        "orders",
        f"update raw.orders set status = 'lost_in_transit' where order_id = {FIRST_ORDER}",
        "source_accepted_values_greenery_orders_status__preparing__shipped__delivered",
        ORDER_MARTS,
    ),
    "negative price": BadInput(
        "products",
        "update raw.products set price = -price where product_id = (select min(product_id) from raw.products)",
        "source_not_negative_greenery_products_price",
        {"dim_products", *ORDER_MARTS},
    ),
    "order total that does not add up": BadInput(
        "orders",
        f"update raw.orders set order_total = order_total + 10 where order_id = {FIRST_ORDER}",
        "order_total_equals_cost_plus_shipping_minus_discount",
        {"fct_orders", "user_order_facts"},
    ),
    "order cost that is not the sum of its items": BadInput(
        "order_items",
        f"update raw.order_items set quantity = quantity + 1 where order_id = {FIRST_ORDER}",
        "order_cost_equals_sum_of_item_lines",
        {"fct_orders", "user_order_facts"},
    ),
    "checkout without an order": BadInput(
        "events",
        "update raw.events set order_id = null"
        " where event_id = (select min(event_id) from raw.events where event_type = 'checkout')",
        "source_greenery_events_checkouts_have_an_order",
        EVENT_MARTS,
    ),
}


@pytest.fixture(scope="module")
def shop(warehouse_factory) -> Warehouse:
    """Generated data, built once; the raw tables lose their keys so that bad rows can land, as they can in a
    raw copy made by a loader that does not enforce the source system's constraints."""
    warehouse = warehouse_factory("dbt_bad_input")
    load_generated(warehouse.conn, scale=0.5, days=7, seed=7, end="2024-05-20T12:00:00+00:00")
    for table, constraint in warehouse.query(
        """
        select conrelid::regclass::text, conname from pg_constraint
        where connamespace = 'raw'::regnamespace order by contype = 'p'
        """
    ):
        warehouse.execute(f'alter table {table} drop constraint "{constraint}"')
    warehouse.execute("create schema scratch")
    return warehouse


@pytest.fixture(scope="module")
def first_build(shop) -> DbtRun:
    return shop.dbt.run("build")


def test_build_passes_on_generated_data(first_build):
    assert first_build.ok, first_build.tail()
    assert not first_build.failed()


def mart_fingerprint(warehouse: Warehouse, relation: str) -> str:
    return warehouse.scalar(f"select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {relation} t")


@contextmanager
def broken(warehouse: Warehouse, case: BadInput) -> Iterator[None]:
    """The raw table with the case's bad rows, restored afterwards."""
    warehouse.execute(f"create table scratch.{case.table} as table raw.{case.table}")
    try:
        warehouse.execute(case.breaking_sql)
        yield
    finally:
        warehouse.execute(f"truncate raw.{case.table}")
        warehouse.execute(f"insert into raw.{case.table} select * from scratch.{case.table}")
        warehouse.execute(f"drop table scratch.{case.table}")


@pytest.mark.parametrize("case_name", list(CASES))
def test_bad_input_fails_its_test_and_spares_the_marts(shop, first_build, case_name):
    case = CASES[case_name]
    assert first_build.ok, "the clean build must pass first"
    before = {mart: mart_fingerprint(shop, MARTS[mart]) for mart in case.skipped_marts}
    with broken(shop, case):
        run = shop.dbt.run("build", "--select", f"source:greenery.{case.table}+")

    assert run.returncode == 1, run.tail()
    assert run.failed() == {case.failing_test}, f"expected only {case.failing_test} to fail:\n{run.tail()}"
    assert f"Failure in test {case.failing_test}" in run.output
    for mart in case.skipped_marts:
        assert run.status(mart) == "skipped", f"{mart} was built from bad data:\n{run.tail()}"
        assert mart_fingerprint(shop, MARTS[mart]) == before[mart], f"{mart} changed"
