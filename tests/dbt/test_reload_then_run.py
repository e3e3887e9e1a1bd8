"""`make load` replaces the raw tables; the next run must describe the new data only. The incremental models keep
the rows they were built from, so the load drops them (include/greenery_data/derived.py) and the next build makes
them in full: it passes every test, and the event marts hold exactly the new events."""

from __future__ import annotations

import subprocess
import sys

import psycopg2
import pytest
from dbt_runs import Warehouse

from include.greenery_data import load_generated
from include.greenery_data.derived import incremental_relations
from tests.conftest import REPO_ROOT

END = "2024-05-20T12:00:00+00:00"


def make_load(warehouse: Warehouse, *args: str) -> subprocess.CompletedProcess:
    """What `make load` runs, against this test database."""
    return subprocess.run(
        [sys.executable, "-m", "include.greenery_data", "load", *args],
        env={**warehouse.dbt.env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def reloaded(warehouse_factory) -> tuple[Warehouse, subprocess.CompletedProcess]:
    """Data of one shop built into the marts, then `make load` of another shop (other seed, size and days)."""
    warehouse = warehouse_factory("dbt_reload")
    load_generated(warehouse.conn, scale=0.5, days=4, seed=3, end=END)
    warehouse.dbt.build_ok("run")
    loaded = make_load(warehouse, "--scale", "0.3", "--days", "3", "--seed", "4", "--end", END)
    return warehouse, loaded


def test_the_incremental_models_are_known_from_the_manifest() -> None:
    assert incremental_relations() == [
        ("analytics_product", "fct_page_views"),
        ("analytics_product", "fct_sessions"),
    ]


def test_make_load_says_in_one_line_that_the_next_run_builds_them_in_full(reloaded) -> None:
    warehouse, loaded = reloaded
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert (
        "The raw data was replaced: dropped the incremental models built from the old data "
        "(analytics_product.fct_page_views, analytics_product.fct_sessions); the next run builds them in full."
    ) in loaded.stdout.splitlines()
    assert warehouse.scalar("select to_regclass('analytics_product.fct_page_views')") is None


@pytest.fixture(scope="module")
def rebuilt(reloaded) -> Warehouse:
    """The next run after the load: every model and test of the project."""
    warehouse, _ = reloaded
    warehouse.dbt.build_ok("build")
    return warehouse


def test_the_next_build_passes_and_the_event_marts_hold_only_the_new_events(rebuilt: Warehouse) -> None:
    warehouse = rebuilt
    page_views = "select event_id from raw.events where event_type = 'page_view'"
    assert warehouse.scalar(f"select count(*) from ({page_views}) new_events") > 0
    for relation, key, raw in (
        ("analytics_product.fct_page_views", "event_id", page_views),
        ("analytics_product.fct_sessions", "session_id", "select distinct session_id from raw.events"),
    ):
        stale = warehouse.scalar(f"select count(*) from {relation} where {key} not in ({raw})")
        missing = warehouse.scalar(
            f"select count(*) from ({raw}) new_rows where {key} not in (select {key} from {relation})"
        )
        assert (stale, missing) == (0, 0), f"{relation}: {stale} rows of the replaced data, {missing} new rows missing"


def test_a_load_into_a_warehouse_without_marts_says_nothing_of_them(warehouse_factory) -> None:
    warehouse = warehouse_factory("dbt_reload_empty")
    loaded = make_load(warehouse, "--scale", "0.1", "--days", "1", "--end", END)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "incremental" not in loaded.stdout


def test_a_run_holding_them_gets_one_message_that_says_what_to_do(rebuilt: Warehouse) -> None:
    warehouse = rebuilt
    held = psycopg2.connect(
        **{key: warehouse.env[f"PG{key.upper()}"] for key in ("host", "port", "user", "password")},
        dbname=warehouse.dbname,
    )
    try:
        with held.cursor() as cur:  # a dbt run reading the page views, as far as PostgreSQL can tell
            cur.execute("lock table analytics_product.fct_page_views in access share mode")
        loaded = make_load(warehouse, "--scale", "0.1", "--days", "1", "--end", END)
    finally:
        held.close()
    assert loaded.returncode == 1, loaded.stdout + loaded.stderr
    [line] = loaded.stderr.strip().splitlines()
    assert line.startswith("error: the raw data was replaced, but the incremental models built from the old data ")
    assert "full_refresh" in line and "canceling statement due to lock timeout" in line
    assert warehouse.scalar("select to_regclass('analytics_product.fct_page_views')") is not None
