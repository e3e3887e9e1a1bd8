"""greenery's source system: the raw schema, a scalable data generator, loaders, and a live shop simulator.

Command line: ``python -m include.greenery_data --help``. Python API (``conn`` is a psycopg2 connection; every
function runs its own transaction and commits):

    apply_schema(conn)                                  create schema raw and its seven tables if missing
    load_csv_dir(conn, path) -> {table: rows}           replace the raw tables with course-format CSV files
    load_generated(conn, scale=1, days=30, seed=42, end=None) -> {table: rows}
    deliver(conn, n=3) -> [Shipment]                    the course's delivery update (snapshot exercise)
    simulate_step(conn, now=None, seed=None) -> {what: count}   one step of the live shop
    append_activity(conn, days=1, end=None, seed=0, scale=None) -> {what: count}   more days on top of a load
"""

from include.greenery_data.delivery import Shipment, deliver
from include.greenery_data.errors import GreeneryDataError, LoadError, WarehouseUnavailable
from include.greenery_data.generated import export_csv, load_generated
from include.greenery_data.generator import DEFAULT_DAYS, DEFAULT_SEED, UsageError
from include.greenery_data.loader import load_csv_dir
from include.greenery_data.schema import COLUMNS, TABLES, apply_schema
from include.greenery_data.simulator import append_activity, simulate_step

__all__ = [
    "COLUMNS",
    "DEFAULT_DAYS",
    "DEFAULT_SEED",
    "TABLES",
    "GreeneryDataError",
    "LoadError",
    "Shipment",
    "UsageError",
    "WarehouseUnavailable",
    "append_activity",
    "apply_schema",
    "deliver",
    "export_csv",
    "load_csv_dir",
    "load_generated",
    "simulate_step",
]
