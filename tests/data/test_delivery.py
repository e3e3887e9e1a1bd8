"""The course's delivery update (`make deliver`): exactly the course's change on the course data, the oldest
preparing orders otherwise, and a calm message when nothing is preparing."""

from __future__ import annotations

from datetime import UTC, datetime

from data_helpers import END, run_cli, scalar

from include.greenery_data import deliver, load_csv_dir, load_generated

COURSE_UPDATE = {
    "914b8929-e04a-40f8-86ee-357f2be3a2a2": "a807fe66-d8b1-4d38-b409-558fed8bd75f",
    "05202733-0e17-4726-97c2-0520c024ab85": "8404ed05-0128-4aeb-8ed5-6e44908875c4",
    "939767ac-357a-4bec-91f8-a7b25edd46c9": "0a1177bd-5a6d-421b-a13d-11617ef68143",
}


def _orders(conn) -> dict[str, tuple]:
    with conn.cursor() as cur:
        cur.execute("select * from raw.orders")
        columns = [c.name for c in cur.description]
        rows = {row[0]: dict(zip(columns, row, strict=True)) for row in cur.fetchall()}
    conn.rollback()
    return rows


def test_course_delivery_changes_exactly_the_three_course_orders(database, course_dir):
    conn, _ = database
    load_csv_dir(conn, course_dir)
    before = _orders(conn)
    shipments = deliver(conn)
    after = _orders(conn)

    assert {s.order_id for s in shipments} == set(COURSE_UPDATE)
    changed = {order_id for order_id in before if before[order_id] != after[order_id]}
    assert changed == set(COURSE_UPDATE)
    for order_id, tracking_id in COURSE_UPDATE.items():
        old, new = before[order_id], after[order_id]
        assert old["status"] == "preparing"
        assert new["status"] == "shipped"
        assert new["shipping_service"] == "ups"
        assert new["tracking_id"] == tracking_id
        assert new["estimated_delivery_at"] == datetime(2021, 2, 19, 10, 15, 26, tzinfo=UTC)
        assert new["delivered_at"] is None
        differing = {column for column in old if old[column] != new[column]}
        # _loaded_at: the update re-delivers the row, as an EL sync would (docs/greenery-data.md).
        assert differing == {"status", "shipping_service", "tracking_id", "estimated_delivery_at", "_loaded_at"}
    # Only orders change, as in the course.
    assert scalar(conn, "select count(*) from raw.events") == 3553


def test_second_delivery_ships_the_oldest_other_preparing_orders(database, course_dir):
    conn, _ = database
    load_csv_dir(conn, course_dir)
    deliver(conn)
    oldest = scalar(
        conn,
        "select array_agg(order_id order by created_at, order_id) from (select order_id, created_at"
        " from raw.orders where status = 'preparing' order by created_at, order_id limit 2) as o",
    )
    shipments = deliver(conn, n=2)
    assert [s.order_id for s in shipments] == oldest
    assert not any(s.course_update for s in shipments)
    assert scalar(conn, "select count(*) from raw.orders where status = 'preparing'") == 26 - 3 - 2
    assert (
        scalar(
            conn,
            "select count(*) from raw.orders where order_id = any(%s) and status = 'shipped'"
            " and tracking_id is not null and shipping_service in ('ups', 'fedex', 'usps', 'dhl')"
            " and estimated_delivery_at > created_at and delivered_at is null",
            (oldest,),
        )
        == 2
    )


def test_delivery_on_generated_data_and_when_nothing_is_preparing(database):
    conn, env = database
    load_generated(conn, scale=1, end=END)
    preparing = scalar(conn, "select count(*) from raw.orders where status = 'preparing'")
    assert preparing > 3
    result = run_cli("deliver", "-n", "3", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("preparing -> shipped") == 3
    assert scalar(conn, "select count(*) from raw.orders where status = 'preparing'") == preparing - 3

    result = run_cli("deliver", "-n", str(preparing), env=env)
    assert result.returncode == 0, result.stderr
    assert scalar(conn, "select count(*) from raw.orders where status = 'preparing'") == 0
    assert deliver(conn) == []
    result = run_cli("deliver", env=env)
    assert result.returncode == 0
    assert result.stdout.strip() == "No order is preparing: nothing to ship."


def test_deliver_before_any_load_says_to_load_first(database):
    _, env = database
    result = run_cli("deliver", env=env)
    assert result.returncode == 1
    assert "load data first" in result.stderr and "Traceback" not in result.stderr
