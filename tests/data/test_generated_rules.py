"""Generated data follows the course data's rules, checked as SQL over the loaded raw tables.

Every structural rule is checked on the course data too: a rule the real data breaks would be a wrong rule.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from data_helpers import END, row_counts, scalar

from include.greenery_data.catalog import PRODUCTS, PROMOS

# Each rule: SQL that returns the number of rows breaking it.
VIOLATIONS = {
    "every session has a page view": """
        select count(*) from (select session_id from raw.events group by session_id
        having count(*) filter (where event_type = 'page_view') = 0) as s""",
    "one user per session": """
        select count(*) from (select session_id from raw.events group by session_id
        having count(distinct user_id) > 1) as s""",
    "at most one checkout per session": """
        select count(*) from (select session_id from raw.events where event_type = 'checkout'
        group by session_id having count(*) > 1) as s""",
    "event types": """
        select count(*) from raw.events
        where event_type not in ('page_view', 'add_to_cart', 'checkout', 'package_shipped')""",
    "order_id only on checkout and package_shipped": """
        select count(*) from raw.events
        where (order_id is not null) <> (event_type in ('checkout', 'package_shipped'))""",
    "product_id only on page_view and add_to_cart": """
        select count(*) from raw.events
        where (product_id is not null) <> (event_type in ('page_view', 'add_to_cart'))""",
    "page_url forms": """
        select count(*) from raw.events where page_url <> case
            when event_type in ('page_view', 'add_to_cart') then 'https://greenary.com/product/' || product_id
            when event_type = 'checkout' then 'https://greenary.com/checkout/' || order_id
            else 'https://greenary.com/shipping/' || order_id end""",
    "every order has exactly one checkout": """
        select count(*) from raw.orders as o left join (
            select order_id, count(*) as checkouts from raw.events where event_type = 'checkout' group by order_id
        ) as c using (order_id)
        where c.checkouts is distinct from 1""",
    "the checkout's user is the order's user": """
        select count(*) from raw.events as e join raw.orders as o on o.order_id = e.order_id
        where e.user_id <> o.user_id""",
    "package_shipped exactly for orders that left the warehouse": """
        select count(*) from raw.orders as o
        where (o.status <> 'preparing') <> exists (select 1 from raw.events as e
            where e.order_id = o.order_id and e.event_type = 'package_shipped')""",
    "package_shipped in the checkout's session, after it": """
        select count(*) from raw.events as s join raw.events as c
            on c.order_id = s.order_id and c.event_type = 'checkout'
        where s.event_type = 'package_shipped' and (s.session_id <> c.session_id or s.created_at < c.created_at)""",
    "add_to_cart products were viewed before in the session": """
        select count(*) from raw.events as a where a.event_type = 'add_to_cart' and not exists (
            select 1 from raw.events as v where v.session_id = a.session_id and v.event_type = 'page_view'
            and v.product_id = a.product_id and v.created_at <= a.created_at)""",
    "order items are the session's cart": """
        with carts as (
            select c.order_id, array_agg(distinct a.product_id order by a.product_id) as products
            from raw.events as c join raw.events as a on a.session_id = c.session_id and a.event_type = 'add_to_cart'
            where c.event_type = 'checkout' group by c.order_id),
        items as (
            select order_id, array_agg(product_id order by product_id) as products
            from raw.order_items group by order_id)
        select count(*) from raw.orders as o left join carts using (order_id) left join items using (order_id)
        where carts.products is distinct from items.products""",
    "1 to 7 items per order": """
        select count(*) from raw.orders as o left join (
            select order_id, count(*) as items from raw.order_items group by order_id
        ) as i using (order_id)
        where coalesce(i.items, 0) not between 1 and 7""",
    "quantity 1 to 4": "select count(*) from raw.order_items where quantity not between 1 and 4",
    "order_cost = sum(price x quantity)": """
        select count(*) from raw.orders as o left join (
            select i.order_id, sum(p.price * i.quantity) as cost
            from raw.order_items as i join raw.products as p using (product_id) group by i.order_id
        ) as items using (order_id)
        where o.order_cost is distinct from items.cost""",
    "order_total = order_cost + shipping_cost - discount": """
        select count(*) from raw.orders as o left join raw.promos as p using (promo_id)
        where o.order_total <> o.order_cost + o.shipping_cost - coalesce(p.discount, 0)""",
    "shipping_cost 1.00 to 9.99": "select count(*) from raw.orders where shipping_cost not between 1 and 9.99",
    "statuses": "select count(*) from raw.orders where status not in ('preparing', 'shipped', 'delivered')",
    "preparing orders have no shipment yet": """
        select count(*) from raw.orders where status = 'preparing' and (tracking_id is not null
            or shipping_service is not null or estimated_delivery_at is not null or delivered_at is not null)""",
    "shipped orders have a carrier and no delivery": """
        select count(*) from raw.orders where status = 'shipped'
        and (tracking_id is null or shipping_service is null or delivered_at is not null)""",
    "delivered orders have a carrier and a delivery": """
        select count(*) from raw.orders where status = 'delivered'
        and (tracking_id is null or shipping_service is null or delivered_at is null)""",
    "shipping services": """
        select count(*) from raw.orders where shipping_service not in ('ups', 'fedex', 'usps', 'dhl')""",
    "delivery after the order": "select count(*) from raw.orders where delivered_at < created_at",
    "estimates after the order": "select count(*) from raw.orders where estimated_delivery_at <= created_at",
    "estimates after the package ships": """
        select count(*) from raw.orders as o join raw.events as e
            on e.order_id = o.order_id and e.event_type = 'package_shipped'
        where o.estimated_delivery_at < e.created_at""",
    "one account per email": "select count(*) - count(distinct lower(email)) from raw.users",
    "checkout 1-5 seconds before its order": """
        select count(*) from raw.events as e join raw.orders as o using (order_id)
        where e.event_type = 'checkout' and o.created_at - e.created_at not between interval '1 second'
            and interval '5 seconds'""",
}

# Each measure: SQL returning a number, and the range the course data and generated data fall in.
MEASURES = {
    "share of sessions with add_to_cart": (
        """select avg(has_cart::int) from (select session_id, bool_or(event_type = 'add_to_cart') as has_cart
           from raw.events group by session_id) as s""",
        0.72,
        0.90,
    ),
    "share of carts checked out": (
        """select avg(checked_out::int) from (select session_id, bool_or(event_type = 'checkout') as checked_out
           from raw.events group by session_id having bool_or(event_type = 'add_to_cart')) as s""",
        0.68,
        0.86,
    ),
    "share of checkouts with package_shipped": (
        """select count(*) filter (where event_type = 'package_shipped')::numeric
           / count(*) filter (where event_type = 'checkout') from raw.events""",
        0.80,
        0.99,
    ),
    "share of delivered orders": ("select avg((status = 'delivered')::int) from raw.orders", 0.72, 0.92),
    "share of shipped orders": ("select avg((status = 'shipped')::int) from raw.orders", 0.03, 0.18),
    "share of preparing orders": ("select avg((status = 'preparing')::int) from raw.orders", 0.02, 0.14),
    "share of orders with a promo": ("select avg((promo_id is not null)::int) from raw.orders", 0.06, 0.17),
    "items per order": ("select count(*)::numeric / count(distinct order_id) from raw.order_items", 2.1, 2.7),
    "events per session": ("select count(*)::numeric / count(distinct session_id) from raw.events", 5.3, 7.0),
    "share of buyers who ordered more than once": (
        "select avg((n > 1)::int) from (select user_id, count(*) as n from raw.orders group by user_id) as b",
        0.6,
        0.95,
    ),
}


@pytest.fixture(scope="module", params=["course", "scale 1", "scale 10"])
def shop(request, loaded_database):
    """The course data and generated data at scale 1 and 10, each loaded once."""
    if request.param == "course":
        conn, _ = loaded_database(csv=request.getfixturevalue("course_dir"))
    else:
        conn, _ = loaded_database(scale=int(request.param.split()[1]), seed=7)
    return request.param, conn


@pytest.mark.parametrize("rule", list(VIOLATIONS))
def test_rule_holds(shop, rule):
    name, conn = shop
    assert scalar(conn, VIOLATIONS[rule]) == 0, f"{name}: rule broken: {rule}"


@pytest.mark.parametrize("measure", list(MEASURES))
def test_measure_in_course_range(shop, measure):
    name, conn = shop
    query, low, high = MEASURES[measure]
    value = float(scalar(conn, query))
    assert low <= value <= high, f"{name}: {measure} = {value:.3f}, expected {low}..{high}"


@pytest.mark.parametrize("scale", [1, 10])
def test_volumes_scale_with_the_course(loaded_database, scale):
    conn, _ = loaded_database(scale=scale, seed=7)
    counts = row_counts(conn)
    assert counts["addresses"] == 150 * scale
    assert counts["users"] == 130 * scale
    assert counts["promos"] == 6
    assert counts["products"] == 30
    sessions = scalar(conn, "select count(distinct session_id) from raw.events")
    tolerance = 0.12 if scale == 1 else 0.05
    for what, actual, course in (
        ("sessions", sessions, 578),
        ("orders", counts["orders"], 361),
        ("order_items", counts["order_items"], 862),
        ("events", counts["events"], 3553),
    ):
        expected = course * scale
        assert abs(actual - expected) <= tolerance * expected, f"{what}: {actual}, expected about {expected}"


@pytest.mark.parametrize("scale", [1, 10])
def test_catalogue_is_the_course_catalogue(loaded_database, scale):
    conn, _ = loaded_database(scale=scale, seed=7)
    with conn.cursor() as cur:
        cur.execute("select name, price from raw.products order by name")
        products = [(name, float(price)) for name, price in cur.fetchall()]
        cur.execute("select promo_id, discount, status from raw.promos order by promo_id")
        promos = cur.fetchall()
    conn.rollback()
    assert products == sorted((name, cents / 100) for name, cents in PRODUCTS)
    assert min(price for _, price in products) == 15.0 and max(price for _, price in products) == 95.0
    assert promos == sorted((promo_id, discount, status) for promo_id, discount, status, _ in PROMOS)
    assert [status for _, _, status in promos].count("active") == 1


@pytest.mark.parametrize("scale", [1, 10])
def test_all_four_carriers_are_used(loaded_database, scale):
    conn, _ = loaded_database(scale=scale, seed=7)
    services = scalar(conn, "select array_agg(distinct shipping_service) from raw.orders")
    assert sorted(s for s in services if s) == ["dhl", "fedex", "ups", "usps"]


@pytest.mark.parametrize("scale", [1, 10])
def test_activity_ends_minutes_before_the_end(loaded_database, scale):
    conn, _ = loaded_database(scale=scale, seed=7)
    end = datetime.fromisoformat(END)
    newest_event = scalar(conn, "select max(created_at) from raw.events")
    oldest_event = scalar(conn, "select min(created_at) from raw.events")
    assert 0 <= (end - newest_event).total_seconds() <= 15 * 60
    assert 29 <= (end - oldest_event).total_seconds() / 86400 <= 30
    newest_user_change = scalar(conn, "select max(updated_at) from raw.users")
    assert 0 <= (end - newest_user_change).total_seconds() <= 60 * 60
    # Nothing has happened after the end: no order placed, shipped or delivered later.
    assert scalar(conn, "select count(*) from raw.orders where created_at > %s or delivered_at > %s", (end, end)) == 0
    assert scalar(conn, "select count(*) from raw.users where created_at > %s or updated_at > %s", (end, end)) == 0


def test_users_visit_only_after_signing_up(loaded_database):
    conn, _ = loaded_database(scale=10, seed=7)
    early = scalar(
        conn,
        "select count(*) from raw.events as e join raw.users as u using (user_id) where e.created_at < u.created_at",
    )
    assert early == 0
    signed_up_during_window = scalar(
        conn, "select count(*) from raw.users where created_at > (select min(created_at) from raw.events)"
    )
    assert signed_up_during_window >= 0.1 * 1300
