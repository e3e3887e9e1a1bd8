"""The course's CSV files load exactly, through the API and through the CLI (`make load CSV=DIR`)."""

from __future__ import annotations

from data_helpers import row_counts, run_cli, scalar

from include.greenery_data import load_csv_dir

COURSE_COUNTS = {
    "addresses": 150,
    "users": 130,
    "promos": 6,
    "products": 30,
    "orders": 361,
    "order_items": 862,
    "events": 3553,
}


def test_course_csvs_load_with_exact_counts(database, course_dir):
    conn, _ = database
    assert load_csv_dir(conn, course_dir) == COURSE_COUNTS
    assert row_counts(conn) == COURSE_COUNTS
    assert scalar(conn, "select count(distinct session_id) from raw.events") == 578


def test_course_values_arrive_unchanged(database, course_dir):
    conn, _ = database
    load_csv_dir(conn, course_dir)
    # Free-text promo ids keep their spaces and case; NULL is an empty field.
    assert scalar(conn, "select discount from raw.promos where promo_id = 'instruction set'") == 13
    assert scalar(conn, "select count(*) from raw.orders where promo_id is not null") == 40
    assert scalar(conn, "select count(*) from raw.orders where status = 'preparing' and tracking_id is null") == 26
    assert (
        str(
            scalar(
                conn,
                "select order_total from raw.orders where order_id = %s",
                ("8329a65b-7ddf-4250-aeee-bd625f8a401a",),
            )
        )
        == "557.06"
    )
    assert (
        scalar(
            conn,
            "select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') from raw.orders"
            " where order_id = %s",
            ("8329a65b-7ddf-4250-aeee-bd625f8a401a",),
        )
        == "2021-02-11 23:30:34"
    )
    # Keys are back after the load.
    assert scalar(conn, "select count(*) from pg_constraint where connamespace = 'raw'::regnamespace") == 16


def test_reload_replaces_instead_of_appending(database, course_dir):
    conn, _ = database
    load_csv_dir(conn, course_dir)
    load_csv_dir(conn, course_dir)
    assert row_counts(conn) == COURSE_COUNTS


def test_cli_loads_course_csvs_and_prints_counts(database, course_dir):
    conn, env = database
    result = run_cli("load", "--csv", str(course_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert "events" in result.stdout and "3,553" in result.stdout and "361" in result.stdout
    assert row_counts(conn) == COURSE_COUNTS
