"""A broken CSV directory fails the load with one message naming the file, the line and the problem, and the raw
tables keep what they held before."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from data_helpers import END, row_counts, run_cli, scalar

from include.greenery_data import LoadError, load_csv_dir, load_generated


def _edit_line(path: Path, number: int, change: Callable[[list[str]], list[str]]) -> None:
    """Rewrite line ``number`` (1-based, header = 1) of a CSV file by changing its fields; keeps line endings."""
    raw = path.read_bytes().decode()
    newline = "\r\n" if "\r\n" in raw else "\n"
    lines = raw.split(newline)
    lines[number - 1] = ",".join(change(lines[number - 1].split(",")))
    path.write_bytes(newline.join(lines).encode())


def _append_line(path: Path, line: str) -> None:
    raw = path.read_bytes().decode()
    newline = "\r\n" if "\r\n" in raw else "\n"
    if not raw.endswith(newline):
        raw += newline
    path.write_bytes((raw + line + newline).encode())


def _line(path: Path, number: int) -> str:
    raw = path.read_bytes().decode()
    return raw.split("\r\n" if "\r\n" in raw else "\n")[number - 1]


def _set(column: int, value: str) -> Callable[[list[str]], list[str]]:
    def change(fields: list[str]) -> list[str]:
        fields[column] = value
        return fields

    return change


def missing_file(directory: Path) -> None:
    (directory / "order_items.csv").unlink()


def missing_column(directory: Path) -> None:
    _edit_line(directory / "promos.csv", 1, lambda fields: fields[:2])
    # The rows still have three fields, but the header check comes first.


def extra_column(directory: Path) -> None:
    _edit_line(directory / "products.csv", 1, lambda fields: [*fields, "colour"])


def malformed_timestamp(directory: Path) -> None:
    _edit_line(directory / "orders.csv", 5, _set(4, "2021-02-11 at noon"))  # created_at


def malformed_number(directory: Path) -> None:
    _edit_line(directory / "order_items.csv", 10, _set(2, "two"))  # quantity


def too_many_fields(directory: Path) -> None:
    _edit_line(directory / "products.csv", 3, _set(2, "15,25"))  # one field too many: the comma splits it


def duplicate_primary_key(directory: Path) -> None:
    # users.csv has a header and 130 rows: the copy of line 3 becomes line 132.
    _append_line(directory / "users.csv", _line(directory / "users.csv", 3))


def orphan_foreign_key(directory: Path) -> None:
    _edit_line(directory / "events.csv", 8, _set(2, "00000000-0000-4000-8000-000000000000"))  # user_id


BROKEN = {
    "missing file": (missing_file, ["order_items.csv", "file missing"]),
    "missing column": (missing_column, ["promos.csv, line 1", "missing column status"]),
    "extra column": (extra_column, ["products.csv, line 1", "unexpected column colour"]),
    "malformed timestamp": (
        malformed_timestamp,
        ["orders.csv, line 5, column created_at", "malformed timestamp", "2021-02-11 at noon"],
    ),
    "malformed number": (malformed_number, ["order_items.csv, line 10, column quantity", "malformed number", "two"]),
    "too many fields": (too_many_fields, ["products.csv, line 3", "more fields than the 4 columns"]),
    "duplicate primary key": (
        duplicate_primary_key,
        ["users.csv, line 132", "duplicate primary key", "user_id", "already on line 3"],
    ),
    "orphan foreign key": (
        orphan_foreign_key,
        ["events.csv, line 8", "user_id '00000000-0000-4000-8000-000000000000' is not in users.csv"],
    ),
}


@pytest.fixture
def broken_copy(course_dir, tmp_path) -> Callable[[str], Path]:
    def make(kind: str) -> Path:
        directory = tmp_path / kind.replace(" ", "_")
        shutil.copytree(course_dir, directory)
        BROKEN[kind][0](directory)
        return directory

    return make


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_csv_fails_with_one_message_and_keeps_old_data(database, broken_copy, kind):
    conn, _ = database
    before = load_generated(conn, scale=1, end=END)
    orders_before = scalar(conn, "select md5(string_agg(order_id || status, ',' order by order_id)) from raw.orders")
    with pytest.raises(LoadError) as failure:
        load_csv_dir(conn, broken_copy(kind))
    message = str(failure.value)
    assert "\n" not in message
    for part in BROKEN[kind][1]:
        assert part in message, f"{part!r} not in {message!r}"
    assert row_counts(conn) == before
    after = scalar(conn, "select md5(string_agg(order_id || status, ',' order by order_id)) from raw.orders")
    assert after == orders_before
    assert scalar(conn, "select count(*) from pg_constraint where connamespace = 'raw'::regnamespace") == 16


def test_cli_reports_a_broken_csv_without_traceback(database, broken_copy):
    conn, env = database
    load_generated(conn, scale=1, end=END)
    result = run_cli("load", "--csv", str(broken_copy("orphan foreign key")), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: events.csv, line 8: user_id")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_directory_that_does_not_exist(database, tmp_path):
    conn, _ = database
    with pytest.raises(LoadError, match="no such directory"):
        load_csv_dir(conn, tmp_path / "nowhere")
