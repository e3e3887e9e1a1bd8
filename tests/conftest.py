"""Test session harness: a throwaway PostgreSQL cluster and an isolated AIRFLOW_HOME.

The cluster is started before any test module is imported (``pytest_configure``) because Airflow reads its
metadata-database URL when it is first imported. Tests never touch the developer's warehouse in ``.local/``.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from include.pgcluster import PgCluster  # noqa: E402

_session: dict = {}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or "cluster" in _session:
        return
    base = Path(tempfile.mkdtemp(prefix="greenery-test-"))
    base.chmod(0o755)  # the server runs as an unprivileged user when we are root and must reach its data dir
    cluster = PgCluster(base / "postgres", durable=False)
    cluster.start()
    cluster.create_database("airflow")
    _session.update(cluster=cluster, base=base)

    airflow_home = base / "airflow"
    airflow_home.mkdir()
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cluster.sqlalchemy_url("airflow"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
            # Cosmos writes its dbt-ls cache and temporary projects here, not into the repository.
            "AIRFLOW__COSMOS__CACHE_DIR": str(base / "cosmos-cache"),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__ENABLE_DATASET_AIRFLOW3_URI": "True",
            "DO_NOT_TRACK": "1",
            "GREENERY_LOCAL_DIR": str(base / "local"),
            "GREENERY_DBT_DOCS_DIR": str(base / "dbt-docs"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    from include.cosmos_config import dbt_docs_projects_setting  # reads the paths set just above

    os.environ["AIRFLOW__COSMOS__DBT_DOCS_PROJECTS"] = dbt_docs_projects_setting()
    # Connections and variables of the developer's shell must not leak into tests.
    for key in list(os.environ):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")) or key in ("SLACK_WEBHOOK_URL", "PGPASSWORD"):
            del os.environ[key]


def pytest_unconfigure(config: pytest.Config) -> None:
    cluster: PgCluster | None = _session.pop("cluster", None)
    if cluster is not None:
        cluster.destroy()
        import shutil

        shutil.rmtree(_session.pop("base"), ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> PgCluster:
    """The session's throwaway PostgreSQL cluster."""
    return _session["cluster"]


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """A temporary directory that lives as long as the test session."""
    return _session["base"]


class DatabaseFactory:
    """Makes brand-new empty databases on the test cluster and drops them on ``close()``."""

    def __init__(self, cluster: PgCluster):
        self.cluster = cluster
        self.created: list[str] = []

    def __call__(self, prefix: str = "test") -> tuple[str, dict[str, str]]:
        """A new database ``<prefix>_<random>``: returns (dbname, libpq environment variables for it)."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        self.cluster.create_database(name)
        self.created.append(name)
        return name, self.cluster.libpq_env(name)

    def close(self) -> None:
        for name in self.created:
            self.cluster.drop_database(name)


@pytest.fixture
def fresh_database(pg_cluster: PgCluster) -> Iterator[DatabaseFactory]:
    """``fresh_database("dbt")`` -> (dbname, libpq env); the databases are dropped when the test ends."""
    factory = DatabaseFactory(pg_cluster)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def module_database_factory(pg_cluster: PgCluster) -> Iterator[DatabaseFactory]:
    """Like ``fresh_database`` for module- or session-scoped fixtures; dropped at the end of the session."""
    factory = DatabaseFactory(pg_cluster)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def airflow_db(pg_cluster: PgCluster) -> str:
    """Airflow's metadata database on the test cluster, migrated once per session. Returns its SQLAlchemy URL."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def run_module(module: str, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` the way the Makefile does; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def local_platform(session_dir: Path) -> Iterator[dict[str, str]]:
    """What ``make up`` runs — warehouse, demo data, Airflow with the DAGs — in a private ``.local`` on free ports.

    Yields ``{"url": ..., "local_dir": ...}``. Stopped with ``make down``'s code at the end of the session.
    """
    from include.pgcluster import free_port
    from include.warehouse import read_env_file

    local_dir = session_dir / "platform"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW") and key not in ("GREENERY_LOCAL_DIR", "GREENERY_DBT_DOCS_DIR")
    }
    env.update(
        GREENERY_LOCAL_DIR=str(local_dir),
        GREENERY_WAREHOUSE_PORT=str(free_port()),
        GREENERY_AIRFLOW_PORT=str(free_port()),
    )
    started = run_module("include.warehouse", "start", env=env)
    assert started.returncode == 0, started.stderr
    try:
        data_env = {**env, **read_env_file(local_dir / "warehouse.env")}
        loaded = run_module("include.greenery_data", "load", "--scale", "1", "--if-empty", env=data_env)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        up = run_module("include.local_airflow", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        url = re.search(r"http://127\.0\.0\.1:\d+", up.stdout).group(0)
        yield {"url": url, "local_dir": str(local_dir), "up_output": up.stdout}
    finally:
        run_module("include.local_airflow", "down", env=env)
        run_module("include.warehouse", "stop", env=env)
