"""`make warehouse` / `make down` behaviour: idempotent, never attaches to a server that is not ours, and a clear
message when the PostgreSQL server package is missing."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from include.local_platform import pgcluster
from include.local_platform.warehouse import read_env_file
from tests.conftest import run_module


@pytest.fixture
def server_tmp(session_dir: Path) -> Path:
    """A temporary directory the unprivileged PostgreSQL user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(dir=session_dir))
    path.chmod(0o755)
    return path


@pytest.fixture
def private_env(server_tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["GREENERY_LOCAL_DIR"] = str(server_tmp / "local")
    return env


def test_start_twice_reuses_the_cluster_and_stop_twice_is_fine(private_env: dict[str, str]) -> None:
    env = {**private_env, "GREENERY_WAREHOUSE_PORT": str(pgcluster.free_port())}
    first = run_module("include.local_platform.warehouse", "start", env=env)
    try:
        assert first.returncode == 0, first.stderr
        assert "Warehouse started" in first.stdout
        second = run_module("include.local_platform.warehouse", "start", env=env)
        assert second.returncode == 0 and "already running" in second.stdout
        values = read_env_file(Path(env["GREENERY_LOCAL_DIR"]) / "warehouse.env")
        assert values["PGPORT"] == env["GREENERY_WAREHOUSE_PORT"]
        assert values["PGDATABASE"] == "greenery"
        assert '"conn_type": "postgres"' in values["AIRFLOW_CONN_GREENERY_WAREHOUSE"]
        # The password is in the env file for `source` and psql, but never printed.
        assert values["PGPASSWORD"] not in first.stdout + second.stdout
        import psycopg2

        conn = psycopg2.connect(
            **{
                "host": values["PGHOST"],
                "port": values["PGPORT"],
                "user": values["PGUSER"],
                "password": values["PGPASSWORD"],
                "dbname": "airflow",
            }
        )
        conn.close()
    finally:
        stop = run_module("include.local_platform.warehouse", "stop", env=env)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    again = run_module("include.local_platform.warehouse", "stop", env=env)
    assert again.returncode == 0 and "not running" in again.stdout
    status = run_module("include.local_platform.warehouse", "status", env=env)
    assert status.returncode == 1 and "make warehouse" in status.stdout


def test_down_with_nothing_ever_started(private_env: dict[str, str]) -> None:
    for module in ("include.local_platform.local_airflow", "include.local_platform.warehouse"):
        result = run_module(module, "down" if module.endswith("airflow") else "stop", env=private_env)
        assert result.returncode == 0, result.stderr
        assert "nothing to stop" in result.stdout.lower()


def test_a_port_in_use_by_another_program_is_never_attached_to(private_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        env = {**private_env, "GREENERY_WAREHOUSE_PORT": str(taken)}
        result = run_module("include.local_platform.warehouse", "start", env=env)
        try:
            assert result.returncode == 0, result.stderr
            assert f"Port {taken} is in use by another program" in result.stdout
            values = read_env_file(Path(env["GREENERY_LOCAL_DIR"]) / "warehouse.env")
            assert values["PGPORT"] != str(taken)
        finally:
            run_module("include.local_platform.warehouse", "stop", env=env)


def test_missing_server_binaries_give_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from include import settings
    from include.local_platform import warehouse

    monkeypatch.setattr(pgcluster.shutil, "which", lambda name: None)
    monkeypatch.setattr(pgcluster.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(settings, "LOCAL_DIR", tmp_path / "local")
    assert warehouse.main(["start"]) == 1
    err = capsys.readouterr().err
    assert "apt-get install postgresql" in err
    assert err.count("\n") == 1, "one message, no traceback"
    assert not (tmp_path / "local").exists(), "nothing half-created"


def test_stale_pid_file_after_a_crash_is_recovered(server_tmp: Path) -> None:
    import signal
    import time

    cluster = pgcluster.PgCluster(server_tmp / "pg", durable=False)
    cluster.start()
    try:
        os.kill(cluster.server_pid(), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while cluster.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (cluster.data_dir / "postmaster.pid").exists(), "the crash should leave its pid file behind"
        cluster.start()
        assert cluster.is_running()
        cluster.create_database("after_crash")
    finally:
        cluster.destroy()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_a_clone_in_a_private_folder_works_as_root_and_clean_removes_everything(tmp_path: Path) -> None:
    """A 0700 folder (pytest's tmp_path, like a clone under /root) that the server's user cannot enter."""
    private = tmp_path / "clone"
    private.mkdir(mode=0o700)
    tmp_path.chmod(0o700)
    local_dir = private / ".local"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(GREENERY_LOCAL_DIR=str(local_dir), GREENERY_WAREHOUSE_PORT=str(pgcluster.free_port()))
    started = run_module("include.local_platform.warehouse", "start", env=env)
    storage = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        location = local_dir / "postgres" / pgcluster.LOCATION_FILE
        storage = Path(location.read_text().strip())
        assert storage.parent == pgcluster.RELOCATED_ROOT and (storage / "data" / "PG_VERSION").is_file()
        assert f"so the server's files are in {storage}" in started.stdout
        assert "make clean" in started.stdout
        again = run_module("include.local_platform.warehouse", "start", env=env)  # a restart finds its files
        assert again.returncode == 0 and "already running" in again.stdout, again.stdout + again.stderr
        values = read_env_file(local_dir / "warehouse.env")
        import psycopg2

        with (
            psycopg2.connect(
                host="127.0.0.1",
                port=values["PGPORT"],
                user=values["PGUSER"],
                password=values["PGPASSWORD"],
                dbname="greenery",
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute("select 1")
            assert cursor.fetchone() == (1,)
    finally:
        destroyed = run_module("include.local_platform.warehouse", "destroy", env=env)
    assert destroyed.returncode == 0, destroyed.stderr
    assert storage is not None and not storage.exists(), "make clean leaves the relocated files behind"
    assert not (local_dir / "postgres").exists()
