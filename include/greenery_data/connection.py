"""Connecting to the warehouse and running one transaction, with messages a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from include.greenery_data.errors import WarehouseUnavailable

START_HINT = "start it with `make warehouse` (or `make up`)"


def connect(dsn: str = ""):
    """A psycopg2 connection from ``dsn`` or, when empty, the libpq environment (PGHOST, PGPORT, ...)."""
    try:
        return psycopg2.connect(dsn, connect_timeout=10, application_name="greenery_data")
    except psycopg2.OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "connection failed"
        raise WarehouseUnavailable(f"The warehouse is not reachable ({first_line}): {START_HINT}.") from None


@contextmanager
def transaction(conn) -> Iterator[None]:
    """One transaction on ``conn`` that commits on success and rolls back on any error, in either autocommit mode."""
    if conn.autocommit:
        with conn.cursor() as cur:
            cur.execute("begin")
        try:
            yield
        except BaseException:
            with conn.cursor() as cur:
                cur.execute("rollback")
            raise
        with conn.cursor() as cur:
            cur.execute("commit")
    else:
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
