"""The platform ``make up`` starts, used the way a user does, with the real scheduler (LocalExecutor, tasks in
parallel): the daily run that the scheduler starts on its own, an hourly run triggered by hand through the REST
API while it runs, and a 10-second restart of the PostgreSQL cluster (warehouse and Airflow's metadata
database) in the middle of both, which they ride out; a look at the result in a real browser (Debian's chromium
driven by Playwright; screenshots in tests/e2e/screenshots/), then a two-day backfill made with `make
backfill`'s command, a killed scheduler that comes back, and `make down`. The dbt docs it publishes answer only
with the UI's login.

Both runs' snapshot tasks compete for the one-slot pool ``dbt_snapshots``; inside each run the two snapshots
are independent of each other, so without the pool they would run at the same time.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from include.local_platform.pgcluster import LOCATION_FILE
from include.local_platform.warehouse import read_env_file
from tests.conftest import REPO_ROOT, processes_of_the_platform, run_module

# Starting the platform and one full daily run take several minutes on a small machine.
pytestmark = pytest.mark.timeout(45 * 60)

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
FINISHED = {"success", "failed", "upstream_failed", "skipped", "removed"}
DAILY, HOURLY = "greenery_daily", "greenery_hourly_snapshot"
MARTS = ("analytics_core.fct_orders", "analytics_marketing.user_order_facts", "analytics_product.product_funnel")
# How long the cluster stays down: a laptop waking up, a managed database failing over.
OUTAGE_SECONDS = 10


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

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=500")["task_instances"]


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the redirect itself is the answer under test


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """A plain GET, with no cookie and no token unless ``headers`` has one: (status, headers, body)."""
    opener = urllib.request.build_opener(_KeepRedirects)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _summary(api: AirflowApi, runs: dict[str, dict]) -> dict[str, dict[str, str]]:
    """State of every task that did not succeed, per run: what a failure message should show."""
    return {
        dag_id: {
            ti["task_id"]: ti["state"]
            for ti in api.task_instances(dag_id, run["dag_run_id"])
            if ti["state"] != "success"
        }
        for dag_id, run in runs.items()
    }


def _warehouse(local_platform: dict[str, str]) -> Any:
    """A connection to the platform's warehouse database, as `make warehouse` writes it to warehouse.env."""
    libpq = read_env_file(Path(local_platform["local_dir"]) / "warehouse.env")
    return psycopg2.connect(
        host=libpq["PGHOST"],
        port=libpq["PGPORT"],
        user=libpq["PGUSER"],
        password=libpq["PGPASSWORD"],
        dbname=libpq["PGDATABASE"],
    )


@pytest.fixture(scope="module")
def api(local_platform: dict[str, str]) -> AirflowApi:
    return AirflowApi(local_platform["url"])


def _scheduled_daily_run(api: AirflowApi) -> dict:
    """The run of greenery_daily the scheduler creates on its own when the platform starts: with catchup off it
    runs the latest 06:00 at once."""
    deadline = time.monotonic() + 5 * 60
    while True:
        runs = api.get(f"/api/v2/dags/{DAILY}/dagRuns?run_type=scheduled&limit=10")["dag_runs"]
        if runs:
            return runs[0]
        assert time.monotonic() < deadline, "the scheduler started no greenery_daily run within 5 minutes"
        time.sleep(5)


def _restart_the_warehouse(local_platform: dict[str, Any]) -> None:
    """`make warehouse`'s cluster stopped (fast: open connections are cut), down for OUTAGE_SECONDS, started."""
    stopped = run_module("include.local_platform.warehouse", "stop", env=local_platform["env"], timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    time.sleep(OUTAGE_SECONDS)
    started = run_module("include.local_platform.warehouse", "start", env=local_platform["env"], timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr


def _lock_the_raw_tables(local_platform: dict[str, Any]) -> Any:
    """A session that holds every raw table locked (access exclusive) until the restart cuts it: each dbt query
    that still has to read raw data (freshness, source tests, staging views, snapshots) waits on it, so the
    restart is sure to cut dbt in the middle of a query."""
    conn = _warehouse(local_platform)
    with conn.cursor() as cur:
        cur.execute("select string_agg(format('raw.%I', tablename), ', ') from pg_tables where schemaname = 'raw'")
        cur.execute(f"lock table {cur.fetchone()[0]} in access exclusive mode")
    return conn  # the transaction stays open


def _dbt_nodes_waiting_on_the_lock(local_platform: dict[str, Any], timeout: float = 15 * 60) -> set[str]:
    """The dbt nodes whose queries wait on the raw tables' lock, once there is one (their query comment names
    them: dbt's query comment carries the node id)."""
    conn = _warehouse(local_platform)
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
    raise AssertionError("no dbt query waited on the locked raw tables within 15 minutes")


@pytest.fixture(scope="module")
def restart(api: AirflowApi, local_platform: dict[str, Any]) -> dict[str, Any]:
    """The scheduled daily run and an hourly run triggered by hand next to it. Once at least two dbt tasks of the
    daily run are running, the raw tables are locked and the hourly run starts; once a dbt query waits on the
    lock, the cluster restarts under them. Returns the runs as they were started, the tasks that were running,
    the dbt nodes whose queries the restart cut, and when the cluster came back."""
    runs = {DAILY: _scheduled_daily_run(api)}
    deadline = time.monotonic() + 15 * 60
    while True:
        # The producer mode (the default) runs dbt in dbt_build while the node tasks wait in the triggerer.
        running = [
            ti["task_id"]
            for ti in api.task_instances(DAILY, runs[DAILY]["dag_run_id"])
            if ti["state"] == "running" and (ti["task_id"].startswith("models.") or ti["task_id"] == "dbt_build")
        ]
        if len(running) >= 2 or running == ["dbt_build"]:
            break
        assert time.monotonic() < deadline, "no two dbt tasks of the daily run ran at once within 15 minutes"
        time.sleep(1)
    lock = _lock_the_raw_tables(local_platform)
    try:
        # Started after the lock: its snapshots read raw tables, so at least they wait on it.
        runs[HOURLY] = api.post(f"/api/v2/dags/{HOURLY}/dagRuns", {"logical_date": None})
        waiting = _dbt_nodes_waiting_on_the_lock(local_platform)
        _restart_the_warehouse(local_platform)  # cuts the lock's session too
    finally:
        lock.close()
    return {"runs": runs, "running": running, "waiting": waiting, "back_at": dt.datetime.now(dt.UTC)}


@pytest.fixture(scope="module")
def runs(api: AirflowApi, restart: dict[str, Any]) -> dict[str, dict]:
    """The scheduled daily run and the hourly run, once both have finished (after the restart)."""
    deadline = time.monotonic() + 40 * 60
    while True:
        try:
            states = {
                dag_id: api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}")
                for dag_id, run in restart["runs"].items()
            }
        except (AssertionError, OSError):  # the api-server may still be reconnecting to its database
            states = {}
        if states and all(run["state"] in ("success", "failed") for run in states.values()):
            return states
        assert time.monotonic() < deadline, f"runs still not finished after 40 minutes: {states}"
        time.sleep(10)


def test_snapshot_tasks_of_both_dags_never_run_at_the_same_time(api: AirflowApi, runs: dict) -> None:
    snapshot_tis = [
        ti
        for dag_id, run in runs.items()
        for ti in api.task_instances(dag_id, run["dag_run_id"])
        if ti["pool"] == "dbt_snapshots"
    ]
    by_dag = {dag_id: [ti for ti in snapshot_tis if ti["dag_id"] == dag_id] for dag_id in runs}
    assert all(len(tis) >= 2 for tis in by_dag.values()), by_dag
    not_run = {f"{ti['dag_id']}.{ti['task_id']}": ti["state"] for ti in snapshot_tis if ti["state"] != "success"}
    assert not not_run, f"snapshot tasks that did not succeed: {not_run}; runs: {_summary(api, runs)}"

    # What ran dbt held the slot: every task that took a worker. (In the producer mode the snapshot node tasks
    # wait in the triggerer for dbt_build, which runs the snapshots; they hold no slot and run no dbt there.)
    snapshot_tis = [ti for ti in snapshot_tis if ti["queued_when"]]
    assert {ti["dag_id"] for ti in snapshot_tis} == set(runs), by_dag
    spans = sorted((ti["start_date"], ti["end_date"], f"{ti['dag_id']}.{ti['task_id']}") for ti in snapshot_tis)
    overlapping = [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
    assert overlapping == [], f"snapshot tasks ran at the same time: {overlapping}"


def test_the_scheduled_daily_run_builds_the_marts_and_publishes_docs_and_assets(
    api: AirflowApi, runs: dict, local_platform: dict[str, str]
) -> None:
    daily = runs[DAILY]
    assert {run["state"] for run in runs.values()} == {"success"}, _summary(api, runs)

    local_dir = Path(local_platform["local_dir"])
    conn = _warehouse(local_platform)
    try:
        with conn.cursor() as cur:
            for mart in MARTS:
                cur.execute(f"select count(*) from {mart}")
                assert cur.fetchone()[0] > 0, f"{mart} is empty"
    finally:
        conn.close()

    # The platform lives in a folder only root may enter (tests/conftest.py): as root, the warehouse's server
    # files were kept where its unprivileged user can reach them, and all of the above still worked.
    if os.geteuid() == 0:
        assert (local_dir / "postgres" / LOCATION_FILE).is_file()

    # The executor imported dbt once in the scheduler, so the task processes forked from it did not.
    scheduler_log = (local_dir / "airflow" / "logs" / "scheduler.log").read_text(errors="replace")
    assert "Preloaded 5 modules for the task processes" in scheduler_log

    docs = local_dir / "dbt-docs"
    assert {p.name for p in docs.iterdir()} >= {"index.html", "manifest.json", "catalog.json"}

    events = api.get(f"/api/v2/assets/events?source_dag_id={DAILY}&limit=500")["asset_events"]
    uris = {event["uri"] for event in events if event["source_run_id"] == daily["dag_run_id"]}
    assert any(uri.endswith("/analytics_product/product_funnel") for uri in uris), uris


def test_the_dbt_docs_answer_only_with_the_login_the_rest_of_airflow_needs(
    api: AirflowApi, runs: dict, local_platform: dict[str, str]
) -> None:
    base = local_platform["url"]
    docs = f"{base}/greenery-docs"
    assert _get(f"{base}/api/v2/dags")[0] == 401  # Airflow's own API, for comparison

    for name in ("manifest.json", "catalog.json"):
        status, _, body = _get(f"{docs}/{name}")
        assert (status, json.loads(body)) == (401, {"detail": "Not authenticated"}), (name, status, body[:300])
    # A browser without the login is sent to it, and comes back to the docs afterwards.
    status, headers, body = _get(f"{docs}/index.html")
    assert status == 307, (status, body[:300])
    assert headers["Location"].startswith("/auth/login?next="), headers["Location"]
    assert b"dbt" not in body

    # Cosmos' own docs plugin, which serves them to anyone, is off.
    assert _get(f"{base}/cosmos/greenery/manifest.json")[0] == 404

    # The token of a logged-in user opens them, as it opens the API.
    status, _, body = _get(f"{docs}/manifest.json", {"Authorization": f"Bearer {api.token}"})
    assert status == 200
    assert json.loads(body)["metadata"]["project_name"] == "greenery"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed: `apt-get install chromium`")
def test_the_airflow_ui_shows_the_dags_their_dbt_tasks_the_trigger_form_and_the_dbt_docs(
    runs: dict, local_platform: dict[str, str]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = local_platform["url"]
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(60_000)
        page = context.new_page()
        try:
            page.goto(base + "/")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill("admin")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(base + "/")

            page.goto(base + "/dags")
            # Each DAG's card links to it by name.
            expect(page.get_by_role("link", name=DAILY, exact=True)).to_be_visible()
            expect(page.get_by_role("link", name=HOURLY, exact=True)).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "1-dag-list.png")

            page.goto(f"{base}/dags/{DAILY}")
            page.get_by_role("button", name="Show Graph (Press g)").click()
            page.get_by_role("button", name="Expand all task groups").click()
            graph = page.locator(".react-flow__node")
            expect(graph.filter(has_text="stg_greenery__orders").first).to_be_visible()
            expect(graph.filter(has_text="product_funnel").first).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "2-daily-graph.png")

            page.get_by_role("button", name="Trigger").first.click()
            form = page.get_by_role("dialog")
            expect(form.get_by_role("checkbox", name="Full refresh")).to_be_visible()
            for label in ("Start date", "End date"):
                expect(form.get_by_role("group").filter(has_text=label)).to_be_visible()
            # A dbt node selection, a rerun of what failed, and only what changed (a list of three choices).
            for label in ("Select", "Exclude", "Rerun failed of"):
                expect(form.get_by_text(label, exact=True).first).to_be_visible()
            expect(form.get_by_role("combobox", name="Only")).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "3-trigger-form.png")
            page.keyboard.press("Escape")

            page.get_by_role("button", name="Browse").click()
            with context.expect_page() as opened:
                page.get_by_role("menuitem", name="dbt Docs (greenery)").click()
            docs = opened.value
            docs.wait_for_load_state()
            assert "/greenery-docs/index.html" in docs.url, docs.url
            docs.goto(docs.url.split("#")[0] + "#!/model/model.greenery.fct_orders")  # a model's docs page
            expect(docs.locator("h1").filter(has_text="fct_orders").first).to_be_visible()
            docs.screenshot(path=SCREENSHOTS / "4-dbt-docs.png")
        except Exception:
            page.screenshot(path=SCREENSHOTS / "failure.png")
            raise
        finally:
            browser.close()


def test_a_warehouse_restart_in_the_middle_of_the_runs_is_ridden_out_with_no_row_lost_or_doubled(
    api: AirflowApi, restart: dict[str, Any], runs: dict, local_platform: dict[str, Any]
) -> None:
    assert {run["state"] for run in runs.values()} == {"success"}, _summary(api, runs)

    # The restart cut the queries that waited on the locked raw tables: their tasks failed that try and were
    # retried (a test only because its connection dropped: include.dbt_tasks.retries), then succeeded.
    retried = {
        f"{dag_id}.{ti['task_id']}": ti["try_number"]
        for dag_id, run in runs.items()
        for ti in api.task_instances(dag_id, run["dag_run_id"])
        if ti["try_number"] > 1
    }
    assert retried, f"no task was retried although the restart cut {sorted(restart['waiting'])}"
    print(f"restart cut {sorted(restart['waiting'])} while {restart['running']} ran; retried: {retried}")

    # Airflow's components that lost their database exited, and supervisord started them again.
    log = (Path(local_platform["local_dir"]) / "airflow" / "logs" / "supervisord.log").read_text()
    assert "not expected)" in log and log.count("INFO spawned:") > 4, log[-3000:]
    status = run_module("include.local_platform.local_airflow", "status", env=local_platform["env"])
    assert status.returncode == 0, status.stdout + status.stderr  # every component RUNNING
    assert _get(f"{local_platform['url']}/api/v2/monitor/health")[0] == 200

    # Every order and page view that had arrived before the run started is in its mart, exactly once.
    started = runs[DAILY]["start_date"]
    conn = _warehouse(local_platform)
    try:
        with conn.cursor() as cur:
            for mart, key, raw in (
                ("analytics_core.fct_orders", "order_id", "select order_id from raw.orders"),
                (
                    "analytics_product.fct_page_views",
                    "event_id",
                    "select event_id from raw.events where event_type = 'page_view'",
                ),
                ("analytics_product.fct_sessions", "session_id", "select distinct session_id from raw.events"),
            ):
                cur.execute(f"select count(*), count(distinct {key}) from {mart}")
                rows, keys = cur.fetchone()
                assert rows == keys, f"{mart}: {rows - keys} duplicated rows"
                where = "and" if " where " in raw else "where"
                cur.execute(
                    f"select count(*) from ({raw} {where} _loaded_at < %s) arrived"
                    f" where {key} not in (select {key} from {mart})",
                    (started,),
                )
                assert cur.fetchone()[0] == 0, f"{mart} lost rows that had arrived before the run"
    finally:
        conn.close()


def _make_backfill(local_platform: dict[str, str], first: dt.date, last: dt.date) -> subprocess.CompletedProcess:
    """What `make backfill FROM=... TO=...` runs: the module, in the environment of the platform's airflow.env."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(read_env_file(Path(local_platform["local_dir"]) / "airflow.env"))
    return subprocess.run(
        [sys.executable, "-m", "include.dbt_tasks.backfill", "--from", first.isoformat(), "--to", last.isoformat()],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_backfill_reprocesses_exactly_the_named_days_one_run_at_a_time(
    api: AirflowApi, runs: dict, local_platform: dict[str, str]
) -> None:
    # Two days well inside the 30 days of demo data, older than the day the platform's scheduled run processed
    # (yesterday after 06:00 UTC, the day before before 06:00), so the backfill has runs of its own.
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=4), today - dt.timedelta(days=3)]

    created = _make_backfill(local_platform, days[0], days[-1])
    assert created.returncode == 0, created.stdout + created.stderr
    assert f"reprocessing {days[0]} to {days[-1]} (2 days, UTC, one run at a time" in created.stdout

    # A second backfill while this one has unfinished runs: one message, nothing created.
    again = _make_backfill(local_platform, days[0], days[-1])
    assert again.returncode == 1, again.stdout + again.stderr
    assert again.stderr.startswith("Backfill refused: greenery_daily has runs that have not finished: ")
    assert "backfill__" in again.stderr

    # The first run must end before the second starts. Once the second has validated its window, everything
    # under test is known; it keeps running while the rest of this module goes on (make down stops it).
    deadline = time.monotonic() + 25 * 60
    while True:
        backfill_runs = sorted(
            api.get(f"/api/v2/dags/{DAILY}/dagRuns?run_type=backfill")["dag_runs"], key=lambda run: run["logical_date"]
        )
        assert len(backfill_runs) == len(days), backfill_runs
        first, second = backfill_runs
        if first["state"] in ("success", "failed") and _task_state(api, second, "validate_params") == "success":
            break
        assert first["state"] != "failed" and second["state"] != "failed", backfill_runs
        assert time.monotonic() < deadline, f"the backfill's runs are not that far after 25 minutes: {backfill_runs}"
        time.sleep(10)
    not_done = [ti["task_id"] for ti in api.task_instances(DAILY, first["dag_run_id"]) if ti["state"] != "success"]
    assert first["state"] == "success", f"the backfill's first run failed; unsuccessful tasks: {not_done}"

    # Exactly the named days: the window validate_params handed every dbt command of each run.
    windows = []
    for run in backfill_runs:
        run_id = urllib.parse.quote(run["dag_run_id"], safe="")
        entry = api.get(f"/api/v2/dags/{DAILY}/dagRuns/{run_id}/taskInstances/validate_params/xcomEntries/return_value")
        value = json.loads(entry["value"]) if isinstance(entry["value"], str) else entry["value"]
        windows.append((value["start_date"], value["end_date"]))
    assert windows == [(f"{day}T00:00:00+00:00", f"{day + dt.timedelta(days=1)}T00:00:00+00:00") for day in days]

    # One at a time, oldest first: the second run started after the first had ended.
    assert dt.datetime.fromisoformat(second["start_date"]) >= dt.datetime.fromisoformat(first["end_date"]), (
        backfill_runs
    )

    # dbt ran in the first, and the warehouse's run history recorded it.
    conn = _warehouse(local_platform)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select count(*) from dbt_meta.invocations where dag_id = %s and run_id = %s",
                (DAILY, first["dag_run_id"]),
            )
            assert cur.fetchone()[0] > 0
    finally:
        conn.close()


def _task_state(api: AirflowApi, run: dict, task_id: str) -> str | None:
    run_id = urllib.parse.quote(run["dag_run_id"], safe="")
    try:
        return api.get(f"/api/v2/dags/{DAILY}/dagRuns/{run_id}/taskInstances/{task_id}")["state"]
    except AssertionError:  # 404: not created yet
        return None


def test_the_alert_delivery_dag_runs_in_the_triggerer_and_never_takes_a_worker(api: AirflowApi, runs: dict) -> None:
    """greenery_alert_delivery runs every 2 minutes on the real scheduler and triggerer; by the time the daily run
    is done, some of its runs have ended."""
    deadline = time.monotonic() + 5 * 60
    while True:
        done = [
            run
            for run in api.get("/api/v2/dags/greenery_alert_delivery/dagRuns?limit=20")["dag_runs"]
            if run["state"] in ("success", "failed")
        ]
        if done or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert done, "greenery_alert_delivery never finished a run"
    assert {run["state"] for run in done} == {"success"}
    for run in done:
        [ti] = api.task_instances("greenery_alert_delivery", run["dag_run_id"])
        assert ti["state"] == "success"
        assert ti["queued_when"] is None, "the delivery task was queued to an executor: it took a worker"


def test_a_killed_scheduler_is_started_again_and_the_ui_keeps_answering(local_platform: dict[str, Any]) -> None:
    def components() -> dict[str, dict]:
        result = run_module("include.local_platform.local_airflow", "status", "--json", env=local_platform["env"])
        return json.loads(result.stdout.strip().splitlines()[-1])

    before = components()["scheduler"]["pid"]
    os.kill(before, 9)
    deadline = time.monotonic() + 120
    while True:
        now = components()["scheduler"]
        if now["state"] == "RUNNING" and now["pid"] != before:
            break
        assert time.monotonic() < deadline, f"the scheduler did not come back within 2 minutes: {now}"
        time.sleep(2)
    log = (Path(local_platform["local_dir"]) / "airflow" / "logs" / "supervisord.log").read_text()
    assert "exited: scheduler (terminated by SIGKILL; not expected)" in log, log[-2000:]
    assert _get(f"{local_platform['url']}/api/v2/monitor/health")[0] == 200


def test_make_down_stops_every_process_of_the_platform(local_platform: dict[str, Any]) -> None:
    stopped = run_module("include.local_platform.local_airflow", "down", env=local_platform["env"])
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    left = processes_of_the_platform(Path(local_platform["local_dir"]))
    assert left == [], f"processes of the platform still running after down: {left}"
