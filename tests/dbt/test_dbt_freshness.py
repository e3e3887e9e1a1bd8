"""`dbt source freshness` on data loaded minutes ago passes; when the loads stop, events turn warn (older than
2 hours) and orders error (older than 12 hours), and the command fails naming them."""

from __future__ import annotations

import pytest
from dbt_runs import DbtRun, Warehouse

from include.greenery_data import load_generated

CHECKED = {
    "source.greenery.greenery.events",
    "source.greenery.greenery.orders",
    "source.greenery.greenery.users",
}


@pytest.fixture(scope="module")
def shop(warehouse_factory) -> Warehouse:
    warehouse = warehouse_factory("dbt_freshness")
    load_generated(warehouse.conn, scale=0.2, days=2, seed=5)  # ends now: the newest rows are minutes old
    return warehouse


@pytest.fixture(scope="module")
def fresh(shop) -> DbtRun:
    return shop.dbt.run("source", "freshness")


@pytest.fixture(scope="module")
def stale(shop, fresh) -> DbtRun:
    """The loads stopped: the newest event is 3 hours old, the newest order 13 hours."""
    shop.execute("update raw.events set created_at = created_at - interval '3 hours'")
    shop.execute("update raw.orders set created_at = created_at - interval '13 hours'")
    return shop.dbt.run("source", "freshness")


def test_freshly_loaded_sources_pass(fresh):
    assert fresh.ok, fresh.tail()
    assert set(fresh.freshness) == CHECKED, "freshness is checked on the tables that receive new rows"
    assert {result["status"] for result in fresh.freshness.values()} == {"pass"}


def test_stale_sources_warn_and_error_as_configured(stale):
    statuses = {unique_id.split(".")[-1]: result["status"] for unique_id, result in stale.freshness.items()}
    assert statuses == {"events": "warn", "orders": "error", "users": "pass"}
    assert stale.returncode == 1, "an error-level stale source fails the command"
    assert "WARN freshness of greenery.events" in stale.output
    assert "ERROR STALE freshness of greenery.orders" in stale.output
