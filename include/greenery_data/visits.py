"""One visit to the shop: its page views, cart, checkout and order, as CSV lines for events, orders and
order_items. Shared by the generator (history) and the simulator (live traffic).

The rates and size distributions are measured on the course data: 81% of visits add to the cart, 77% of those
check out; a cart that is checked out holds 1-7 products (2.4 on average), one left behind holds 1-3; visitors
also look at 0-3 products they do not add.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from include.greenery_data.catalog import SITE
from include.greenery_data.fulfilment import plan_for
from include.greenery_data.ids import random_uuid

ADD_TO_CART_RATE = 467 / 578
CHECKOUT_RATE = 361 / 467
PROMO_RATE = 40 / 361
# Products in the cart: of visits that check out (= items per order: 1..7), and of carts left behind (1..3).
ORDER_SIZE_WEIGHTS = (89, 133, 80, 38, 14, 4, 3)
ABANDONED_CART_WEIGHTS = (89, 16, 1)
# Products viewed but not added to the cart: 1..3 for visits without a cart, 0..2 or 0..3 for the others.
BROWSE_ONLY_EXTRA_VIEWS = (53, 32, 26)
ABANDONED_CART_EXTRA_VIEWS = (33, 39, 34)
ORDER_EXTRA_VIEWS = (78, 90, 86, 107)


def _weighted(weights: Sequence[int], first: int) -> tuple[list[int], list[int]]:
    """Values first, first+1, ... and the cumulative weights ``random.choices`` wants."""
    cumulative, total = [], 0
    for weight in weights:
        total += weight
        cumulative.append(total)
    return list(range(first, len(weights) + first)), cumulative


_DAY_PREFIXES: dict[int, str] = {}


def iso(moment: int) -> str:
    """Epoch seconds as the course's timestamp text, e.g. 2021-02-10T14:03:00Z (the hottest function of the
    generator: the date part is formatted once per day)."""
    day, second = divmod(moment, 86400)
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        if len(_DAY_PREFIXES) > 100_000:
            _DAY_PREFIXES.clear()
        prefix = _DAY_PREFIXES[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{second:02d}Z"


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class Visits:
    """Makes visits over a product list [(product_id, price in cents)] and promos [(promo_id, discount in
    dollars, weight)]."""

    def __init__(self, products: Sequence[tuple[str, int]], promos: Sequence[tuple[str, int, int]]):
        if not products:
            raise ValueError("a shop needs products")
        self.product_ids = [product_id for product_id, _ in products]
        self.prices = [price for _, price in products]
        self.product_urls = [f"{SITE}/product/{product_id}" for product_id in self.product_ids]
        self.promo_ids = [promo_id for promo_id, _, _ in promos]
        self.promo_discounts = [discount for _, discount, _ in promos]
        self.promo_weights = [weight for _, _, weight in promos]
        self.order_sizes = _weighted(ORDER_SIZE_WEIGHTS, 1)
        self.abandoned_sizes = _weighted(ABANDONED_CART_WEIGHTS, 1)
        self.order_extra = _weighted(ORDER_EXTRA_VIEWS, 0)
        self.abandoned_extra = _weighted(ABANDONED_CART_EXTRA_VIEWS, 0)
        self.browse_only = _weighted(BROWSE_ONLY_EXTRA_VIEWS, 1)

    def visit(
        self,
        rng: random.Random,
        start: int,
        end: int,
        user_id: str,
        ship_to: Callable[[], str],
        events: list[str],
        orders: list[str],
        items: list[str],
        complete: bool = False,
    ) -> tuple[int, int]:
        """Append one visit's lines; returns (1 if it placed an order else 0, when it started). ``ship_to()`` is
        asked for the delivery address only when an order is placed.

        Whatever would happen after ``end`` is left out (a visit still going on when the history ends), unless
        ``complete``: then the visit starts earlier if need be so that it is over by ``end`` (live traffic, which
        has no later step to finish a visit in).
        """
        choices = rng.choices
        randint = rng.randint
        n_products = len(self.product_ids)
        has_cart = rng.random() < ADD_TO_CART_RATE
        checks_out = has_cart and rng.random() < CHECKOUT_RATE
        if checks_out:
            cart_size = choices(self.order_sizes[0], cum_weights=self.order_sizes[1])[0]
            views = cart_size + choices(self.order_extra[0], cum_weights=self.order_extra[1])[0]
        elif has_cart:
            cart_size = choices(self.abandoned_sizes[0], cum_weights=self.abandoned_sizes[1])[0]
            views = cart_size + choices(self.abandoned_extra[0], cum_weights=self.abandoned_extra[1])[0]
        else:
            cart_size = 0
            views = choices(self.browse_only[0], cum_weights=self.browse_only[1])[0]
        views = min(views, n_products)
        cart_size = min(cart_size, views)
        viewed = rng.sample(range(n_products), views)
        cart = set(rng.sample(viewed, cart_size))
        # The visit's clock first (seconds from its start), then its lines.
        steps: list[tuple[int, int | None, int]] = []  # (viewed at, added to cart at, product)
        moment = last = 0
        for product in viewed:
            viewed_at = last = moment
            added_at = None
            if product in cart:
                moment += randint(5, 90)
                added_at = last = moment
            steps.append((viewed_at, added_at, product))
            moment += randint(10, 120)
        checkout_at = moment
        created_at = moment + randint(1, 5)
        if complete:
            start = min(start, end - (created_at if checks_out else last))
        session_id = random_uuid(rng)
        finished = True
        for viewed_at, added_at, product in steps:
            if start + viewed_at > end:
                finished = False
                break
            url, product_id = self.product_urls[product], self.product_ids[product]
            events.append(
                f"{random_uuid(rng)},{session_id},{user_id},{url},{iso(start + viewed_at)},page_view,,{product_id}\n"
            )
            if added_at is not None:
                if start + added_at > end:
                    finished = False
                    break
                events.append(
                    f"{random_uuid(rng)},{session_id},{user_id},{url},{iso(start + added_at)},add_to_cart,,"
                    f"{product_id}\n"
                )
        if not (checks_out and finished and cart):
            return 0, start
        moment = start + checkout_at
        created = start + created_at
        if created > end:
            return 0, start
        order_id = random_uuid(rng)
        cost = 0
        for product in sorted(cart):
            quantity = randint(1, 4)
            cost += self.prices[product] * quantity
            items.append(f"{order_id},{self.product_ids[product]},{quantity}\n")
        shipping = randint(100, 999)
        promo, discount = "", 0
        if self.promo_ids and rng.random() < PROMO_RATE:
            pick = choices(range(len(self.promo_ids)), weights=self.promo_weights)[0]
            # A promo only applies when the order is worth more than its discount.
            if self.promo_discounts[pick] * 100 < cost:
                promo, discount = self.promo_ids[pick], self.promo_discounts[pick] * 100
        address_id = ship_to()
        plan = plan_for(order_id, created)
        status = plan.status_at(end)
        if status == "preparing":
            shipment = ",,,"
        else:
            estimate = iso(plan.estimated_delivery_at) if plan.estimated_delivery_at is not None else ""
            delivered = iso(plan.delivered_at) if status == "delivered" else ""
            shipment = f"{plan.tracking_id},{plan.shipping_service},{estimate},{delivered}"
        orders.append(
            f"{order_id},{user_id},{_csv(promo)},{address_id},{iso(created)},{money(cost)},{money(shipping)},"
            f"{money(cost + shipping - discount)},{shipment},{status}\n"
        )
        events.append(
            f"{random_uuid(rng)},{session_id},{user_id},{SITE}/checkout/{order_id},{iso(moment)},checkout,{order_id},\n"
        )
        if status != "preparing":
            events.append(
                f"{random_uuid(rng)},{session_id},{user_id},{SITE}/shipping/{order_id},{iso(plan.shipped_at)},"
                f"package_shipped,{order_id},\n"
            )
        return 1, start


def _csv(value: str) -> str:
    """A text field for CSV: quoted only when it has to be (promo ids are free text)."""
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value
