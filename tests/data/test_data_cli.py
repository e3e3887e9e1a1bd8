"""`python -m include.greenery_data`, as the Makefile calls it: exit codes and messages."""

from __future__ import annotations

import pytest
from data_helpers import END, row_counts, run_cli, scalar

from include.local_platform.pgcluster import free_port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scale", "0"], "argument --scale: must be a positive number, not '0'"),
        (["--scale", "-3"], "argument --scale: must be a positive number"),
        (["--scale", "lots"], "argument --scale: must be a positive number, not 'lots'"),
        (["--scale", "1", "--days", "0"], "argument --days: must be 1 or more, not '0'"),
        (["--scale", "1", "--days", "1.5"], "argument --days: must be a whole number of days"),
        (["--scale", "1", "--end", "next tuesday"], "argument --end: must be an ISO 8601 timestamp"),
    ],
)
def test_bad_arguments_are_usage_errors_before_anything_is_written(database, args, message):
    conn, env = database
    result = run_cli("load", *args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert scalar(conn, "select count(*) from information_schema.schemata where schema_name = 'raw'") == 0


@pytest.mark.parametrize("command", [["load", "--scale", "1"], ["deliver"], ["schema"], ["simulate", "--once"]])
def test_warehouse_not_running_says_to_start_it(command):
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(free_port()), "PGUSER": "greenery", "PGDATABASE": "greenery"}
    result = run_cli(*command, env=env, timeout=60)
    assert result.returncode == 1
    assert "The warehouse is not reachable" in result.stderr
    assert "make warehouse" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_load_prints_counts_and_if_empty_keeps_data(database):
    conn, env = database
    result = run_cli("load", "--scale", "1", "--days", "7", "--seed", "3", "--end", END, env=env)
    assert result.returncode == 0, result.stderr
    assert "scale 1, 7 days to 2024-06-04T15:00:00Z, seed 3" in result.stdout
    counts = row_counts(conn)
    for table, rows in counts.items():
        assert f"{table}" in result.stdout and f"{rows:,}" in result.stdout
    span = scalar(conn, "select extract(epoch from max(created_at) - min(created_at)) / 86400 from raw.events")
    assert 6.5 < span <= 7

    again = run_cli("load", "--scale", "2", "--if-empty", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"raw data present ({counts['orders']:,} orders): not reloading"
    assert row_counts(conn) == counts


def test_if_empty_loads_an_empty_warehouse(database):
    conn, env = database
    result = run_cli("load", "--scale", "1", "--if-empty", env=env)
    assert result.returncode == 0, result.stderr
    assert row_counts(conn)["users"] == 130


def test_schema_is_idempotent_and_keeps_data(database):
    conn, env = database
    assert run_cli("schema", env=env).returncode == 0
    run_cli("load", "--scale", "1", "--end", END, env=env)
    counts = row_counts(conn)
    result = run_cli("schema", env=env)
    assert result.returncode == 0, result.stderr
    assert "Schema raw is ready" in result.stdout
    assert row_counts(conn) == counts


def test_export_writes_course_format_files(tmp_path):
    result = run_cli("export", "--scale", "1", "--out", str(tmp_path), "--end", END, env={})
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "orders.csv").read_text().splitlines()[0]
    assert header == (
        "order_id,user_id,promo_id,address_id,created_at,order_cost,shipping_cost,order_total,tracking_id,"
        "shipping_service,estimated_delivery_at,delivered_at,status"
    )
    assert len((tmp_path / "users.csv").read_text().splitlines()) == 131


def test_help_lists_the_commands():
    result = run_cli("--help", env={})
    assert result.returncode == 0
    for command in ("schema", "load", "deliver", "simulate", "append", "export"):
        assert command in result.stdout
