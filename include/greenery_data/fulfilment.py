"""When an order ships and arrives: one plan per order, computed from its id and placement time alone.

The generator uses the plan to decide each order's status at the end of the generated history; the simulator
and ``deliver`` use the same plan later, so an order that was `preparing` at load time ships when its plan says,
whichever tool moves it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from include.greenery_data.catalog import SHIPPING_SERVICES
from include.greenery_data.ids import format_uuid

HOUR = 3600
DAY = 24 * HOUR
_SERVICE_TOTAL = sum(weight for _, weight in SHIPPING_SERVICES)


@dataclass(frozen=True)
class Plan:
    """Times are epoch seconds (UTC). ``estimated_delivery_at`` is None for the few orders the carrier gave no
    estimate for (as in the course data)."""

    shipped_at: int
    delivered_at: int
    estimated_delivery_at: int | None
    shipping_service: str
    tracking_id: str

    def status_at(self, moment: float) -> str:
        if moment < self.shipped_at:
            return "preparing"
        if moment < self.delivered_at:
            return "shipped"
        return "delivered"


def plan_for(order_id: str, created_at: int) -> Plan:
    """The fulfilment plan of one order.

    Half the orders leave the warehouse within 2-9 hours (the course's package_shipped events), the others wait
    1-6 days for stock; carriers take 1-5 days; the estimate is 2-6 whole days after the order, so some deliveries
    are late, and at least a day after the parcel leaves (the carrier estimates when it takes the parcel; in the
    course data every estimate is 15 hours or more after the package_shipped event). Over a 30-day history that
    makes about 6% preparing, 10% shipped and 84% delivered orders.
    """
    digest = hashlib.blake2b(order_id.encode(), digest_size=32, person=b"greenery-ship").digest()
    tracking = format_uuid(int.from_bytes(digest[:16], "big"))
    r = [int.from_bytes(digest[16 + 2 * i : 18 + 2 * i], "big") / 65536.0 for i in range(6)]
    ship_lag = 2 * HOUR + int(r[1] * 7 * HOUR) if r[0] < 0.5 else DAY + int(r[1] * 5 * DAY)
    transit = DAY + int(r[2] * 4 * DAY)
    shipped_at = created_at + ship_lag
    estimate = None if r[3] < 0.05 else max(created_at + (2 + int(r[4] * 5)) * DAY, shipped_at + DAY)
    pick = r[5] * _SERVICE_TOTAL
    service = SHIPPING_SERVICES[-1][0]
    for name, weight in SHIPPING_SERVICES:
        if pick < weight:
            service = name
            break
        pick -= weight
    return Plan(shipped_at, shipped_at + transit, estimate, service, tracking)
