"""The course's delivery update (its snapshot exercise): ship orders that are `preparing`.

With the course data loaded, it makes exactly the course's change: three orders get shipping_service 'ups',
estimated_delivery_at 2021-02-19T10:15:26Z, status 'shipped' and a new tracking id; delivered_at stays NULL.
Otherwise (generated data, or the course orders already shipped) it ships the N oldest preparing orders with
the carrier and tracking id of their fulfilment plan. Only the orders table changes, as in the course.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg2 import sql

from include.greenery_data.connection import transaction
from include.greenery_data.errors import GreeneryDataError
from include.greenery_data.fulfilment import plan_for
from include.greenery_data.generator import UsageError
from include.greenery_data.schema import qualified, raw_schema, tables_present

COURSE_ESTIMATED_DELIVERY_AT = datetime(2021, 2, 19, 10, 15, 26, tzinfo=UTC)
COURSE_SHIPPING_SERVICE = "ups"
# order_id -> the new tracking_id the course gave it.
COURSE_SHIPMENTS: dict[str, str] = {
    "914b8929-e04a-40f8-86ee-357f2be3a2a2": "a807fe66-d8b1-4d38-b409-558fed8bd75f",
    "05202733-0e17-4726-97c2-0520c024ab85": "8404ed05-0128-4aeb-8ed5-6e44908875c4",
    "939767ac-357a-4bec-91f8-a7b25edd46c9": "0a1177bd-5a6d-421b-a13d-11617ef68143",
}


@dataclass(frozen=True)
class Shipment:
    """One order moved from `preparing` to `shipped`."""

    order_id: str
    tracking_id: str
    shipping_service: str
    estimated_delivery_at: datetime
    course_update: bool  # True when these are the course's own values

    def describe(self) -> str:
        return (
            f"order {self.order_id}: preparing -> shipped via {self.shipping_service}, tracking {self.tracking_id}, "
            f"estimated delivery {self.estimated_delivery_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        )


def deliver(conn, n: int = 3, now: datetime | None = None) -> list[Shipment]:
    """Ship preparing orders (see the module docstring) in one transaction; returns what changed (maybe nothing).

    ``n`` applies to the generated case; the course update always ships the course's orders that are preparing.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"the number of orders to ship must be 1 or more, not {n!r}")
    now = now or datetime.now(UTC)
    if "orders" not in tables_present(conn):
        conn.rollback()
        raise GreeneryDataError(
            f"There is no {raw_schema()}.orders table yet: load data first (`make load` or `make load CSV=DIR`)."
        )
    orders = qualified("orders")
    shipments: list[Shipment] = []
    with transaction(conn), conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "select order_id from {} where order_id = any(%s) and status = 'preparing' order by order_id for update"
            ).format(orders),
            (list(COURSE_SHIPMENTS),),
        )
        course_orders = [row[0] for row in cur.fetchall()]
        if course_orders:
            for order_id in course_orders:
                shipments.append(
                    Shipment(
                        order_id,
                        COURSE_SHIPMENTS[order_id],
                        COURSE_SHIPPING_SERVICE,
                        COURSE_ESTIMATED_DELIVERY_AT,
                        course_update=True,
                    )
                )
        else:
            cur.execute(
                sql.SQL(
                    "select order_id, created_at from {} where status = 'preparing'"
                    " order by created_at, order_id limit %s for update"
                ).format(orders),
                (n,),
            )
            for order_id, created_at in cur.fetchall():
                plan = plan_for(order_id, int(created_at.timestamp()))
                planned = plan.estimated_delivery_at or int(created_at.timestamp()) + 4 * 86400
                # Shipped late (by hand), an order cannot be expected before tomorrow.
                estimate = max(datetime.fromtimestamp(planned, UTC), now + timedelta(days=1)).replace(microsecond=0)
                shipments.append(
                    Shipment(order_id, plan.tracking_id, plan.shipping_service, estimate, course_update=False)
                )
        for shipment in shipments:
            cur.execute(
                sql.SQL(
                    "update {} set status = 'shipped', shipping_service = %s, tracking_id = %s,"
                    " estimated_delivery_at = %s, _loaded_at = now() where order_id = %s"
                ).format(orders),
                (shipment.shipping_service, shipment.tracking_id, shipment.estimated_delivery_at, shipment.order_id),
            )
    return shipments
