"""``make up EXECUTOR=celery``, used as a platform engineer would try it: the real scheduler on CeleryExecutor, a real
Redis broker, two real Celery workers standing for two machines (127.0.0.2 and 127.0.0.3), the dbt docs in a real
S3-compatible store on 127.0.0.1. The same DAG files as on LocalExecutor: a scheduled daily run; a worker stopped in
the middle of a run (SIGTERM, then SIGKILL), whose task is retried on the other worker with no mart row lost or
doubled; the docs page in a real browser, read from the store; a failing data test's alert at a local Slack
webhook; ``make down`` leaving no process behind."""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from include.local_platform import celery_platform
from tests.alerts.slack_stub import SlackWebhookStub
from tests.conftest import processes_of_the_platform, run_module, started_platform
from tests.e2e.platform_api import CHROMIUM, SCREENSHOTS, AirflowApi, a_daily_run_waiting_on_the_page_views, warehouse

pytestmark = pytest.mark.timeout(30 * 60)

DAILY = "greenery_daily"
PRODUCER = "dbt_build"
WORKERS = {"127.0.0.2": "worker-1", "127.0.0.3": "worker-2"}
PRICE_TEST_TASK = "models.greenery_products_source_test"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, slack: SlackWebhookStub) -> Iterator[dict[str, Any]]:
    with started_platform(
        tmp_path_factory.mktemp("celery"),
        GREENERY_EXECUTOR="celery",
        AIRFLOW_CONN_SLACK_ALERTS=slack.connection_json(),
    ) as started:
        state = json.loads((Path(started["local_dir"]) / "airflow" / "platform.json").read_text())
        yield {**started, "celery": state["celery"]}


@pytest.fixture(scope="module")
def api(platform: dict[str, Any]) -> AirflowApi:
    return AirflowApi(platform["url"])


def _metadata(platform: dict[str, Any], query: str, *args: Any) -> list[tuple]:
    """Rows of Airflow's metadata database (the ``airflow`` database of the warehouse's cluster)."""
    from include.local_platform.warehouse import read_env_file

    libpq = read_env_file(Path(platform["local_dir"]) / "warehouse.env")
    connection = psycopg2.connect(
        host=libpq["PGHOST"], port=libpq["PGPORT"], user=libpq["PGUSER"], password=libpq["PGPASSWORD"], dbname="airflow"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, args)
            return cursor.fetchall()
    finally:
        connection.close()


def _components(platform: dict[str, Any]) -> dict[str, dict]:
    result = run_module("include.local_platform.local_airflow", "status", "--json", env=platform["env"])
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def green_run(api: AirflowApi) -> dict:
    """The daily run the scheduler starts on its own when the platform comes up (catchup is off)."""
    return api.finished_run(api.scheduled_run()["dag_run_id"])


@pytest.fixture(scope="module")
def lost_worker_run(api: AirflowApi, platform: dict[str, Any], green_run: dict) -> dict:
    """A daily run whose worker goes away while dbt builds: a session holds fct_page_views (built by the green run)
    locked, so dbt_build waits on it with the staging layer done; the worker that runs it is stopped the way
    supervisord stops a program (SIGTERM, SIGKILL 10 s later, then its task process). The lock is released; the
    task fails for want of a heartbeat and its retry can only go to the other worker."""
    with a_daily_run_waiting_on_the_page_views(api, platform) as run:
        producer = run["producer"]
        assert producer["hostname"] in WORKERS, producer
        lost = WORKERS[producer["hostname"]]
        stopped = run_module("include.local_platform.local_airflow", "stop", lost, env=platform["env"], timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    try:
        finished = api.finished_run(run["dag_run_id"])
    finally:
        started = run_module("include.local_platform.local_airflow", "start", lost, env=platform["env"])
        assert started.returncode == 0, started.stdout + started.stderr
    return {**finished, "lost": lost, "lost_host": producer["hostname"]}


def test_the_scheduled_daily_run_succeeds_on_celery_with_dbt_work_on_the_dbt_queue(
    api: AirflowApi, green_run: dict, platform: dict[str, Any]
) -> None:
    tasks = api.tasks(green_run["dag_run_id"])
    assert green_run["state"] == "success", {t: ti["state"] for t, ti in tasks.items() if ti["state"] != "success"}
    assert {name: info["state"] for name, info in _components(platform).items()} == dict.fromkeys(
        [
            *("api-server", "broker", "dag-processor", "object-store", "scheduler", "triggerer"),
            *("worker-1", "worker-1-logs", "worker-2", "worker-2-logs"),
        ],
        "RUNNING",
    )
    # What took a worker: the two tasks of a green run that run dbt or its selection, both from the dbt queue.
    on_workers = {task_id: ti for task_id, ti in tasks.items() if ti["queued_when"]}
    assert sorted(on_workers) == ["dbt_build", "validate_params"]
    assert {ti["queue"] for ti in on_workers.values()} == {"dbt"}
    assert {ti["hostname"] for ti in on_workers.values()} <= set(WORKERS)
    with warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from analytics_core.fct_orders")
        assert cursor.fetchone()[0] > 0
    # The task log comes from the log server of the worker that ran it, on that worker's own address.
    host = tasks[PRODUCER]["hostname"]
    log = api.get(
        f"/api/v2/dags/{DAILY}/dagRuns/{urllib.parse.quote(green_run['dag_run_id'])}/taskInstances/{PRODUCER}/logs/1"
    )
    port = platform["celery"]["worker_log_port"]
    assert f"http://{host}:{port}/log/" in json.dumps(log)


def test_a_worker_lost_in_the_middle_of_a_run_ends_in_a_green_run_with_no_row_lost_or_doubled(
    api: AirflowApi, lost_worker_run: dict, platform: dict[str, Any]
) -> None:
    run_id = lost_worker_run["dag_run_id"]
    tasks = api.tasks(run_id)
    not_green = {task_id: ti["state"] for task_id, ti in tasks.items() if ti["state"] != "success"}
    assert lost_worker_run["state"] == "success", not_green
    producer = tasks[PRODUCER]
    assert producer["try_number"] == 2 and producer["hostname"] != lost_worker_run["lost_host"]
    supervisor_log = (Path(platform["local_dir"]) / "airflow" / "logs" / "supervisord.log").read_text()
    assert f"stopped: {lost_worker_run['lost']} (" in supervisor_log

    # The metadata database has the killed try on one worker and the retry on the other.
    tries = _metadata(
        platform,
        "select try_number, hostname from task_instance_history where dag_id = %s and run_id = %s and task_id = %s"
        " union select try_number, hostname from task_instance where dag_id = %s and run_id = %s and task_id = %s"
        " order by 1",
        *(DAILY, run_id, PRODUCER) * 2,
    )
    assert tries == [(1, lost_worker_run["lost_host"]), (2, producer["hostname"])]
    # The killed try's log is still there, served by the lost worker's log server from its own folder.
    killed_log = json.dumps(
        api.get(f"/api/v2/dags/{DAILY}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{PRODUCER}/logs/1")
    )
    assert f"http://{lost_worker_run['lost_host']}:{platform['celery']['worker_log_port']}/log/" in killed_log
    assert "dbt build" in killed_log

    # Every page view and order that had arrived before the run is in its mart, exactly once.
    with warehouse(platform) as connection, connection.cursor() as cursor:
        for mart, key, raw in (
            ("analytics_product.fct_page_views", "event_id", "raw.events where event_type = 'page_view' and"),
            ("analytics_core.fct_orders", "order_id", "raw.orders where"),
        ):
            cursor.execute(f"select count(*), count(distinct {key}) from {mart}")
            rows, keys = cursor.fetchone()
            assert rows == keys, f"{mart}: {rows - keys} duplicated rows"
            cursor.execute(
                f"select count(*) from {raw} _loaded_at < %s and {key} not in (select {key} from {mart})",
                (lost_worker_run["start_date"],),
            )
            assert cursor.fetchone()[0] == 0, f"{mart} lost rows that had arrived before the run"


def test_the_metadata_database_shows_tasks_run_on_both_workers(lost_worker_run: dict, platform: dict[str, Any]) -> None:
    hosts = _metadata(
        platform,
        "select hostname from task_instance where dag_id = %s and hostname <> ''"
        " union select hostname from task_instance_history where dag_id = %s and hostname <> ''",
        DAILY,
        DAILY,
    )
    assert {host for (host,) in hosts} == set(WORKERS)


def test_the_dbt_docs_are_read_from_the_object_store_in_the_browser(
    api: AirflowApi, green_run: dict, lost_worker_run: dict, platform: dict[str, Any]
) -> None:
    celery = platform["celery"]
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=celery_platform.store_endpoint(celery),
        aws_access_key_id=celery["store_key"],
        aws_secret_access_key=celery["store_secret"],
        region_name="us-east-1",
    )
    listed = s3.list_objects_v2(Bucket=celery_platform.DOCS_BUCKET, Prefix=celery_platform.DOCS_PREFIX + "/")
    assert {item["Key"].rsplit("/", 1)[1] for item in listed.get("Contents", [])} == {
        "index.html",
        "manifest.json",
        "catalog.json",
    }
    # Nothing was published to a local directory: the api-server reads the store.
    assert not (Path(platform["local_dir"]) / "dbt-docs").exists()
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed: `apt-get install chromium`")
    from playwright.sync_api import expect, sync_playwright

    base = platform["url"]
    run_id = lost_worker_run["dag_run_id"]
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
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

            # The task's details name the worker it ran on.
            page.goto(f"{base}/dags/{DAILY}/runs/{urllib.parse.quote(run_id)}/tasks/{PRODUCER}/details")
            host = api.tasks(run_id)[PRODUCER]["hostname"]
            expect(page.get_by_role("row").filter(has_text="Hostname").filter(has_text=host).first).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "celery-1-task-details.png")

            page.goto(base + "/dags")
            page.get_by_role("button", name="Browse").click()
            with context.expect_page() as opened:
                page.get_by_role("menuitem", name="dbt Docs (greenery)").click()
            docs = opened.value
            docs.wait_for_load_state()
            docs.goto(docs.url.split("#")[0] + "#!/model/model.greenery.fct_orders")
            expect(docs.locator("h1").filter(has_text="fct_orders").first).to_be_visible()
            docs.screenshot(path=SCREENSHOTS / "celery-2-dbt-docs.png")
        except Exception:
            page.screenshot(path=SCREENSHOTS / "celery-failure.png")
            raise
        finally:
            browser.close()


def test_a_failing_data_test_alerts_slack_from_a_celery_worker(
    api: AirflowApi, lost_worker_run: dict, platform: dict[str, Any], slack: SlackWebhookStub
) -> None:
    with warehouse(platform) as connection, connection.cursor() as cursor:
        cursor.execute(
            "update raw.products set price = -4.5 where product_id = (select min(product_id) from raw.products)"
        )
    run = api.post(f"/api/v2/dags/{DAILY}/dagRuns", {"logical_date": None})
    finished = api.finished_run(run["dag_run_id"])
    tasks = api.tasks(run["dag_run_id"])
    assert finished["state"] == "failed"
    assert sorted(task_id for task_id, ti in tasks.items() if ti["state"] == "failed") == [PRICE_TEST_TASK]
    failed = tasks[PRICE_TEST_TASK]
    assert failed["hostname"] in WORKERS  # the alert went out from a worker, through the Slack provider
    alerts = [text for text in slack.delivered if "source_not_negative_greenery_products_price" in text]
    assert alerts and PRICE_TEST_TASK in alerts[0], slack.delivered


def test_make_up_with_the_other_executor_says_to_stop_the_running_one_first(platform: dict[str, Any]) -> None:
    again = run_module(
        "include.local_platform.local_airflow", "up", env={**platform["env"], "GREENERY_EXECUTOR": "local"}
    )
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1] == (
        "error: Airflow runs with the celery executor here: stop it with `make down`, then `make up EXECUTOR=local`."
    )
    assert set(_components(platform)) >= {"broker", "worker-1", "worker-2"}  # nothing was stopped or changed


def test_make_down_stops_the_broker_the_store_and_the_workers_too(platform: dict[str, Any]) -> None:
    stopped = run_module("include.local_platform.local_airflow", "down", env=platform["env"])
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    left = processes_of_the_platform(Path(platform["local_dir"]))
    assert left == [], f"processes of the platform still running after down: {left}"
    celery = platform["celery"]
    listening = [
        f"{address}:{port}"
        for address, port in [
            ("127.0.0.1", celery["broker_port"]),
            ("127.0.0.1", celery["store_port"]),
            *((address, celery["worker_log_port"]) for address in WORKERS),
        ]
        if socket.socket().connect_ex((address, port)) == 0
    ]
    assert listening == []
