"""The synthetic shop: course-shaped raw data at any scale, streamed as CSV text (no data set is held in memory).

Scale 1 is the course's size (150 addresses, 130 users, ~578 sessions, ~360 orders, ~3,550 events); scale N
multiplies every volume by N while the character stays the course's:

- the 30 plants and 6 promos of ``catalog.py``; about 11% of orders use a promo (a flat discount);
- every session views 1-10 products; 81% add some of the viewed products to the cart; 77% of those check out
  (one order, whose items are exactly the cart's products, 1-4 of each); one user per session;
- order_cost = sum(price x quantity), order_total = order_cost + shipping_cost - discount (exact cents);
- order status follows the clock (``fulfilment.py``): at the end of the history recent orders are still
  `preparing`, then `shipped`, most are `delivered`; shipped orders have a `package_shipped` event in the
  checkout's session;
- users pick sessions at random, so most buyers come back and order again; 15% of users sign up during the
  generated window and only browse after signing up.

``--days`` spreads the same volume over D days ending at ``--end`` (default: now), so the newest events are
minutes old. Everything is deterministic for a (scale, days, seed, end).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from include.greenery_data.catalog import PRODUCT_IDS, PRODUCTS, PROMOS
from include.greenery_data.fulfilment import DAY, HOUR
from include.greenery_data.ids import key_for, stable_fraction, stable_int, stable_uuid
from include.greenery_data.people import address_line, user_line
from include.greenery_data.schema import COLUMNS
from include.greenery_data.visits import Visits, money

BASE_ADDRESSES = 150
BASE_USERS = 130
BASE_SESSIONS = 578
DEFAULT_DAYS = 30
DEFAULT_SEED = 42

SHIP_TO_OWN_ADDRESS = 0.85  # the others ship to another address (a gift)
NEW_USER_SHARE = 0.15  # users who sign up during the generated window
USER_HISTORY_DAYS = 365  # the other users signed up during the year before it
CHUNK_ROWS = 5000

EVENTS_PER_SESSION = 3553 / 578
ORDERS_PER_SESSION = 361 / 578
ITEMS_PER_ORDER = 862 / 361


class UsageError(ValueError):
    """An argument a user gave is out of range or unparseable."""


@dataclass
class ShopSpec:
    """What to generate. Build it with ``ShopSpec.build`` so the arguments are checked."""

    scale: float
    days: int
    seed: int
    end: int  # epoch seconds, UTC
    # Derived in __post_init__ (looked up for every row, so computed once).
    start: int = field(init=False)
    n_addresses: int = field(init=False)
    n_users: int = field(init=False)
    n_sessions: int = field(init=False)
    n_new_users: int = field(init=False)
    n_old_users: int = field(init=False)
    _keys: dict[str, int] = field(init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls, scale: float = 1, days: int = DEFAULT_DAYS, seed: int = DEFAULT_SEED, end: datetime | str | None = None
    ) -> ShopSpec:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise UsageError(f"scale must be a positive number, not {scale!r}") from None
        if not math.isfinite(scale) or scale <= 0:
            raise UsageError(f"scale must be a positive number, not {scale:g}")
        if isinstance(days, float) and not days.is_integer():
            raise UsageError(f"days must be a whole number of days (1 or more), not {days!r}")
        if int(days) < 1:
            raise UsageError(f"days must be 1 or more, not {days}")
        return cls(scale=scale, days=int(days), seed=int(seed), end=parse_end(end))

    def __post_init__(self) -> None:
        self.start = self.end - self.days * DAY
        self.n_addresses = max(1, round(BASE_ADDRESSES * self.scale))
        self.n_users = max(1, round(BASE_USERS * self.scale))
        self.n_sessions = max(1, round(BASE_SESSIONS * self.scale))
        self.n_new_users = int(self.n_users * NEW_USER_SHARE)
        self.n_old_users = self.n_users - self.n_new_users
        self._keys = {kind: key_for(self.seed, kind) for kind in ("address", "user", "user_address", "user_created")}
        self._user_key = self._keys["user"]
        self._address_key = self._keys["address"]
        self._new_user_step = self.days * DAY / self.n_new_users if self.n_new_users else 0.0

    @property
    def end_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.end, UTC)

    def expected_rows(self) -> dict[str, int]:
        """About how many rows each table gets (for progress bars)."""
        orders = round(self.n_sessions * ORDERS_PER_SESSION)
        return {
            "addresses": self.n_addresses,
            "users": self.n_users,
            "promos": len(PROMOS),
            "products": len(PRODUCTS),
            "orders": orders,
            "order_items": round(orders * ITEMS_PER_ORDER),
            "events": round(self.n_sessions * EVENTS_PER_SESSION),
        }

    # -- who exists when: pure functions of an index, shared by the user pass and the session pass ------------
    def user_id(self, index: int) -> str:
        return stable_uuid(self._user_key, index)

    def address_id(self, index: int) -> str:
        return stable_uuid(self._address_key, index)

    def user_address_index(self, user_index: int) -> int:
        return stable_int(self._keys["user_address"], user_index, self.n_addresses)

    def user_created_at(self, index: int) -> int:
        """Sign-up time; increases with the index, so 'users who exist at t' is a prefix of the indexes."""
        old = self.n_old_users
        jitter = stable_fraction(self._keys["user_created"], index)
        if index < old:
            span = USER_HISTORY_DAYS * DAY
            return int(self.start - span + (index + jitter) * span / old)
        created = int(self.start + (index - old + jitter) * self._new_user_step)
        if index == self.n_users - 1:
            # The newest sign-up is 10-30 minutes old, so users.updated_at is as fresh as the events. Later than
            # the formula, but no session picks this user: only indexes below users_existing_at() are picked.
            created = self.end - 600 - int(jitter * 1200)
        return created

    def users_existing_at(self, moment: int) -> int:
        """How many users (a prefix of the indexes) signed up before ``moment``."""
        if self.n_new_users == 0:
            return self.n_old_users
        arrived = int((moment - self.start) / self._new_user_step)
        return self.n_old_users + max(0, min(self.n_new_users - 1, arrived))


def parse_end(end: datetime | str | None) -> int:
    """``end`` as epoch seconds: None means now; strings are ISO 8601 (a missing zone means UTC)."""
    if end is None:
        return int(time.time())
    if isinstance(end, str):
        text = end.strip()
        if text.lower() == "now":
            return int(time.time())
        try:
            end = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(
                f"--end must be an ISO 8601 timestamp such as 2021-02-12T09:00:00Z, not {text!r}"
            ) from None
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return int(end.timestamp())


# -- the small fixed tables -----------------------------------------------------------------------------------


def promo_chunks(spec: ShopSpec) -> Iterator[tuple[str, int]]:
    yield "".join(f"{promo_id},{discount},{status}\n" for promo_id, discount, status, _ in PROMOS), len(PROMOS)


def product_chunks(spec: ShopSpec) -> Iterator[tuple[str, int]]:
    rng = random.Random(f"{spec.seed}:products")
    lines = [
        f"{product_id},{name},{money(price)},{rng.randint(20, 100)}\n"
        for product_id, (name, price) in zip(PRODUCT_IDS, PRODUCTS, strict=True)
    ]
    yield "".join(lines), len(lines)


# -- people and places ----------------------------------------------------------------------------------------


def address_chunks(spec: ShopSpec) -> Iterator[tuple[str, int]]:
    rng = random.Random(f"{spec.seed}:addresses")
    lines: list[str] = []
    for index in range(spec.n_addresses):
        lines.append(address_line(rng, spec.address_id(index)))
        if len(lines) >= CHUNK_ROWS:
            yield "".join(lines), len(lines)
            lines = []
    if lines:
        yield "".join(lines), len(lines)


def user_chunks(spec: ShopSpec) -> Iterator[tuple[str, int]]:
    rng = random.Random(f"{spec.seed}:users")
    newest = spec.n_users - 1
    lines: list[str] = []
    for index in range(spec.n_users):
        created = spec.user_created_at(index)
        # Profiles change now and then; the newest user has not edited theirs yet.
        updated = created if index == newest else created + int(rng.random() * max(0, spec.end - HOUR - created))
        address_id = spec.address_id(spec.user_address_index(index))
        lines.append(user_line(rng, spec.user_id(index), index, created, updated, address_id))
        if len(lines) >= CHUNK_ROWS:
            yield "".join(lines), len(lines)
            lines = []
    if lines:
        yield "".join(lines), len(lines)


# -- sessions, events, orders ---------------------------------------------------------------------------------


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _hourly_weight(moment: int) -> float:
    """More visits in the US daytime than at night (peak 15:00 UTC); averages 1 over a day."""
    hour = (moment % DAY) / HOUR
    return 1 + 0.6 * math.sin(2 * math.pi * (hour - 9) / 24)


def session_starts(spec: ShopSpec, rng: random.Random) -> Iterator[int]:
    """Session start times in order: a Poisson process over the window, busier by day, plus one visit that
    starts 4-12 minutes before the end so the newest events are minutes old."""
    per_hour = spec.n_sessions / (spec.days * 24)
    last = None
    for bucket in range(spec.days * 24):
        bucket_start = spec.start + bucket * HOUR
        count = poisson(rng, per_hour * _hourly_weight(bucket_start + HOUR // 2))
        for moment in sorted(bucket_start + rng.randrange(HOUR) for _ in range(count)):
            last = moment
            yield moment
    if last is None or last < spec.end - 15 * 60:
        yield spec.end - rng.randint(4 * 60, 12 * 60)


def activity_chunks(spec: ShopSpec) -> Iterator[tuple[str, str, int]]:
    """(table, CSV text, rows) for events, orders and order_items, session by session in time order.

    Whatever would happen after ``spec.end`` has not happened yet: a visit still going on at the end has only
    its first events, and orders ship or arrive only when their plan's time has come.
    """
    rng = random.Random(f"{spec.seed}:activity")
    visits = Visits(
        products=[(product_id, price) for product_id, (_, price) in zip(PRODUCT_IDS, PRODUCTS, strict=True)],
        promos=[(promo_id, discount, weight) for promo_id, discount, _, weight in PROMOS],
    )
    events: list[str] = []
    orders: list[str] = []
    items: list[str] = []
    for start in session_starts(spec, rng):
        user_index = rng.randrange(spec.users_existing_at(start))

        def ship_to(user_index: int = user_index) -> str:
            if rng.random() < SHIP_TO_OWN_ADDRESS:
                return spec.address_id(spec.user_address_index(user_index))
            return spec.address_id(rng.randrange(spec.n_addresses))

        visits.visit(rng, start, spec.end, spec.user_id(user_index), ship_to, events, orders, items)
        if len(events) >= CHUNK_ROWS:
            yield from _flush(events, orders, items)
            events, orders, items = [], [], []
    yield from _flush(events, orders, items)


def _flush(events: list[str], orders: list[str], items: list[str]) -> Iterator[tuple[str, str, int]]:
    for table, lines in (("events", events), ("orders", orders), ("order_items", items)):
        if lines:
            yield table, "".join(lines), len(lines)


TABLE_CHUNKS = {
    "addresses": address_chunks,
    "users": user_chunks,
    "promos": promo_chunks,
    "products": product_chunks,
}


def header(table: str) -> str:
    return ",".join(COLUMNS[table]) + "\n"
