"""Fixtures of the alert and run-history tests: a local Slack webhook, raw tables with bad rows, and the real
artifacts of a dbt project whose runs fail a test, warn, break a model and find stale sources."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from slack_stub import SlackWebhookStub

FIXTURE_PROJECT = Path(__file__).resolve().parent / "dbt_fixture"
DBT = str(Path(sys.executable).parent / "dbt")


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackWebhookStub]:
    """A local Slack webhook, configured as the ``slack_alerts`` connection, with short retry pauses."""
    stub = SlackWebhookStub()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", stub.connection_json())
    monkeypatch.setenv("GREENERY_SLACK_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("GREENERY_AIRFLOW_BASE_URL", "http://airflow.test:8080")
    yield stub
    stub.close()


def load_shop_raw(env: dict[str, str], users_age: dt.timedelta) -> None:
    """The fixture project's raw tables: orders 3 to 6 hours old with three null totals and two unknown statuses
    (a failing and a warning test); users ``users_age`` old (freshness warns after 1 hour, errors after 1 day)."""
    connection = psycopg2.connect(
        host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"], dbname=env["PGDATABASE"]
    )
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
