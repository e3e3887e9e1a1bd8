"""The same seed (and end) gives the same data; export writes exactly what the loader loads."""

from __future__ import annotations

import psycopg2
from data_helpers import END, dsn, scalar

from include.greenery_data import COLUMNS, TABLES, export_csv, load_csv_dir, load_generated
from include.greenery_data.schema import PRIMARY_KEYS


def fingerprint(conn) -> dict[str, str]:
    """An md5 of every table's rows in primary-key order: the data, not when it arrived (``_loaded_at``)."""
    return {
        table: scalar(
            conn,
            f"select md5(coalesce(string_agg(row({', '.join(COLUMNS[table])})::text, '|' "
            f"order by {', '.join(PRIMARY_KEYS[table])}), '')) from raw.{table}",
        )
        for table in TABLES
    }


def _connect(fresh_database):
    _, env = fresh_database("data")
    return psycopg2.connect(dsn(env))


def test_same_seed_same_data(fresh_database):
    first, second = _connect(fresh_database), _connect(fresh_database)
    load_generated(first, scale=2, seed=11, end=END)
    load_generated(second, scale=2, seed=11, end=END)
    assert fingerprint(first) == fingerprint(second)


def test_other_seed_other_data_same_catalogue(fresh_database):
    first, second = _connect(fresh_database), _connect(fresh_database)
    load_generated(first, scale=1, seed=1, end=END)
    load_generated(second, scale=1, seed=2, end=END)
    one, other = fingerprint(first), fingerprint(second)
    for table in ("addresses", "users", "orders", "order_items", "events"):
        assert one[table] != other[table], table
    assert one["promos"] == other["promos"]
    # Product ids and prices are the shop's catalogue, the same under every seed (inventory is not).
    ids = "select string_agg(product_id || name || price, ',' order by product_id) from raw.products"
    assert scalar(first, ids) == scalar(second, ids)


def test_export_writes_what_the_loader_loads(fresh_database, tmp_path):
    loaded, reloaded = _connect(fresh_database), _connect(fresh_database)
    counts = load_generated(loaded, scale=1, seed=5, end=END)
    assert export_csv(tmp_path, scale=1, seed=5, end=END) == counts
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.csv" for t in TABLES)
    assert load_csv_dir(reloaded, tmp_path) == counts
    assert fingerprint(loaded) == fingerprint(reloaded)
