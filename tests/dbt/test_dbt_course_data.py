"""The course data through the whole project: `dbt build` passes, and the course's questions, asked of the
marts with the queries in analyses/, get the answers that independent SQL over the raw tables gives."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from dbt_runs import DbtRun, Warehouse

from include.greenery_data import load_csv_dir

REPORTING_ROLE = "greenery_reporting_test"

MART_COLUMNS = {
    "analytics_core.fct_orders": [
        "order_id", "user_id", "promo_id", "address_id", "created_at", "order_cost", "shipping_cost", "discount",
        "order_total", "status", "tracking_id", "shipping_service", "estimated_delivery_at", "delivered_at",
        "days_to_deliver", "item_count", "product_count",
    ],
    "analytics_core.dim_users": ["user_id", "address", "zipcode", "state", "country"],
    "analytics_core.dim_products": ["product_id", "product_name", "price", "inventory"],
    "analytics_marketing.user_order_facts": [
        "user_id", "order_count", "first_order_at", "last_order_at", "lifetime_order_total", "is_repeat_customer",
    ],
    "analytics_product.fct_sessions": [
        "session_id", "user_id", "session_started_at", "session_ended_at", "session_date", "page_view_count",
        "add_to_cart_count", "checkout_count", "package_shipped_count", "has_page_view", "has_add_to_cart",
        "has_checkout", "has_package_shipped", "order_id",
    ],
    "analytics_product.fct_page_views": ["event_id", "session_id", "user_id", "product_id", "viewed_at"],
    "analytics_product.product_funnel": [
        "session_date", "sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout",
        "sessions_with_package_shipped", "view_to_cart_rate", "cart_to_checkout_rate", "view_to_checkout_rate",
        "view_to_cart_drop_off_count", "cart_to_checkout_drop_off_count",
    ],
    "analytics_product.product_conversion": [
        "product_id", "product_name", "sessions_with_view", "sessions_with_add_to_cart", "sessions_with_purchase",
        "add_to_cart_rate", "conversion_rate",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def course_loaded(warehouse_factory, course_data) -> Warehouse:
    """The course data in a new database, with a reporting role that the build grants the marts to."""
    warehouse = warehouse_factory("dbt_course", extra_env={"GREENERY_REPORTING_ROLES": REPORTING_ROLE})
    warehouse.execute(f"do $$ begin create role {REPORTING_ROLE}; exception when duplicate_object then null; end $$")
    load_csv_dir(warehouse.conn, course_data)
    return warehouse


@pytest.fixture(scope="module")
def course_build(course_loaded) -> DbtRun:
    return course_loaded.dbt.run("build")


@pytest.fixture(scope="module")
def docs_generate(course_loaded, course_build) -> DbtRun:
    """`dbt docs generate` after the build; it also compiles the analyses, which the question tests run."""
    assert course_build.ok, course_build.tail()
    return course_loaded.dbt.run("docs", "generate")


@pytest.fixture(scope="module")
def course(course_loaded, docs_generate) -> Warehouse:
    """The course data built by `dbt build`, with the analyses compiled."""
    assert docs_generate.ok, docs_generate.tail()
    return course_loaded


def test_build_passes_on_the_course_data(course_build):
    assert course_build.ok, course_build.tail()
    statuses = {result["status"] for result in course_build.results.values()}
    assert statuses <= {"success", "pass", "no-op"}, course_build.tail()
    # Everything was built and checked: models, snapshots, data tests and unit tests.
    kinds = {result["unique_id"].split(".")[0] for result in course_build.results.values()}
    assert {"model", "snapshot", "test", "unit_test"} <= kinds


@pytest.mark.parametrize("relation", sorted(MART_COLUMNS))
def test_marts_have_the_promised_columns(course, relation):
    schema, table = relation.split(".")
    columns = {
        row[0]
        for row in course.query(
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
            (schema, table),
        )
    }
    assert set(MART_COLUMNS[relation]) <= columns, f"{relation} lacks {set(MART_COLUMNS[relation]) - columns}"


def analysis(course: Warehouse, name: str) -> list[tuple]:
    return course.query(course.dbt.compiled_analysis(name))


def test_how_many_users(course):
    assert analysis(course, "users_count") == [(course.scalar("select count(*) from raw.users"),)]


def test_orders_per_hour(course):
    expected = course.scalar(
        "select round(count(*)::numeric / count(distinct date_trunc('hour', created_at at time zone 'UTC')), 2)"
        " from raw.orders"
    )
    assert analysis(course, "orders_per_hour") == [(expected,)]


def test_average_time_to_delivery(course):
    [(days, interval)] = analysis(course, "time_to_delivery")
    expected_seconds = course.scalar(
        "select avg(extract(epoch from delivered_at - created_at)) from raw.orders where delivered_at is not null"
    )
    assert abs(days - Decimal(expected_seconds) / 86400) < Decimal("0.01")
    assert abs(interval.total_seconds() - float(expected_seconds)) < 1


def test_users_by_number_of_orders(course):
    expected = course.query(
        """
        select case when orders >= 3 then '3+' else orders::text end, count(*)
        from (select user_id, count(*) as orders from raw.orders group by user_id) as per_user
        group by 1 order by 1
        """
    )
    assert analysis(course, "users_by_order_count") == expected
    assert [bucket for bucket, _ in expected] == ["1", "2", "3+"]


def test_repeat_rate(course):
    expected = course.scalar(
        """
        select round(count(*) filter (where orders >= 2)::numeric / count(*), 4)
        from (select user_id, count(*) as orders from raw.orders group by user_id) as per_user
        """
    )
    assert analysis(course, "repeat_rate") == [(expected,)]


def test_overall_conversion_rate(course):
    expected = course.scalar(
        """
        select round(
            count(distinct session_id) filter (where event_type = 'checkout')::numeric / count(distinct session_id), 4
        )
        from raw.events
        """
    )
    assert analysis(course, "overall_conversion_rate") == [(expected,)]


def test_conversion_rate_by_product(course):
    expected = course.query(
        """
        with views as (
            select product_id, count(distinct session_id) as sessions
            from raw.events where event_type = 'page_view' group by product_id
        ),
        purchases as (
            select items.product_id, count(distinct events.session_id) as sessions
            from raw.events as events
            join raw.order_items as items on items.order_id = events.order_id
            where events.event_type = 'checkout'
            group by items.product_id
        )
        select products.name, round(coalesce(purchases.sessions, 0)::numeric / views.sessions, 4)
        from raw.products as products
        join views on views.product_id = products.product_id
        left join purchases on purchases.product_id = products.product_id
        """
    )
    answer = {(name, rate) for name, _views, _purchases, rate in analysis(course, "conversion_rate_by_product")}
    assert answer == set(expected)
    assert len(expected) == course.scalar("select count(*) from raw.products")


def test_funnel_and_its_largest_drop_off(course):
    sessions_at = dict(
        course.query("select event_type, count(distinct session_id) from raw.events group by event_type")
    )
    steps = [("page_view", "add_to_cart"), ("add_to_cart", "checkout")]
    expected = sorted(
        (
            (
                f"{before} -> {after}",
                sessions_at[before],
                sessions_at[after],
                sessions_at[before] - sessions_at[after],
                round(Decimal(1) - Decimal(sessions_at[after]) / Decimal(sessions_at[before]), 4),
            )
            for before, after in steps
        ),
        key=lambda row: row[4],
        reverse=True,
    )
    assert analysis(course, "funnel_drop_off") == expected


def test_funnel_by_day_adds_up_to_all_sessions(course):
    by_day = course.query(
        "select sum(session_count), sum(sessions_with_checkout), sum(sessions_with_package_shipped)"
        " from analytics_product.product_funnel"
    )
    expected = course.query(
        """
        select count(distinct session_id),
               count(distinct session_id) filter (where event_type = 'checkout'),
               count(distinct session_id) filter (where event_type = 'package_shipped')
        from raw.events
        """
    )
    assert by_day == expected


def test_order_facts_match_the_raw_orders(course):
    mismatches = course.query(
        """
        select o.order_id
        from analytics_core.fct_orders as f
        join raw.orders as o on o.order_id = f.order_id
        left join raw.promos as p on p.promo_id = o.promo_id
        where f.discount <> coalesce(p.discount, 0)
           or f.order_total <> o.order_total
           or f.item_count <> (select sum(quantity) from raw.order_items as i where i.order_id = o.order_id)
           or f.product_count <> (select count(*) from raw.order_items as i where i.order_id = o.order_id)
           or f.days_to_deliver is distinct from
              round((extract(epoch from o.delivered_at - o.created_at) / 86400)::numeric, 2)
        """
    )
    assert mismatches == []
    assert course.scalar("select count(*) from analytics_core.fct_orders") == course.scalar(
        "select count(*) from raw.orders"
    )


def test_reporting_role_reads_marts_but_not_staging(course):
    def can_select(relation: str) -> bool:
        return course.scalar(
            "select has_schema_privilege(%s, split_part(%s, '.', 1), 'usage')"
            " and has_table_privilege(%s, %s, 'select')",
            (REPORTING_ROLE, relation, REPORTING_ROLE, relation),
        )

    assert all(can_select(relation) for relation in MART_COLUMNS)
    assert not can_select("analytics_staging.stg_greenery__users")


def test_docs_generate(course, docs_generate):
    catalog = course.dbt.target_path / "catalog.json"
    assert catalog.exists(), docs_generate.tail()
    nodes = json.loads(catalog.read_text())["nodes"]
    # The catalogue describes every mart with the columns the warehouse really has.
    assert {"model.greenery.product_funnel", "model.greenery.fct_orders"} <= set(nodes)
    assert "conversion_rate" in nodes["model.greenery.product_conversion"]["columns"]
