"""The pinned stack installs as one consistent environment, and the test harness gives tests a real server."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from include.local_platform.pgcluster import PgCluster


def test_pip_check_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pinned_versions() -> None:
    assert version("apache-airflow") == "3.3.2"
    assert version("astronomer-cosmos") == "1.15.1"
    assert version("dbt-core").startswith("1.11.")
    assert version("dbt-postgres").startswith("1.11.")


def test_dbt_runs_in_the_airflow_environment() -> None:
    """Cosmos runs dbt in-process, so dbt must import next to Airflow."""
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(["--version"])
    assert result.success


def test_session_cluster_is_a_real_server(pg_cluster: PgCluster, fresh_database) -> None:
    name, env = fresh_database("smoke")
    conn = pg_cluster.connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute("select current_database(), host(inet_server_addr())")
            database, address = cur.fetchone()
    finally:
        conn.close()
    assert database == name
    assert address == "127.0.0.1"
    assert env["PGDATABASE"] == name
