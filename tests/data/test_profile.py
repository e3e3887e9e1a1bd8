"""The profile of the raw tables (``python -m include.greenery_data profile``) finds the course data's keys,
dependencies and time order from its rows, counts the rows that break a claim, and compares data sets side by
side in Markdown."""

from __future__ import annotations

import psycopg2
import pytest
from data_helpers import END, dsn, run_cli

from include.greenery_data import load_generated
from include.greenery_data.profiling import Finding, profile


def by_claim(findings: list[Finding]) -> dict[tuple[str, str, str], Finding]:
    return {(f.section, f.subject, f.claim): f for f in findings}


@pytest.fixture(scope="module")
def course_profile(loaded_database, course_dir) -> dict[tuple[str, str, str], Finding]:
    conn, _ = loaded_database(csv=course_dir)
    return by_claim(profile(conn))


@pytest.mark.parametrize(
    ("section", "subject", "claim", "checked"),
    [
        ("keys", "orders.order_id", "unique", 361),
        ("keys", "orders.tracking_id", "unique", 335),
        ("keys", "events.order_id", "unique where event_type = 'checkout'", 361),
        ("keys", "order_items", "unique (order_id, product_id)", 862),
        ("dependencies", "events.order_id", "set exactly when event_type in (checkout, package_shipped)", 3553),
        ("dependencies", "orders.delivered_at", "set exactly when status in (delivered)", 361),
        ("dependencies", "events.session_id", "determines user_id", 578),
        ("dependencies", "events.page_url", "contains product_id", 2857),
        ("time order", "users", "created_at <= updated_at", 130),
        ("time order", "events -> users by user_id", "users.created_at <= events.created_at", 3553),
        (
            "time order",
            "events -> orders by order_id",
            "events.created_at <= orders.delivered_at where event_type = 'package_shipped'",
            305,
        ),
        (
            "time order",
            "events by session_id, product_id",
            "every add_to_cart has a row of page_view at or before it",
            986,
        ),
        ("time order", "events by order_id", "every package_shipped has a row of checkout at or before it", 335),
    ],
)
def test_the_course_datas_rules_are_found_in_its_rows(course_profile, section, subject, claim, checked):
    finding = course_profile[(section, subject, claim)]
    assert (finding.violations, finding.checked) == (0, checked)


def test_claims_that_the_course_data_breaks_count_its_rows(course_profile):
    # 40 orders have a promo: their total is cost + shipping - discount.
    total = course_profile[("dependencies", "orders.order_total", "= order_cost + shipping_cost")]
    assert (total.violations, total.checked) == (40, 361)
    # Of 130 users, 2 share a first name with another user.
    names = course_profile[("keys", "users.first_name", "unique")]
    assert (names.violations, names.unit) == (2, "repeats")


def test_measurements_are_what_the_rows_say(course_profile):
    checkout = course_profile[
        (
            "time order",
            "events -> orders by order_id",
            "events.created_at <= orders.created_at where event_type = 'checkout'",
        )
    ]
    assert checkout.measured == "orders.created_at - events.created_at: 1 s .. 5 s"
    assert course_profile[("columns", "orders.created_at", "range")].measured == (
        "0 null, 358 distinct, 2021-02-10 00:00 .. 2021-02-11 23:55"
    )
    assert course_profile[("columns", "events.event_type", "range")].measured.endswith(
        "values add_to_cart, checkout, package_shipped, page_view"
    )
    # A session's visit lasts minutes; its shipment comes hours later.
    assert course_profile[("time order", "events by session_id", "longest span without event_type package_shipped")]


def test_each_broken_row_is_counted_once(database):
    conn, _ = database
    load_generated(conn, scale=0.2, days=3, seed=5, end=END)
    clean = by_claim(profile(conn))
    claims = [
        ("time order", "users", "created_at <= updated_at"),
        ("dependencies", "events.order_id", "set exactly when event_type in (checkout, package_shipped)"),
        ("keys", "users.email", "unique"),
        ("time order", "events -> users by user_id", "users.created_at <= events.created_at"),
    ]
    assert [clean[claim].violations for claim in claims] == [0, 0, 0, 0]
    with conn.cursor() as cur:
        cur.execute("alter table raw.events drop constraint events_order_id_fkey")
        cur.execute(
            "update raw.users set updated_at = created_at - interval '1 day'"
            " where user_id = (select min(user_id) from raw.users)"
        )
        cur.execute(
            "update raw.events set order_id = 'an-order'"
            " where event_id = (select min(event_id) from raw.events where event_type = 'page_view')"
        )
        cur.execute(
            "update raw.users set email = (select min(email) from raw.users)"
            " where user_id = (select max(user_id) from raw.users)"
        )
        cur.execute(
            "update raw.events as e set created_at = u.created_at - interval '1 minute' from raw.users as u"
            " where u.user_id = e.user_id and e.event_id = (select max(event_id) from raw.events)"
        )
    conn.commit()
    broken = by_claim(profile(conn))
    assert [broken[claim].violations for claim in claims] == [1, 1, 1, 1]


def test_the_command_compares_data_sets_side_by_side(fresh_database, course_dir, tmp_path):
    _, env = fresh_database("data")
    other, other_env = fresh_database("data")
    conn = psycopg2.connect(dsn(other_env))
    try:
        load_generated(conn, scale=0.2, days=3, seed=5, end=END)
    finally:
        conn.close()
    assert run_cli("load", "--csv", str(course_dir), env=env).returncode == 0
    out = tmp_path / "profile.md"

    result = run_cli(
        "profile", "--database", f"course={env['PGDATABASE']}", "--database", other, "--out", str(out), env=env
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Wrote the profile of course, {other} to {out}."
    text = out.read_text()
    assert f"| subject | claim | course | {other} | holds in all |" in text
    assert "| orders.order_id | unique | ✓ 361 | ✓ " in text
    # Shown because it holds in one data set and breaks in the other: exactly what a review looks at.
    assert "| users.last_name | unique | ✓ 130 | ✗ " in text


def test_the_command_says_when_there_is_nothing_to_profile(database):
    _, env = database
    result = run_cli("profile", env=env)
    assert result.returncode == 1
    assert "are missing from schema raw: load data first (`make load`)" in result.stderr
    assert "Traceback" not in result.stderr
