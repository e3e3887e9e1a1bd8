"""Test session harness: a throwaway PostgreSQL cluster and an isolated AIRFLOW_HOME.

The cluster is started before any test module is imported (``pytest_configure``) because Airflow reads its
metadata-database URL when it is first imported. Tests never touch the developer's warehouse in ``.local/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from include.local_platform.pgcluster import PgCluster  # noqa: E402

_session: dict = {}


# The modules that start an Airflow platform of their own (scheduler, triggerer, workers): on two cores they run one
# after the other in one lane of pytest-xdist, first, while the other lane takes everything else.
PLATFORM_MODULES = (
    "tests/e2e/test_platform.py",
    "tests/e2e/test_celery_platform.py",
    "tests/bench/test_bench_smoke.py",
)
PLATFORM_LANE = "airflow-platforms"
# Set by the controlling process for its xdist workers: the session's folder, whose cluster they share.
SESSION_DIR_VARIABLE = "GREENERY_TEST_SESSION_DIR"


def pytest_configure(config: pytest.Config) -> None:
    if "cluster" in _session:
        return
    if hasattr(config, "workerinput"):
        # An xdist worker: the controlling process started the cluster and set the environment it inherited. Each
        # worker has an Airflow of its own (metadata database, AIRFLOW_HOME, caches), as two machines would.
        base = Path(os.environ[SESSION_DIR_VARIABLE])
        cluster = PgCluster(base / "postgres", durable=False)
        _session.update(cluster=cluster, base=base, owner=False)
        _isolated_airflow(cluster, base / config.workerinput["workerid"])
        return
    base = Path(tempfile.mkdtemp(prefix="greenery-test-"))
    base.chmod(0o755)  # the server runs as an unprivileged user when we are root and must reach its data dir
    cluster = PgCluster(base / "postgres", durable=False)
    cluster.start()
    _session.update(cluster=cluster, base=base, owner=True)
    os.environ.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__ENABLE_DATASET_AIRFLOW3_URI": "True",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            SESSION_DIR_VARIABLE: str(base),
        }
    )
    _isolated_airflow(cluster, base)
    # Connections and variables of the developer's shell must not leak into tests.
    for key in list(os.environ):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")) or key in ("SLACK_WEBHOOK_URL", "PGPASSWORD"):
            del os.environ[key]


def _isolated_airflow(cluster: PgCluster, home: Path) -> None:
    """Airflow's metadata database (empty until ``airflow_db`` migrates it), AIRFLOW_HOME, Cosmos' cache and the
    package's local folders under ``home``, for this process and what it starts."""
    database = "airflow" if home == _session["base"] else f"airflow_{home.name}"
    cluster.create_database(database)
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cluster.sqlalchemy_url(database),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "airflow" / "logs"),
            # Cosmos writes its dbt-ls cache and temporary projects here, not into the repository.
            "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos-cache"),
            "GREENERY_LOCAL_DIR": str(home / "local"),
            "GREENERY_DBT_DOCS_DIR": str(home / "dbt-docs"),
        }
    )


def _lane(nodeid: str) -> str:
    """The unit of work one xdist worker takes whole: the platform modules together, else a test folder (so the
    fixtures a folder's modules share are set up once)."""
    path = nodeid.split("::", 1)[0]
    return PLATFORM_LANE if path in PLATFORM_MODULES else path.rsplit("/", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The platform modules first, so that under xdist their lane starts with them while the other lane takes the
    rest (pytest.ini turns off xdist's reordering by size)."""
    items.sort(key=lambda item: _lane(item.nodeid) != PLATFORM_LANE)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scheduling by scope, with ``_lane`` as the scope. (Its ``loadgroup`` mode would do this through
    marks, but pytest-xdist 3.8 renames the items in a way pytest 9.2 no longer sees, so its groups are lost.)"""
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _lane(nodeid)

    return LaneScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _session.get("owner", False):
        return
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
    """Airflow's metadata database on the test cluster, migrated once per session (per xdist worker). Returns its
    SQLAlchemy URL."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def loaded_plugin(name: str) -> Any:
    """The plugin ``name`` of plugins/, loaded by Airflow's own loader of the plugins folder (what
    AIRFLOW__CORE__PLUGINS_FOLDER points at)."""
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory

    plugins, import_errors = _load_plugins_from_plugin_directory(str(REPO_ROOT / "plugins"))
    assert import_errors == {}
    (plugin,) = (p for p in plugins if p.name == name)
    return plugin


def plugin_test_client(plugin: Any) -> Any:
    """A FastAPI test client of the api-server's apps as the api-server mounts ``plugin``'s, with the auth manager
    the api-server creates (Airflow's auth dependency asks it)."""
    from airflow.api_fastapi.app import create_auth_manager
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    create_auth_manager()
    api_server = FastAPI()
    for app in plugin.fastapi_apps:
        api_server.mount(app["url_prefix"], app["app"])
    return TestClient(api_server, base_url="http://127.0.0.1:8080", follow_redirects=False)


def user_token(role: str | None) -> str:
    """A JWT of the simple auth manager (the one `make up` runs) for a user with ``role`` (None: no role)."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="someone", role=role))


def warehouse_connection_json(env: dict[str, str]) -> str:
    """A test database's libpq variables as the Airflow connection ``greenery_warehouse`` (AIRFLOW_CONN_...)."""
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": env["PGHOST"],
            "port": int(env["PGPORT"]),
            "login": env["PGUSER"],
            "password": env["PGPASSWORD"],
            "schema": env["PGDATABASE"],
        }
    )


def connect(env: dict[str, str]) -> Any:
    """A psycopg2 connection to the test database that the libpq variables ``env`` name."""
    return psycopg2.connect(
        host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"], dbname=env["PGDATABASE"]
    )


def query_rows(env: dict[str, str], query: str) -> list[tuple]:
    """The rows ``query`` returns from the test database that the libpq variables ``env`` name (none for a
    statement), committed."""
    connection = connect(env)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


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


def quick_platform_settings() -> dict[str, str]:
    """What a test platform changes from `make up`'s defaults, so that the tests wait less and see only their own
    runs: a retry 15 s after a dropped connection instead of 60 s (longer than the restart test's 10-second outage);
    a lost Celery worker's task failed after 30 s without a heartbeat instead of 60 s (tasks heartbeat every 5 s);
    the daily run scheduled 12 hours away from now, so no second scheduled run starts while the tests run; the
    DAG files parsed once, not every 30 s (nothing changes them during a test)."""
    return {
        "GREENERY_RETRY_DELAY_SECONDS": "15",
        "GREENERY_TASK_HEARTBEAT_TIMEOUT_SECONDS": "30",
        "GREENERY_DAILY_HOUR": str((dt.datetime.now(dt.UTC).hour + 12) % 24),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
    }


@contextmanager
def started_platform(root: Path, **settings_env: str) -> Iterator[dict[str, Any]]:
    """What ``make up`` runs — warehouse, demo data, Airflow with the DAGs — in a private ``.local`` on free ports,
    with ``settings_env`` added to the environment (``GREENERY_*`` settings, ``AIRFLOW_CONN_*`` connections).

    Yields ``{"url": ..., "local_dir": ..., "up_output": ..., "env": ...}`` (``env``: the settings that point the
    platform's modules at it). Stopped with ``make down``'s code when the block ends.
    """
    from include.local_platform.pgcluster import free_port
    from include.local_platform.warehouse import read_env_file

    # In a folder only root may enter, like a clone under /root: the warehouse's server files then live where its
    # unprivileged user can reach them, and everything else stays here.
    private = root / "private-clone"
    private.mkdir(mode=0o700)
    local_dir = private / "platform"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW") and key not in ("GREENERY_LOCAL_DIR", "GREENERY_DBT_DOCS_DIR")
    }
    env.update(
        GREENERY_LOCAL_DIR=str(local_dir),
        GREENERY_WAREHOUSE_PORT=str(free_port()),
        GREENERY_AIRFLOW_PORT=str(free_port()),
        **quick_platform_settings(),
    )
    env.update(settings_env)
    started = run_module("include.local_platform.warehouse", "start", env=env)
    assert started.returncode == 0, started.stderr
    try:
        data_env = {**env, **read_env_file(local_dir / "warehouse.env")}
        loaded = run_module("include.greenery_data", "load", "--scale", "1", "--if-empty", env=data_env)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        up = run_module("include.local_platform.local_airflow", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        url = re.search(r"http://127\.0\.0\.1:\d+", up.stdout).group(0)
        yield {"url": url, "local_dir": str(local_dir), "up_output": up.stdout, "env": env}
    finally:
        run_module("include.local_platform.local_airflow", "down", env=env)
        run_module("include.local_platform.warehouse", "destroy", env=env)


def processes_of_the_platform(local_dir: Path) -> list[str]:
    """The command lines of the live processes that a platform in ``local_dir`` started (they carry its marker)."""
    marker = f"GREENERY_LOCAL_AIRFLOW={local_dir / 'airflow'}".encode()
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    left.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return left


@dataclass(frozen=True)
class HistoryDatabase:
    """A database whose ``dbt_meta`` holds generated run history (tests/history/generated_history.py)."""

    env: dict[str, str]
    history: Any

    def connect(self) -> Any:
        return connect(self.env)


@pytest.fixture(scope="session")
def generated_history(module_database_factory) -> HistoryDatabase:
    """90 days of hourly and daily run history of the real project, generated once per session (read it only)."""
    from tests.dags.conftest import parsed_manifest
    from tests.history.generated_history import generate

    _, env = module_database_factory("health")
    database = HistoryDatabase(env, None)
    connection = database.connect()
    try:
        history = generate(connection, json.loads(parsed_manifest().read_text()), days=90)
    finally:
        connection.close()
    return HistoryDatabase(env, history)


@dataclass(frozen=True)
class ObjectStore:
    """A real S3-compatible server on 127.0.0.1 (moto's, as `make up EXECUTOR=celery` runs it) with one bucket."""

    endpoint: str
    bucket: str
    connection_json: str
    key: str
    secret: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix``, by its name below it."""
        client = self.client()
        listed = client.list_objects_v2(Bucket=self.bucket, Prefix=prefix + "/").get("Contents", [])
        return {
            item["Key"].removeprefix(prefix + "/"): client.get_object(Bucket=self.bucket, Key=item["Key"])[
                "Body"
            ].read()
            for item in listed
        }


@pytest.fixture(scope="session")
def object_store(session_dir: Path) -> Iterator[ObjectStore]:
    """The session's object store: started once, stopped when the session ends."""
    from include.local_platform import celery_platform
    from include.local_platform.pgcluster import free_port

    state = {"store_port": free_port(), "store_key": "greenery-tests", "store_secret": secrets.token_urlsafe(16)}
    log = session_dir / "object-store.log"
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(state["store_port"])],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        celery_platform.wait_for_port(state["store_port"], "object store", log)
        celery_platform.ensure_docs_bucket(state)
        yield ObjectStore(
            celery_platform.store_endpoint(state),
            celery_platform.DOCS_BUCKET,
            celery_platform.store_connection_json(state),
            state["store_key"],
            state["store_secret"],
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def docs_in_the_store(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> str:
    """The dbt docs settings pointed at a folder of its own in the session's object store; returns the folder's
    key prefix."""
    prefix = f"docs-{secrets.token_hex(4)}"
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_TEST_STORE", object_store.connection_json)
    monkeypatch.setenv("GREENERY_DBT_DOCS_URL", f"s3://{object_store.bucket}/{prefix}")
    monkeypatch.setenv("GREENERY_DBT_DOCS_CONN_ID", "greenery_test_store")
    return prefix


# -- the fixture shop: a small dbt project (tests/alerts/dbt_fixture) whose runs fail a test, warn, break a model
# and find stale sources; its raw tables and real artifacts serve the alert and the run-history tests.
FIXTURE_PROJECT = REPO_ROOT / "tests" / "alerts" / "dbt_fixture"
DBT = str(Path(sys.executable).parent / "dbt")


def load_shop_raw(env: dict[str, str], users_age: dt.timedelta) -> None:
    """The fixture project's raw tables: orders 3 to 6 hours old with three null totals and two unknown statuses
    (a failing and a warning test); users ``users_age`` old (freshness warns after 1 hour, errors after 1 day)."""
    connection = connect(env)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            """
            create schema shop_raw;
            create table shop_raw.orders (order_id text, order_total numeric, status text, created_at timestamptz);
            insert into shop_raw.orders values
                ('o1', 10, 'placed', now() - interval '3 hours'),
                ('o2', null, 'shipped', now() - interval '4 hours'),
                ('o3', null, 'returned', now() - interval '5 hours'),
                ('o4', null, 'lost', now() - interval '6 hours');
            create table shop_raw.users (user_id text, updated_at timestamptz);
            insert into shop_raw.users values ('u1', now() - %s);
            """,
            (users_age,),
        )
    connection.close()


@pytest.fixture(scope="session")
def shop_database(module_database_factory) -> Callable[..., tuple[str, dict[str, str]]]:
    """``shop_database("prefix", users_age=...)`` -> (dbname, libpq env) of a new database with the raw tables."""

    def make(prefix: str, users_age: dt.timedelta = dt.timedelta(days=2)) -> tuple[str, dict[str, str]]:
        dbname, env = module_database_factory(prefix)
        load_shop_raw(env, users_age)
        return dbname, env

    return make


def run_dbt(args: list[str], env: dict[str, str], work_dir: Path) -> subprocess.CompletedProcess:
    """Plain dbt on the fixture project; artifacts and logs go to ``work_dir``, never into the repository."""
    paths = ["--project-dir", str(FIXTURE_PROJECT), "--profiles-dir", str(FIXTURE_PROJECT)]
    outputs = ["--target-path", str(work_dir / "target"), "--log-path", str(work_dir / "logs")]
    return subprocess.run(
        [DBT, *args, *paths, *outputs],
        env={**os.environ, **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=600,
    )


@dataclass(frozen=True)
class FixtureArtifacts:
    build_target: Path
    freshness_target: Path
    env: dict[str, str]


@pytest.fixture(scope="session")
def fixture_artifacts(shop_database, tmp_path_factory) -> FixtureArtifacts:
    """Real ``dbt build`` and ``dbt source freshness`` artifacts: a test failing on 3 rows, a test warning on
    2, a model failing with markup and non-ASCII in its error, one stale source warning and one in error."""
    _, env = shop_database("alerts_artifacts", users_age=dt.timedelta(days=2))
    build_dir = tmp_path_factory.mktemp("dbt_build")
    build = run_dbt(["build"], env, build_dir)
    assert build.returncode == 1, build.stdout[-3000:]  # it fails, on purpose
    assert "not_null_orders_clean_order_total" in build.stdout
    freshness_dir = tmp_path_factory.mktemp("dbt_freshness")
    freshness = run_dbt(["source", "freshness"], env, freshness_dir)
    assert freshness.returncode == 1, freshness.stdout[-3000:]
    return FixtureArtifacts(build_dir / "target", freshness_dir / "target", env)
