"""The platform ``make up`` starts, used the way a user does, with the real scheduler (LocalExecutor, tasks in
parallel): the daily run that the scheduler starts on its own, an hourly run triggered by hand through the REST
API while it runs, a look at the result in a real browser (Debian's chromium driven by Playwright;
screenshots in tests/e2e/screenshots/), and then a two-day backfill made with `make backfill`'s command. The
dbt docs it publishes answer only with the UI's login.

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
from tests.conftest import REPO_ROOT

# Starting the platform and one full daily run take several minutes on a small machine.
pytestmark = pytest.mark.timeout(45 * 60)

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
FINISHED = {"success", "failed", "upstream_failed", "skipped", "removed"}
DAILY, HOURLY = "greenery_daily", "greenery_hourly_snapshot"
MARTS = ("analytics_core.fct_orders", "analytics_marketing.user_order_facts", "analytics_product.product_funnel")


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


@pytest.fixture(scope="module")
def runs(api: AirflowApi) -> dict[str, dict]:
    """The scheduled daily run and an hourly run triggered by hand next to it, once both have finished."""
    runs = {
        DAILY: _scheduled_daily_run(api),
        HOURLY: api.post(f"/api/v2/dags/{HOURLY}/dagRuns", {"logical_date": None}),
    }
    deadline = time.monotonic() + 40 * 60
    while True:
        states = {dag_id: api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}") for dag_id, run in runs.items()}
        if all(run["state"] in ("success", "failed") for run in states.values()):
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

    deadline = time.monotonic() + 25 * 60
    while True:
        backfill_runs = api.get(f"/api/v2/dags/{DAILY}/dagRuns?run_type=backfill")["dag_runs"]
        if len(backfill_runs) == len(days) and all(run["state"] in ("success", "failed") for run in backfill_runs):
            break
        assert time.monotonic() < deadline, f"the backfill has not finished after 25 minutes: {backfill_runs}"
        time.sleep(10)
    backfill_runs.sort(key=lambda run: run["logical_date"])
    by_id = {run["dag_run_id"]: run for run in backfill_runs}
    not_done = {
        run_id: [ti["task_id"] for ti in api.task_instances(DAILY, run_id) if ti["state"] != "success"]
        for run_id, run in by_id.items()
        if run["state"] != "success"
    }
    assert not_done == {}, f"backfill runs that did not succeed, with their unsuccessful tasks: {not_done}"

    # Exactly the named days: the window validate_params handed every dbt command of each run.
    windows = []
    for run in backfill_runs:
        run_id = urllib.parse.quote(run["dag_run_id"], safe="")
        entry = api.get(f"/api/v2/dags/{DAILY}/dagRuns/{run_id}/taskInstances/validate_params/xcomEntries/return_value")
        value = json.loads(entry["value"]) if isinstance(entry["value"], str) else entry["value"]
        windows.append((value["start_date"], value["end_date"]))
    assert windows == [(f"{day}T00:00:00+00:00", f"{day + dt.timedelta(days=1)}T00:00:00+00:00") for day in days]

    # One at a time, oldest first: each run started after the one before it had ended.
    spans = [
        (dt.datetime.fromisoformat(run["start_date"]), dt.datetime.fromisoformat(run["end_date"]))
        for run in backfill_runs
    ]
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans

    # dbt ran in both, and the warehouse's run history recorded it.
    conn = _warehouse(local_platform)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select distinct run_id from dbt_meta.invocations where dag_id = %s and run_id = any(%s)",
                (DAILY, list(by_id)),
            )
            assert {row[0] for row in cur.fetchall()} == set(by_id)
    finally:
        conn.close()


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
