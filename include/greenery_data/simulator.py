"""The live shop: each step brings the raw tables up to "now", as the shop's own database would be.

One step (one transaction):
1. fulfilment: `preparing` orders whose plan (``fulfilment.py``) says they have left the warehouse become
   `shipped` (tracking_id, shipping_service, estimated_delivery_at filled, a `package_shipped` event in the
   checkout's session); `shipped` orders whose plan says they have arrived get delivered_at and `delivered`;
2. traffic: new visits since the newest event (at most the last hour, so a long pause does not cause a flood),
   at least one per step, by returning users and by new sign-ups, with their events, orders and items;
3. now and then a product's inventory changes (its price too, with ``price_changes=True``), and a user edits
   their profile (users.updated_at).

Times never run ahead of ``now``. Run it from the CLI (``python -m include.greenery_data simulate``) or from
the dev-only Airflow DAG, which calls ``simulate_step``. ``append_activity`` runs the same machinery over a
whole window (a day of traffic at a given scale), for benchmarks of incremental runs.

Prices stay put unless asked: an order's cost is frozen at the prices of the day it was placed, so after a
price change order_cost no longer equals the sum of today's price x quantity for older orders, and checks that
use today's prices (as the course's data allows) would fail.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from psycopg2 import sql
from psycopg2.extras import execute_values

from include.greenery_data.catalog import SITE
from include.greenery_data.connection import transaction
from include.greenery_data.errors import GreeneryDataError
from include.greenery_data.fulfilment import DAY, HOUR, plan_for
from include.greenery_data.generator import (
    BASE_SESSIONS,
    BASE_USERS,
    DEFAULT_DAYS,
    NEW_USER_SHARE,
    UsageError,
    parse_end,
    poisson,
)
from include.greenery_data.ids import random_uuid
from include.greenery_data.people import address_line, phone_number, user_line
from include.greenery_data.schema import COLUMNS, TABLES, qualified, raw_schema, tables_present
from include.greenery_data.visits import Visits, iso

MAX_CATCH_UP = HOUR
MIN_VISITS_PER_HOUR = 12  # keeps a scale-1 demo visibly moving
VISITS_PER_USER_HOUR = BASE_SESSIONS / BASE_USERS / (DEFAULT_DAYS * 24)
NEW_VISITOR_SHARE = (BASE_USERS * NEW_USER_SHARE) / BASE_SESSIONS  # as many sign-ups as in generated history
VISIT_BATCH = 2000  # visits made and copied at a time, so a long window does not fill memory
NEW_VISITOR_NEW_ADDRESS = 0.5
SHIP_TO_OWN_ADDRESS = 0.85
PRODUCT_CHANGE_CHANCE = 0.3
PRICE_CHANGE_SHARE = 0.2  # of product changes; the others are inventory
USER_EDIT_CHANCE = 0.25
# pg_advisory_xact_lock key: two simulators (CLI and DAG) take turns instead of shipping an order twice.
LOCK_KEY = 0x67726565  # "gree"

COUNT_NAMES = (
    "visits",
    "events",
    "orders",
    "order_items",
    "new_users",
    "shipped",
    "delivered",
    "product_changes",
    "user_edits",
)


def simulate_step(
    conn, now: datetime | str | None = None, seed: int | None = None, price_changes: bool = False
) -> dict[str, int]:
    """Advance the shop to ``now`` (default: the current time) in one transaction; returns what happened.

    With ``seed`` the step is reproducible for the same database state and ``now``.
    """
    now_ts = parse_end(now)
    rng = random.Random(f"{seed}:{now_ts}") if seed is not None else random.Random()
    counts = dict.fromkeys(COUNT_NAMES, 0)
    with _shop_transaction(conn) as cur:
        cur.execute(sql.SQL("select max(created_at) from {}").format(qualified("events")))
        newest = cur.fetchone()[0]
        window_start = now_ts - MAX_CATCH_UP
        if newest is not None:
            window_start = max(window_start, int(newest.timestamp()))
        _fulfil(cur, rng, now_ts, window_start, counts)
        if now_ts > window_start:
            n_users = _count(cur, "users")
            per_hour = max(MIN_VISITS_PER_HOUR, n_users * VISITS_PER_USER_HOUR)
            n_visits = max(1, poisson(rng, per_hour * (now_ts - window_start) / HOUR))
            _visits(cur, rng, window_start, now_ts, n_visits, counts)
        _catalogue_and_profiles(cur, rng, now_ts, counts, price_changes)
    return counts


def append_activity(
    conn, days: int = 1, end: datetime | str | None = None, seed: int = 0, scale: float | None = None
) -> dict[str, int]:
    """Add ``days`` of traffic ending at ``end`` on top of the loaded data (nothing is replaced): visits at the
    generator's rate for ``scale`` (default: the scale the users table suggests), with their events, orders and
    sign-ups, and the fulfilment of every open order up to ``end``. Returns what happened."""
    if days < 1:
        raise UsageError(f"days must be 1 or more, not {days}")
    if scale is not None and not scale > 0:
        raise UsageError(f"scale must be a positive number, not {scale}")
    end_ts = parse_end(end)
    start = end_ts - int(days) * DAY
    rng = random.Random(f"{seed}:append:{end_ts}")
    counts = dict.fromkeys(COUNT_NAMES, 0)
    with _shop_transaction(conn) as cur:
        if scale is None:
            scale = max(_count(cur, "users") / BASE_USERS, 1 / BASE_USERS)
        per_hour = scale * BASE_SESSIONS / (DEFAULT_DAYS * 24)
        _fulfil(cur, rng, end_ts, start, counts)
        _visits(cur, rng, start, end_ts, poisson(rng, per_hour * days * 24), counts)
    return counts


@contextmanager
def _shop_transaction(conn) -> Iterator:
    """One transaction, taken in turns with other simulators, on a shop that has been loaded."""
    if tables_present(conn) != set(TABLES):
        conn.rollback()
        raise GreeneryDataError(
            f"The raw tables are missing from schema {raw_schema()}: load data first (`make load`)."
        )
    with transaction(conn), conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        if _count(cur, "products") == 0:
            raise GreeneryDataError("The shop has no products: load data first (`make load`).")
        yield cur


def _count(cur, table: str) -> int:
    cur.execute(sql.SQL("select count(*) from {}").format(qualified(table)))
    return cur.fetchone()[0]


# -- 1. fulfilment -----------------------------------------------------------------------------------------------


def _fulfil(cur, rng: random.Random, now: int, window_start: int, counts: dict[str, int]) -> None:
    """Move open orders along their plans. A time the plan put before this step's window (the simulator was not
    running) is recorded at the window's start: the shop catches up when it reopens."""

    def clamp(moment: int) -> int:
        return min(max(moment, window_start), now)

    cur.execute(
        sql.SQL("select order_id, user_id, created_at, status from {} where status in ('preparing', 'shipped')").format(
            qualified("orders")
        )
    )
    to_ship, to_deliver = [], []
    for order_id, user_id, created_at, status in cur.fetchall():
        plan = plan_for(order_id, int(created_at.timestamp()))
        if status == "preparing" and plan.shipped_at <= now:
            to_ship.append((order_id, user_id, created_at, plan))
        elif status == "shipped" and plan.delivered_at <= now:
            to_deliver.append((order_id, created_at, plan))
    if not (to_ship or to_deliver):
        return
    cur.execute(
        sql.SQL(
            "select order_id, event_type, session_id, created_at from {}"
            " where order_id = any(%s) and event_type in ('checkout', 'package_shipped')"
        ).format(qualified("events")),
        ([row[0] for row in to_ship] + [row[0] for row in to_deliver],),
    )
    checkout_session, shipped_event_at = {}, {}
    for order_id, event_type, session_id, created_at in cur.fetchall():
        if event_type == "checkout":
            checkout_session[order_id] = session_id
        else:
            shipped_event_at[order_id] = int(created_at.timestamp())

    events = []
    shipped_rows, delivered_rows = [], []
    for order_id, user_id, created_at, plan in to_ship:
        shipped_at = max(clamp(plan.shipped_at), int(created_at.timestamp()))
        delivered_at = max(clamp(plan.delivered_at), shipped_at) if plan.delivered_at <= now else None
        status = "delivered" if delivered_at else "shipped"
        # The carrier estimates when it takes the parcel: a day after it at the earliest, also when the shop
        # catches up after a pause and the parcel leaves later than planned.
        estimate = plan.estimated_delivery_at and max(plan.estimated_delivery_at, shipped_at + DAY)
        shipped_rows.append((order_id, status, plan.tracking_id, plan.shipping_service, estimate, delivered_at))
        session_id = checkout_session.get(order_id) or random_uuid(rng)
        events.append(
            f"{random_uuid(rng)},{session_id},{user_id},{SITE}/shipping/{order_id},{iso(shipped_at)},"
            f"package_shipped,{order_id},\n"
        )
        counts["shipped"] += 1
        counts["delivered"] += delivered_at is not None
    for order_id, created_at, plan in to_deliver:
        earliest = shipped_event_at.get(order_id, int(created_at.timestamp()))
        delivered_rows.append((order_id, max(clamp(plan.delivered_at), earliest)))
        counts["delivered"] += 1
    # One statement per batch of orders, not one per order: a day at scale 1000 moves some 20,000 orders.
    execute_values(
        cur,
        sql.SQL(
            "update {} as o set status = v.status, tracking_id = v.tracking_id,"
            " shipping_service = v.shipping_service, estimated_delivery_at = to_timestamp(v.estimate::bigint),"
            " delivered_at = to_timestamp(v.delivered::bigint), _loaded_at = now()"
            " from (values %s) as v (order_id, status, tracking_id, shipping_service, estimate, delivered)"
            " where o.order_id = v.order_id"
        )
        .format(qualified("orders"))
        .as_string(cur),
        shipped_rows,
        page_size=1000,
    )
    execute_values(
        cur,
        sql.SQL(
            "update {} as o set status = 'delivered', delivered_at = to_timestamp(v.delivered::bigint),"
            " _loaded_at = now()"
            " from (values %s) as v (order_id, delivered) where o.order_id = v.order_id"
        )
        .format(qualified("orders"))
        .as_string(cur),
        delivered_rows,
        page_size=1000,
    )
    _copy(cur, "events", events)
    counts["events"] += len(events)


# -- 2. traffic --------------------------------------------------------------------------------------------------


def _pick_rows(cur, table: str, columns: str, order_by: str, indexes: list[int]) -> dict[int, tuple]:
    """Rows of ``table`` at the given positions in ``order_by`` order (0-based), in one scan and a hash join."""
    if not indexes:
        return {}
    cur.execute(
        sql.SQL(
            "select position, {columns} from (select {columns}, row_number() over (order by {order_by}) - 1 as position"
            " from {table}) as numbered join unnest(%s::bigint[]) as wanted (position) using (position)"
        ).format(columns=sql.SQL(columns), order_by=sql.SQL(order_by), table=qualified(table)),
        (sorted(set(indexes)),),
    )
    return {row[0]: row[1:] for row in cur.fetchall()}


def _visits(cur, rng: random.Random, window_start: int, window_end: int, n_visits: int, counts: dict[str, int]) -> None:
    """``n_visits`` visits starting in (window_start, window_end], in time order, copied in batches."""
    cur.execute(sql.SQL("select product_id, price from {} order by product_id").format(qualified("products")))
    products = [(product_id, int(Decimal(price) * 100)) for product_id, price in cur.fetchall()]
    cur.execute(
        sql.SQL("select promo_id, discount from {} where status = 'active' order by promo_id").format(
            qualified("promos")
        )
    )
    # New orders use the promos that are active now.
    promos = [(promo_id, discount, 1) for promo_id, discount in cur.fetchall() if discount is not None]
    visits_maker = Visits(products, promos)
    n_users = _count(cur, "users")
    n_addresses = _count(cur, "addresses")
    span = max(1, window_end - window_start)
    starts = sorted(window_start + 1 + rng.randrange(span) for _ in range(n_visits))
    for first in range(0, len(starts), VISIT_BATCH):
        batch = starts[first : first + VISIT_BATCH]
        new_visitor = [n_users == 0 or rng.random() < NEW_VISITOR_SHARE for _ in batch]
        returning_rows = list(
            _pick_rows(
                cur,
                "users",
                "user_id, address_id",
                "user_id",
                [rng.randrange(n_users) for is_new in new_visitor if not is_new] if n_users else [],
            ).values()
        )
        other_addresses = [
            row[0]
            for row in _pick_rows(
                cur,
                "addresses",
                "address_id",
                "address_id",
                [rng.randrange(n_addresses) for _ in batch] if n_addresses else [],
            ).values()
        ]
        lines: dict[str, list[str]] = {t: [] for t in ("addresses", "users", "orders", "order_items", "events")}
        for start, is_new in zip(batch, new_visitor, strict=True):
            home: str | None
            if is_new:
                user_id = random_uuid(rng)
                home = None
            else:
                user_id, home = rng.choice(returning_rows)
            if is_new and (not other_addresses or rng.random() < NEW_VISITOR_NEW_ADDRESS):
                home = random_uuid(rng)
                lines["addresses"].append(address_line(rng, home))
            elif is_new:
                home = rng.choice(other_addresses)

            def ship_to(home: str | None = home, others: list[str] = other_addresses) -> str:
                if others and (home is None or rng.random() >= SHIP_TO_OWN_ADDRESS):
                    return rng.choice(others)
                return home or ""

            placed, started = visits_maker.visit(
                rng,
                start,
                window_end,
                user_id,
                ship_to,
                lines["events"],
                lines["orders"],
                lines["order_items"],
                complete=True,
            )
            if is_new:
                # Signed up just before this first visit.
                signed_up = started - rng.randint(30, 600)
                # Numbered after the users already there (the generator numbers its users from 0).
                number = n_users + len(lines["users"])
                lines["users"].append(user_line(rng, user_id, number, signed_up, signed_up, home))
                counts["new_users"] += 1
            counts["orders"] += placed
            counts["visits"] += 1
        for table, table_lines in lines.items():  # parents first: the foreign keys are in place
            _copy(cur, table, table_lines)
        counts["events"] += len(lines["events"])
        counts["order_items"] += len(lines["order_items"])
        n_users += len(lines["users"])
        n_addresses += len(lines["addresses"])


# -- 3. catalogue and profiles -----------------------------------------------------------------------------------


def _catalogue_and_profiles(cur, rng: random.Random, now: int, counts: dict[str, int], price_changes: bool) -> None:
    if rng.random() < PRODUCT_CHANGE_CHANCE:
        cur.execute(sql.SQL("select count(*) from {}").format(qualified("products")))
        picked = _pick_rows(
            cur, "products", "product_id, price, inventory", "product_id", [rng.randrange(cur.fetchone()[0])]
        )
        for product_id, price, inventory in picked.values():
            if price_changes and rng.random() < PRICE_CHANGE_SHARE and price is not None:
                factor = Decimal(1 + rng.choice((-1, 1)) * rng.randint(5, 15) / 100)
                # Prices end in 0 or 5 cents, like the catalogue's.
                new_price = max(
                    Decimal("5.00"),
                    (price * factor / Decimal("0.05")).quantize(Decimal(1), ROUND_HALF_UP) * Decimal("0.05"),
                )
                cur.execute(
                    sql.SQL("update {} set price = %s, _loaded_at = now() where product_id = %s").format(
                        qualified("products")
                    ),
                    (new_price, product_id),
                )
            else:
                stock = inventory or 0
                change = rng.randint(10, 50) if rng.random() < 0.4 or stock < 10 else -rng.randint(1, min(8, stock))
                cur.execute(
                    sql.SQL("update {} set inventory = %s, _loaded_at = now() where product_id = %s").format(
                        qualified("products")
                    ),
                    (stock + change, product_id),
                )
            counts["product_changes"] += 1
    if rng.random() < USER_EDIT_CHANCE:
        cur.execute(sql.SQL("select count(*) from {}").format(qualified("users")))
        n_users = cur.fetchone()[0]
        if n_users:
            for (user_id,) in _pick_rows(cur, "users", "user_id", "user_id", [rng.randrange(n_users)]).values():
                cur.execute(
                    sql.SQL(
                        "update {} set phone_number = %s, updated_at = to_timestamp(%s), _loaded_at = now()"
                        " where user_id = %s"
                    ).format(qualified("users")),
                    (phone_number(rng), now, user_id),
                )
                counts["user_edits"] += 1


def _copy(cur, table: str, lines: list[str]) -> None:
    if not lines:
        return
    statement = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        qualified(table), sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS[table])
    )
    cur.copy_expert(statement.as_string(cur), io.StringIO("".join(lines)))
