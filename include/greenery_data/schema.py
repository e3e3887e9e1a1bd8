"""The raw tables: their DDL (schema.sql), their columns in load order, and applying the DDL idempotently."""

from __future__ import annotations

from importlib import resources

from psycopg2 import sql

from include import settings
from include.greenery_data.connection import transaction

# Parents before children, so the order also suits COPY with foreign keys in place.
COLUMNS: dict[str, tuple[str, ...]] = {
    "addresses": ("address_id", "address", "zipcode", "state", "country"),
    "users": ("user_id", "first_name", "last_name", "email", "phone_number", "created_at", "updated_at", "address_id"),
    "promos": ("promo_id", "discount", "status"),
    "products": ("product_id", "name", "price", "inventory"),
    "orders": (
        "order_id",
        "user_id",
        "promo_id",
        "address_id",
        "created_at",
        "order_cost",
        "shipping_cost",
        "order_total",
        "tracking_id",
        "shipping_service",
        "estimated_delivery_at",
        "delivered_at",
        "status",
    ),
    "order_items": ("order_id", "product_id", "quantity"),
    "events": ("event_id", "session_id", "user_id", "page_url", "created_at", "event_type", "order_id", "product_id"),
}
TABLES: tuple[str, ...] = tuple(COLUMNS)

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "addresses": ("address_id",),
    "users": ("user_id",),
    "promos": ("promo_id",),
    "products": ("product_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "product_id"),
    "events": ("event_id",),
}


def ddl() -> str:
    """The text of schema.sql (unqualified table names)."""
    return resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")


def raw_schema() -> str:
    return settings.RAW_SCHEMA


def apply_schema(conn, schema: str | None = None) -> None:
    """Create the raw schema and its seven tables when missing; existing tables and their rows are left alone."""
    with transaction(conn), conn.cursor() as cur:
        create_tables(cur, schema)


def create_tables(cur, schema: str | None = None) -> None:
    """apply_schema() inside the caller's transaction."""
    schema = schema or raw_schema()
    cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    # `set local` ends with the transaction, so the caller's search_path is back afterwards.
    cur.execute(sql.SQL("set local search_path to {}").format(sql.Identifier(schema)))
    cur.execute(ddl())
    cur.execute("set local search_path to default")


def qualified(table: str, schema: str | None = None) -> sql.Composed:
    """``"raw"."orders"`` as a psycopg2 SQL fragment."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema or raw_schema()), sql.Identifier(table))


def tables_present(conn, schema: str | None = None) -> set[str]:
    """Which of the seven raw tables exist."""
    with conn.cursor() as cur:
        cur.execute(
            "select table_name from information_schema.tables where table_schema = %s and table_name = any(%s)",
            (schema or raw_schema(), list(TABLES)),
        )
        return {row[0] for row in cur.fetchall()}
