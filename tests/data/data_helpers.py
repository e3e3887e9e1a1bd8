"""Helpers shared by the data tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# A fixed end makes generated data reproducible; it is a Tuesday afternoon, UTC.
END = "2024-06-04T15:00:00Z"


def dsn(env: dict[str, str]) -> str:
    return (
        f"host={env['PGHOST']} port={env['PGPORT']} user={env['PGUSER']} password={env['PGPASSWORD']} "
        f"dbname={env['PGDATABASE']}"
    )


def scalar(conn, query: str, params: tuple = ()) -> object:
    with conn.cursor() as cur:
        cur.execute(query, params)
        value = cur.fetchone()[0]
    conn.rollback()
    return value


def row_counts(conn) -> dict[str, int]:
    counts = {}
    for table in ("addresses", "users", "promos", "products", "orders", "order_items", "events"):
        counts[table] = scalar(conn, f"select count(*) from raw.{table}")
    return counts


def run_cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m include.greenery_data ARGS`` as the Makefile runs it, with the libpq variables in ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "include.greenery_data", *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
