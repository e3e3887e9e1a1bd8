"""What the platform tests use to watch a running ``make up`` platform: Airflow's REST API logged in like the UI,
plain GETs without a login, the platform's warehouse, and the waits for runs and for dbt queries."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

from include.local_platform.warehouse import read_env_file

DAILY, HOURLY = "greenery_daily", "greenery_hourly_snapshot"
FINISHED = {"success", "failed", "upstream_failed", "skipped", "removed"}
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
# How often a test asks the platform how far it is: a run's steps take seconds.
POLL_SECONDS = 2


class AirflowApi:
    """A small client of Airflow 3's REST API, logged in like the UI (simple auth manager, admin/admin)."""

    def __init__(self, base_url: str, username: str = "admin", password: str = "admin"):
        self.base_url = base_url
        token = self._call("POST", "/auth/token", {"username": username, "password": password}, auth=False)
        self.token = token["access_token"]

    def _call(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {self.token}"} if auth else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path} -> {error.code}: {error.read()[:2000]!r}") from None

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._call("PATCH", path, body)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=500")["task_instances"]

    def tasks(self, run_id: str, dag_id: str = DAILY) -> dict[str, dict]:
        """Every task instance of a run, by task id."""
        return {ti["task_id"]: ti for ti in self.task_instances(dag_id, urllib.parse.quote(run_id))}

    def finished_run(self, run_id: str, timeout: float = 15 * 60, dag_id: str = DAILY) -> dict:
        """The run once it has ended (success or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")
            if run["state"] in ("success", "failed"):
                return run
            assert time.monotonic() < deadline, f"{run_id} still {run['state']} after {timeout:.0f} s"
            time.sleep(POLL_SECONDS)

    def scheduled_run(self, dag_id: str = DAILY, timeout: float = 5 * 60) -> dict:
        """The run the scheduler creates on its own when the platform starts: with catchup off, the latest one."""
        deadline = time.monotonic() + timeout
        while not (runs := self.get(f"/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled&limit=5")["dag_runs"]):
            assert time.monotonic() < deadline, f"the scheduler started no {dag_id} run within {timeout:.0f} s"
            time.sleep(POLL_SECONDS)
        return runs[0]

    def log(self, run_id: str, task_id: str, try_number: int, dag_id: str = DAILY) -> str:
        """A try's whole task log, as the UI fetches it."""
        request = urllib.request.Request(
            f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/"
            f"{urllib.parse.quote(task_id)}/logs/{try_number}?full_content=true",
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.dumps(json.loads(response.read()))


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the redirect itself is the answer under test


def plain_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """A plain GET, with no cookie and no token unless ``headers`` has one: (status, headers, body)."""
    opener = urllib.request.build_opener(_KeepRedirects)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def warehouse(platform: dict[str, Any]) -> Any:
    """A connection to the platform's warehouse database, as `make warehouse` writes it to warehouse.env."""
    libpq = read_env_file(Path(platform["local_dir"]) / "warehouse.env")
    return psycopg2.connect(
        host=libpq["PGHOST"],
        port=libpq["PGPORT"],
        user=libpq["PGUSER"],
        password=libpq["PGPASSWORD"],
        dbname=libpq["PGDATABASE"],
    )


def dbt_nodes_waiting_on_a_lock(platform: dict[str, Any], timeout: float = 15 * 60) -> set[str]:
    """The dbt nodes whose queries wait on a lock, once there is one (dbt's query comment carries the node id)."""
    conn = warehouse(platform)
    conn.autocommit = True  # each poll sees pg_stat_activity afresh
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                cur.execute(
                    "select query from pg_stat_activity where wait_event_type = 'Lock' and query like %s",
                    ('%"app": "dbt"%',),
                )
                nodes = set()
                for (query,) in cur.fetchall():
                    comment = json.loads(query[query.index("/*") + 2 : query.index("*/")])
                    nodes.add(comment.get("node_id", "?"))
                if nodes:
                    return nodes
                time.sleep(0.5)
    finally:
        conn.close()
    raise AssertionError(f"no dbt query waited on a lock within {timeout:.0f} s")


def summary(api: AirflowApi, runs: dict[str, dict]) -> dict[str, dict[str, str]]:
    """State of every task that did not succeed, per run: what a failure message should show."""
    return {
        dag_id: {
            ti["task_id"]: ti["state"]
            for ti in api.task_instances(dag_id, urllib.parse.quote(run["dag_run_id"]))
            if ti["state"] != "success"
        }
        for dag_id, run in runs.items()
    }


@contextmanager
def a_daily_run_waiting_on_the_page_views(api: AirflowApi, platform: dict[str, Any]) -> Iterator[dict]:
    """A daily run, triggered while a session holds fct_page_views (built by an earlier run) locked, as far as dbt's
    build gets: waiting on that table with the staging layer done. Yields the run with the dbt nodes seen waiting
    (``waiting``) and its producer task (``producer``), running; the lock is released when the block ends."""
    lock = warehouse(platform)
    with lock.cursor() as cursor:
        cursor.execute("lock table analytics_product.fct_page_views in access exclusive mode")
    try:
        run = api.post(f"/api/v2/dags/{DAILY}/dagRuns", {"logical_date": None})
        waiting: set[str] = set()
        deadline = time.monotonic() + 10 * 60
        while "model.greenery.fct_page_views" not in waiting:
            assert time.monotonic() < deadline, f"dbt never reached fct_page_views; waiting: {waiting}"
            waiting |= dbt_nodes_waiting_on_a_lock(platform)
            time.sleep(0.5)
        producer = api.tasks(run["dag_run_id"])["dbt_build"]
        assert producer["state"] == "running", producer
        yield {**run, "waiting": waiting, "producer": producer}
    finally:
        lock.close()
