"""The platform ``make up`` starts, used the way a user does, with the real scheduler and triggerer (LocalExecutor,
the default producer mode: dbt runs once per DAG run in ``dbt_build`` while every node task waits in the triggerer).
One platform, one scenario after another, each leaving it usable for the next:

1. the daily and hourly runs the scheduler starts on its own: green, no node task on a worker, the snapshot steps of
   the two never at the same time; the marts, docs and assets; the docs behind the login; the UI in a real browser
   (Debian's chromium driven by Playwright; screenshots in tests/e2e/screenshots/); the alert delivery DAG;
2. a daily and an hourly run with the raw tables locked and the PostgreSQL cluster (warehouse and Airflow's
   metadata database) restarted under them for 10 seconds: they ride it out, no row lost or doubled;
3. a run on bad raw data: the failing test task fails with dbt's message and alerts a local HTTP Slack server while
   the rest of the run goes on; a clear of that task after the data is fixed runs it on a worker;
4. a producer killed in the middle of its build, whose retry builds only what had not finished;
5. a two-day backfill made with `make backfill`'s command; a killed scheduler that comes back; `make down`.

Test platforms retry after 15 s instead of a minute (``GREENERY_RETRY_DELAY_SECONDS``, longer than the restart's
outage) and schedule the daily run 12 hours away from now, so no second scheduled run starts during the tests
(tests/conftest.py, ``started_platform``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.dbt_tasks.producer import PRODUCER_TASK_ID
from include.local_platform.pgcluster import LOCATION_FILE
from include.local_platform.warehouse import read_env_file
from tests.alerts.slack_stub import SlackWebhookStub
from tests.conftest import REPO_ROOT, processes_of_the_platform, run_module, started_platform
from tests.e2e.dbt_health_checks import check_run_on_the_health_page, open_run_timeline
from tests.e2e.platform_api import (
    CHROMIUM,
    DAILY,
    FINISHED,
    HOURLY,
    POLL_SECONDS,
    SCREENSHOTS,
    AirflowApi,
    a_daily_run_waiting_on_the_page_views,
    dbt_nodes_waiting_on_a_lock,
    plain_get,
    summary,
    warehouse,
)

# Starting the platform and its runs take several minutes on a small machine.
pytestmark = pytest.mark.timeout(45 * 60)

MARTS = ("analytics_core.fct_orders", "analytics_marketing.user_order_facts", "analytics_product.product_funnel")
# How long the cluster stays down: a laptop waking up, a managed database failing over.
OUTAGE_SECONDS = 10
PRICE_TEST_TASK = "models.greenery_products_source_test"
BAD_PRODUCT_PRICE = -4.5
SIMULATOR = "greenery_dev_shop_simulator"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, slack: SlackWebhookStub) -> Iterator[dict[str, Any]]:
    with started_platform(
        tmp_path_factory.mktemp("platform"),
        # Airflow 3.3.2 cannot clear a task of a run whose queued-at deadline is still pending (HTTP 500,
        # apache/airflow#70368); the lateness alert is tested in tests/alerts.
        GREENERY_DAILY_DEADLINE_MINUTES="0",
        AIRFLOW_CONN_SLACK_ALERTS=slack.connection_json(),
    ) as started:
        yield started


@pytest.fixture(scope="module")
def api(platform: dict[str, Any]) -> AirflowApi:
    return AirflowApi(platform["url"])


# -- 1. the runs the scheduler starts on its own ------------------------------------------------------------------


@pytest.fixture(scope="module")
def green_runs(api: AirflowApi) -> dict[str, dict]:
    """The daily and hourly runs the scheduler starts on its own when the platform comes up (catchup is off), at
    the same time, once both have ended."""
    started = {dag_id: api.scheduled_run(dag_id) for dag_id in (DAILY, HOURLY)}
    return {dag_id: api.finished_run(run["dag_run_id"], dag_id=dag_id) for dag_id, run in started.items()}


def test_a_green_run_builds_every_node_in_one_dbt_process_and_no_node_task_reaches_a_worker(
    api: AirflowApi, green_runs: dict[str, dict], platform: dict[str, Any]
) -> None:
    green_run = green_runs[DAILY]
    tasks = api.tasks(green_run["dag_run_id"])
    assert green_run["state"] == "success", {t: ti["state"] for t, ti in tasks.items() if ti["state"] != "success"}
    node_tasks = {task_id: ti for task_id, ti in tasks.items() if task_id not in ("validate_params", PRODUCER_TASK_ID)}
    assert len(node_tasks) > 60
    assert {ti["state"] for ti in node_tasks.values()} == {"success"}
    # A task that reached a worker went through the executor's queue first; these were ended by the triggerer.
    on_workers = sorted(task_id for task_id, ti in node_tasks.items() if ti["queued_when"] or ti["pid"])
    assert on_workers == []
    assert tasks[PRODUCER_TASK_ID]["queued_when"] and tasks[PRODUCER_TASK_ID]["try_number"] == 1
    with warehouse(platform) as connection, connection.cursor() as cursor:
        # The run history holds the producer's commands like any task's.
        cursor.execute(
            "select command from dbt_meta.invocations where run_id = %s and task_id = %s order by started_at",
            (green_run["dag_run_id"], PRODUCER_TASK_ID),
        )
        assert [row[0] for row in cursor.fetchall()] == ["source freshness", "build", "build"]


def test_the_hourly_and_daily_snapshot_steps_started_together_never_overlap(
    api: AirflowApi, green_runs: dict[str, dict]
) -> None:
    """Both runs' snapshot steps compete for the one-slot pool ``dbt_snapshots``; inside each run the two snapshots
    are independent of each other, so without the pool they would run at the same time. Each DAG's producer runs
    its snapshots and holds the slot while it runs; the node tasks in the triggerer hold none."""
    assert {run["state"] for run in green_runs.values()} == {"success"}, summary(api, green_runs)
    snapshot_tis = [
        ti
        for dag_id, run in green_runs.items()
        for ti in api.tasks(run["dag_run_id"], dag_id).values()
        if ti["pool"] == "dbt_snapshots"
    ]
    assert {ti["dag_id"] for ti in snapshot_tis} == set(green_runs)
    assert {ti["state"] for ti in snapshot_tis} == {"success"}
    on_workers = sorted(
        (ti["start_date"], ti["end_date"], f"{ti['dag_id']}.{ti['task_id']}")
        for ti in snapshot_tis
        if ti["queued_when"]
    )
    assert {name.split(".")[0] for _, _, name in on_workers} == {DAILY, HOURLY}, on_workers
    assert [(a[2], b[2]) for a, b in itertools.pairwise(on_workers) if b[0] < a[1]] == []
    hourly = api.tasks(green_runs[HOURLY]["dag_run_id"], HOURLY)
    assert {ti["state"] for ti in hourly.values()} == {"success"}
    assert [task_id for task_id, ti in hourly.items() if ti["queued_when"]] == [PRODUCER_TASK_ID]


def test_the_scheduled_daily_run_builds_the_marts_and_publishes_docs_and_assets(
    api: AirflowApi, green_runs: dict, platform: dict[str, Any]
) -> None:
    daily = green_runs[DAILY]
    assert {run["state"] for run in green_runs.values()} == {"success"}, summary(api, green_runs)

    local_dir = Path(platform["local_dir"])
    conn = warehouse(platform)
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

    # The marts' assets, which the node tasks ended in the triggerer cannot record, come from the producer.
    events = api.get(f"/api/v2/assets/events?source_dag_id={DAILY}&limit=500")["asset_events"]
    uris = {event["uri"] for event in events if event["source_run_id"] == daily["dag_run_id"]}
    assert any(uri.endswith("/analytics_product/product_funnel") for uri in uris), uris
    assert not any("/analytics_staging/" in uri for uri in uris), uris  # only the marts, as in local mode


def test_the_dbt_docs_answer_only_with_the_login_the_rest_of_airflow_needs(
    api: AirflowApi, green_runs: dict, platform: dict[str, Any]
) -> None:
    base = platform["url"]
    docs = f"{base}/greenery-docs"
    assert plain_get(f"{base}/api/v2/dags")[0] == 401  # Airflow's own API, for comparison

    for name in ("manifest.json", "catalog.json"):
        status, _, body = plain_get(f"{docs}/{name}")
        assert (status, json.loads(body)) == (401, {"detail": "Not authenticated"}), (name, status, body[:300])
    # A browser without the login is sent to it, and comes back to the docs afterwards.
    status, headers, body = plain_get(f"{docs}/index.html")
    assert status == 307, (status, body[:300])
    assert headers["Location"].startswith("/auth/login?next="), headers["Location"]
    assert b"dbt" not in body

    # Cosmos' own docs plugin, which serves them to anyone, is off.
    assert plain_get(f"{base}/cosmos/greenery/manifest.json")[0] == 404

    # The token of a logged-in user opens them, as it opens the API.
    status, _, body = plain_get(f"{docs}/manifest.json", {"Authorization": f"Bearer {api.token}"})
    assert status == 200
    assert json.loads(body)["metadata"]["project_name"] == "greenery"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed: `apt-get install chromium`")
def test_the_airflow_ui_shows_the_dags_their_dbt_tasks_the_trigger_form_and_the_dbt_docs(
    green_runs: dict, platform: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = platform["url"]
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

            # The dbt health page, same login: the scheduled run's timeline in dbt's own timings, then the trends.
            open_run_timeline(
                page, base, DAILY, green_runs[DAILY]["dag_run_id"], SCREENSHOTS / "5-dbt-health-timeline.png"
            )
        except Exception:
            page.screenshot(path=SCREENSHOTS / "failure.png")
            raise
        finally:
            browser.close()


def test_the_dbt_health_page_shows_the_scheduled_run_with_dbts_own_timings(
    api: AirflowApi, green_runs: dict, platform: dict[str, Any]
) -> None:
    timeline = check_run_on_the_health_page(
        platform["url"], api.token, DAILY, green_runs[DAILY]["dag_run_id"], lambda: warehouse(platform)
    )
    print(f"critical path of the scheduled run: {timeline['critical_path']}")


def test_the_alert_delivery_dag_runs_in_the_triggerer_and_never_takes_a_worker(
    api: AirflowApi, green_runs: dict
) -> None:
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
        time.sleep(POLL_SECONDS)
    assert done, "greenery_alert_delivery never finished a run"
    assert {run["state"] for run in done} == {"success"}
    for run in done:
        [ti] = api.task_instances("greenery_alert_delivery", run["dag_run_id"])
        assert ti["state"] == "success"
        assert ti["queued_when"] is None, "the delivery task was queued to an executor: it took a worker"


# -- 2. a restart of the PostgreSQL cluster in the middle of a daily and an hourly run ----------------------------


def _restart_the_warehouse(platform: dict[str, Any]) -> None:
    """`make warehouse`'s cluster stopped (fast: open connections are cut), down for OUTAGE_SECONDS, started."""
    stopped = run_module("include.local_platform.warehouse", "stop", env=platform["env"], timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    time.sleep(OUTAGE_SECONDS)
    started = run_module("include.local_platform.warehouse", "start", env=platform["env"], timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr


def _lock_the_raw_tables(platform: dict[str, Any]) -> Any:
    """A session that holds every raw table locked (access exclusive) until the restart cuts it: each dbt query
    that still has to read raw data (freshness, source tests, staging views, snapshots) waits on it, so the
    restart is sure to cut dbt in the middle of a query."""
    conn = warehouse(platform)
    with conn.cursor() as cur:
        cur.execute("select string_agg(format('raw.%I', tablename), ', ') from pg_tables where schemaname = 'raw'")
        cur.execute(f"lock table {cur.fetchone()[0]} in access exclusive mode")
    return conn  # the transaction stays open


@pytest.fixture(scope="module")
def restart(api: AirflowApi, platform: dict[str, Any], green_runs: dict[str, dict]) -> dict[str, Any]:
    """A daily run triggered once the scheduled runs have ended, and an hourly run beside it. Once dbt_build runs,
    the raw tables are locked and the hourly run starts; once a dbt query waits on the lock, the cluster restarts
    under them. Returns the runs as they were started, the tasks that were running, the dbt nodes whose queries
    the restart cut, and when the cluster came back."""
    runs = {DAILY: api.post(f"/api/v2/dags/{DAILY}/dagRuns", {"logical_date": None})}
    deadline = time.monotonic() + 15 * 60
    while True:
        running = [
            task_id
            for task_id, ti in api.tasks(runs[DAILY]["dag_run_id"]).items()
            if ti["state"] == "running" and (task_id.startswith("models.") or task_id == PRODUCER_TASK_ID)
        ]
        if PRODUCER_TASK_ID in running:
            break
        assert time.monotonic() < deadline, "dbt_build of the daily run did not start within 15 minutes"
        time.sleep(1)
    lock = _lock_the_raw_tables(platform)
    try:
        # Started after the lock: its snapshots read raw tables, so at least they wait on it.
        runs[HOURLY] = api.post(f"/api/v2/dags/{HOURLY}/dagRuns", {"logical_date": None})
        waiting = dbt_nodes_waiting_on_a_lock(platform)
        _restart_the_warehouse(platform)  # cuts the lock's session too
    finally:
        lock.close()
    return {"runs": runs, "running": running, "waiting": waiting, "back_at": dt.datetime.now(dt.UTC)}


@pytest.fixture(scope="module")
def runs(api: AirflowApi, restart: dict[str, Any]) -> dict[str, dict]:
    """The daily run and the hourly run of the restart, once both have finished."""
    deadline = time.monotonic() + 40 * 60
    while True:
        try:
            states = {
                dag_id: api.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run['dag_run_id'])}")
                for dag_id, run in restart["runs"].items()
            }
        except (AssertionError, OSError):  # the api-server may still be reconnecting to its database
            states = {}
        if states and all(run["state"] in ("success", "failed") for run in states.values()):
            return states
        assert time.monotonic() < deadline, f"runs still not finished after 40 minutes: {states}"
        time.sleep(POLL_SECONDS)


def test_a_warehouse_restart_in_the_middle_of_the_runs_is_ridden_out_with_no_row_lost_or_doubled(
    api: AirflowApi, restart: dict[str, Any], runs: dict, platform: dict[str, Any]
) -> None:
    assert {run["state"] for run in runs.values()} == {"success"}, summary(api, runs)

    # The restart cut the queries that waited on the locked raw tables: their tasks failed that try and were
    # retried (a test only because its connection dropped: include.dbt_tasks.retries), then succeeded.
    retried = {
        f"{dag_id}.{ti['task_id']}": ti["try_number"]
        for dag_id, run in runs.items()
        for ti in api.task_instances(dag_id, urllib.parse.quote(run["dag_run_id"]))
        if ti["try_number"] > 1
    }
    assert retried, f"no task was retried although the restart cut {sorted(restart['waiting'])}"
    print(f"restart cut {sorted(restart['waiting'])} while {restart['running']} ran; retried: {retried}")

    # Airflow's components that lost their database exited, and supervisord started them again.
    log = (Path(platform["local_dir"]) / "airflow" / "logs" / "supervisord.log").read_text()
    assert "not expected)" in log and log.count("INFO spawned:") > 4, log[-3000:]
    status = run_module("include.local_platform.local_airflow", "status", env=platform["env"])
    assert status.returncode == 0, status.stdout + status.stderr  # every component RUNNING
    assert plain_get(f"{platform['url']}/api/v2/monitor/health")[0] == 200

    # Every order and page view that had arrived before the run started is in its mart, exactly once.
    started = runs[DAILY]["start_date"]
    conn = warehouse(platform)
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


# -- 3. a run on bad raw data, and a clear of its failed test after the data is fixed ----------------------------


@pytest.fixture(scope="module")
def bad_price_run(api: AirflowApi, runs: dict, platform: dict[str, Any]) -> dict:
    """A daily run after one product's price was made negative. The dev shop simulator is paused until the data is
    fixed: it would price new orders at the broken price, and they would stay wrong after the fix."""
    api.patch(f"/api/v2/dags/{SIMULATOR}", {"is_paused": True})
    with warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute("select product_id, price from raw.products order by product_id limit 1")
        product_id, price = cursor.fetchone()
        cursor.execute("update raw.products set price = %s where product_id = %s", (BAD_PRODUCT_PRICE, product_id))
    run = api.post(f"/api/v2/dags/{DAILY}/dagRuns", {"logical_date": None})
    return {**api.finished_run(run["dag_run_id"]), "fix": (price, product_id)}


def test_a_failing_test_fails_its_task_with_dbts_message_alerts_and_stops_only_what_reads_it(
    api: AirflowApi, bad_price_run: dict, slack: SlackWebhookStub
) -> None:
    run_id = bad_price_run["dag_run_id"]
    tasks = api.tasks(run_id)
    assert bad_price_run["state"] == "failed"
    failed = sorted(task_id for task_id, ti in tasks.items() if ti["state"] == "failed")
    assert failed == [PRICE_TEST_TASK]
    assert tasks[PRICE_TEST_TASK]["try_number"] == 1  # a data failure is never retried
    assert tasks["models.stg_greenery__products.run"]["state"] == "upstream_failed"
    assert tasks["models.stg_greenery__users.run"]["state"] == "success"
    assert tasks[PRODUCER_TASK_ID]["state"] == "success"
    log = api.log(run_id, PRICE_TEST_TASK, 1)
    assert "source_not_negative_greenery_products_price" in log and "failing row" in log
    alerts = [text for text in slack.delivered if "source_not_negative_greenery_products_price" in text]
    assert alerts, slack.delivered
    assert PRICE_TEST_TASK in alerts[0]


def test_clearing_the_failed_test_after_fixing_the_data_runs_it_and_its_downstream_on_a_worker(
    api: AirflowApi, bad_price_run: dict, platform: dict[str, Any]
) -> None:
    run_id = bad_price_run["dag_run_id"]
    with warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute("update raw.products set price = %s where product_id = %s", bad_price_run["fix"])
    api.patch(f"/api/v2/dags/{SIMULATOR}", {"is_paused": False})
    api.post(
        f"/api/v2/dags/{DAILY}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [PRICE_TEST_TASK],
            "include_downstream": True,
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    run = api.finished_run(run_id)
    tasks = api.tasks(run_id)
    assert run["state"] == "success", {t: ti["state"] for t, ti in tasks.items() if ti["state"] != "success"}
    cleared = tasks[PRICE_TEST_TASK]
    assert cleared["try_number"] == 2 and cleared["queued_when"]  # it ran its own dbt test on a worker
    log = api.log(run_id, PRICE_TEST_TASK, 2)
    assert "Running this task's dbt command here" in log
    # On the parse dbt_build kept on this machine: the run's window does not make dbt parse the project again.
    assert "dbt project loaded (nothing had changed since its last parse on this machine)" in log
    assert tasks["models.stg_greenery__products.run"]["state"] == "success"
    assert {ti["state"] for ti in tasks.values()} <= FINISHED


# -- 4. a producer killed in the middle of its build -------------------------------------------------------------


@pytest.fixture(scope="module")
def killed_run(api: AirflowApi, platform: dict[str, Any], bad_price_run: dict) -> dict:
    """A daily run whose producer is SIGKILLed while dbt builds: a session holds fct_page_views (built by the green
    run) locked, so dbt's build waits on it with the staging layer done; the producer's task process is killed,
    the lock released, and Airflow retries the producer (after the DAG's retry delay). It comes after the clear
    above, so the data is clean again."""
    with a_daily_run_waiting_on_the_page_views(api, platform) as run:
        assert run["producer"]["pid"], run["producer"]
        os.kill(run["producer"]["pid"], signal.SIGKILL)
    return {**api.finished_run(run["dag_run_id"]), "waiting": run["waiting"]}


def test_a_killed_producer_is_retried_and_builds_only_what_had_not_finished(
    api: AirflowApi, killed_run: dict, platform: dict[str, Any]
) -> None:
    run_id = killed_run["dag_run_id"]
    tasks = api.tasks(run_id)
    assert "model.greenery.fct_page_views" in killed_run["waiting"]
    assert killed_run["state"] == "success", {t: ti["state"] for t, ti in tasks.items() if ti["state"] != "success"}
    assert tasks[PRODUCER_TASK_ID]["try_number"] == 2
    # No node task noticed: each waited in the triggerer for its result, from either try of the producer.
    node_tasks = {task_id: ti for task_id, ti in tasks.items() if task_id not in ("validate_params", PRODUCER_TASK_ID)}
    assert [task_id for task_id, ti in node_tasks.items() if ti["try_number"] != 1 or ti["queued_when"]] == []
    with warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute(
            "select i.command, n.unique_id from dbt_meta.invocations i join dbt_meta.node_results n using "
            "(invocation_id) where i.run_id = %s and i.task_id = %s and i.try_number = 2",
            (run_id, PRODUCER_TASK_ID),
        )
        rebuilt = {unique_id for command, unique_id in cursor.fetchall()}
        # The retry built the page views and what reads them, not the staging layer the first try had finished.
        assert "model.greenery.fct_page_views" in rebuilt
        assert not {"model.greenery.stg_greenery__events", "model.greenery.stg_greenery__users"} & rebuilt
        cursor.execute(
            "select command from dbt_meta.invocations where run_id = %s and task_id = %s and try_number = 2",
            (run_id, PRODUCER_TASK_ID),
        )
        assert [row[0] for row in cursor.fetchall()] == ["build"]  # freshness and snapshots had ended
        # Every page view that had arrived before the run is in the mart exactly once.
        cursor.execute("select count(*), count(distinct event_id) from analytics_product.fct_page_views")
        rows, keys = cursor.fetchone()
        assert rows == keys
        cursor.execute(
            "select count(*) from raw.events where event_type = 'page_view' and _loaded_at < %s and event_id not in "
            "(select event_id from analytics_product.fct_page_views)",
            (killed_run["start_date"],),
        )
        assert cursor.fetchone()[0] == 0
    assert "building what had not finished" in api.log(run_id, PRODUCER_TASK_ID, 2)


# -- 5. a backfill, a killed scheduler, make down -----------------------------------------------------------------


def _make_backfill(platform: dict[str, str], first: dt.date, last: dt.date) -> subprocess.CompletedProcess:
    """What `make backfill FROM=... TO=...` runs: the module, in the environment of the platform's airflow.env."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(read_env_file(Path(platform["local_dir"]) / "airflow.env"))
    return subprocess.run(
        [sys.executable, "-m", "include.dbt_tasks.backfill", "--from", first.isoformat(), "--to", last.isoformat()],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_backfill_reprocesses_exactly_the_named_days_one_run_at_a_time(
    api: AirflowApi, killed_run: dict, platform: dict[str, Any]
) -> None:
    # Two days well inside the 30 days of demo data, older than the day the platform's scheduled run processed
    # (yesterday after 06:00 UTC, the day before before 06:00), so the backfill has runs of its own.
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=4), today - dt.timedelta(days=3)]

    created = _make_backfill(platform, days[0], days[-1])
    assert created.returncode == 0, created.stdout + created.stderr
    assert f"reprocessing {days[0]} to {days[-1]} (2 days, UTC, one run at a time" in created.stdout

    # A second backfill while this one has unfinished runs: one message, nothing created.
    again = _make_backfill(platform, days[0], days[-1])
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
        time.sleep(POLL_SECONDS)
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
    conn = warehouse(platform)
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


def test_a_killed_scheduler_is_started_again_and_the_ui_keeps_answering(platform: dict[str, Any]) -> None:
    def components() -> dict[str, dict]:
        result = run_module("include.local_platform.local_airflow", "status", "--json", env=platform["env"])
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
    log = (Path(platform["local_dir"]) / "airflow" / "logs" / "supervisord.log").read_text()
    assert "exited: scheduler (terminated by SIGKILL; not expected)" in log, log[-2000:]
    assert plain_get(f"{platform['url']}/api/v2/monitor/health")[0] == 200


def test_make_down_stops_every_process_of_the_platform(platform: dict[str, Any]) -> None:
    stopped = run_module("include.local_platform.local_airflow", "down", env=platform["env"])
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    left = processes_of_the_platform(Path(platform["local_dir"]))
    assert left == [], f"processes of the platform still running after down: {left}"
