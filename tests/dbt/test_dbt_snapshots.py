"""The course's snapshot exercise: load the course data, `dbt snapshot`, ship three orders (`make deliver`),
`dbt snapshot` again; then a deleted order gets its current version closed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dbt_runs import Warehouse

from include.greenery_data import Shipment, deliver, load_csv_dir

SNAPSHOT_COLUMNS = (
    "order_id, status, tracking_id, shipping_service, estimated_delivery_at, dbt_valid_from, dbt_valid_to"
)


@dataclass
class Exercise:
    warehouse: Warehouse
    shipments: list[Shipment]
    rows_after_first_snapshot: int
    # order_id -> its versions in the orders snapshot after the second run, oldest first
    versions: dict[str, list[dict]]
    raw_orders: int


@pytest.fixture(scope="module")
def exercise(warehouse_factory, course_data) -> Exercise:
    warehouse = warehouse_factory("dbt_snapshot")
    load_csv_dir(warehouse.conn, course_data)
    warehouse.dbt.build_ok("snapshot")
    rows_after_first = warehouse.scalar("select count(*) from analytics_snapshots.orders_snapshot")
    shipments = deliver(warehouse.conn, n=3)
    warehouse.dbt.build_ok("snapshot")
    versions: dict[str, list[dict]] = {}
    names = [name.strip() for name in SNAPSHOT_COLUMNS.split(",")]
    for row in warehouse.query(
        f"select {SNAPSHOT_COLUMNS} from analytics_snapshots.orders_snapshot order by order_id, dbt_valid_from"
    ):
        record = dict(zip(names, row, strict=True))
        versions.setdefault(record["order_id"], []).append(record)
    raw_orders = warehouse.scalar("select count(*) from raw.orders")
    return Exercise(warehouse, shipments, rows_after_first, versions, raw_orders)


def test_first_snapshot_has_one_current_row_per_order(exercise):
    assert exercise.rows_after_first_snapshot == exercise.raw_orders


def test_delivery_ships_three_preparing_orders(exercise):
    assert len(exercise.shipments) == 3
    assert all(shipment.course_update for shipment in exercise.shipments)


def test_each_shipped_order_has_its_old_version_closed_and_its_new_one_current(exercise):
    for shipment in exercise.shipments:
        old, new = exercise.versions[shipment.order_id]  # exactly two versions
        assert old["status"] == "preparing"
        assert old["tracking_id"] is None
        assert old["dbt_valid_to"] is not None, "the preparing version must be closed"
        assert new["status"] == "shipped"
        assert new["tracking_id"] == shipment.tracking_id
        assert new["shipping_service"] == shipment.shipping_service == "ups"
        assert new["estimated_delivery_at"] == shipment.estimated_delivery_at
        assert new["dbt_valid_to"] is None, "the shipped version must be current"
        assert old["dbt_valid_to"] == new["dbt_valid_from"], "history has no gap or overlap"


def test_no_other_order_has_a_second_version(exercise):
    with_history = {order_id for order_id, versions in exercise.versions.items() if len(versions) > 1}
    assert with_history == {shipment.order_id for shipment in exercise.shipments}
    assert len(exercise.versions) == exercise.raw_orders


def test_products_snapshot_has_one_version_per_product(exercise):
    warehouse = exercise.warehouse
    assert warehouse.scalar(
        "select count(*) from analytics_snapshots.products_snapshot where dbt_valid_to is null"
    ) == warehouse.scalar("select count(*) from raw.products")


def test_deleted_order_gets_its_current_version_closed(exercise):
    warehouse = exercise.warehouse
    order_id = warehouse.scalar(
        "select min(order_id) from raw.orders where order_id <> all(%s)",
        ([shipment.order_id for shipment in exercise.shipments],),
    )
    for table in ("events", "order_items", "orders"):  # children first: the raw tables have foreign keys
        warehouse.execute(f"delete from raw.{table} where order_id = %s", (order_id,))
    warehouse.dbt.build_ok("snapshot", "--select", "orders_snapshot")
    versions = warehouse.query(
        "select dbt_valid_to from analytics_snapshots.orders_snapshot where order_id = %s", (order_id,)
    )
    assert len(versions) == 1
    assert versions[0][0] is not None, "hard_deletes: invalidate closes the deleted order's current version"
    assert warehouse.scalar(
        "select count(*) from analytics_snapshots.orders_snapshot where dbt_valid_to is null"
    ) == warehouse.scalar("select count(*) from raw.orders")
