"""The platform ``make up`` starts, used the way a user does, with the real scheduler (LocalExecutor, tasks in
parallel): the daily run that the scheduler starts on its own, an hourly run triggered by hand through the REST
API while it runs, and a look at the result in a real browser (Debian's chromium driven by Playwright;
screenshots in tests/e2e/screenshots/).

Both runs' snapshot tasks compete for the one-slot pool ``dbt_snapshots``; inside each run the two snapshots
are independent of each other, so without the pool they would run at the same time.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from include.local_platform.pgcluster import LOCATION_FILE
from include.local_platform.warehouse import read_env_file

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
    libpq = read_env_file(local_dir / "warehouse.env")
    conn = psycopg2.connect(
        host=libpq["PGHOST"],
        port=libpq["PGPORT"],
        user=libpq["PGUSER"],
        password=libpq["PGPASSWORD"],
        dbname=libpq["PGDATABASE"],
    )
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
            expect(page.get_by_text(DAILY, exact=True).first).to_be_visible()
            expect(page.get_by_text(HOURLY, exact=True).first).to_be_visible()
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
            docs.goto(docs.url.split("#")[0] + "#!/model/model.greenery.fct_orders")  # a model's docs page
            expect(docs.locator("h1").filter(has_text="fct_orders").first).to_be_visible()
            docs.screenshot(path=SCREENSHOTS / "4-dbt-docs.png")
        except Exception:
            page.screenshot(path=SCREENSHOTS / "failure.png")
            raise
        finally:
            browser.close()


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
