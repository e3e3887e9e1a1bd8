"""The dbt health page in a real browser: Airflow's api-server alone (on the session's migrated metadata database,
with the plugins folder and the simple auth manager that `make up` uses), a user who logs in through Airflow's own
login page, and Debian's chromium driven by Playwright. Each view is checked against the 90 days of generated
history it reads (tests/history/generated_history.py): the planted regression is flagged, the failing test shows
its failing-row count, the timeline marks its critical path. The screenshots (tests/e2e/screenshots/health-*.png)
are the ones in README.md and docs/dags.md.

No scheduler, no DAG parse: the page needs neither, only the api-server and the warehouse's run history.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from include import health_site
from include.local_platform.pgcluster import free_port
from tests.conftest import REPO_ROOT, warehouse_connection_json
from tests.e2e.dbt_health_checks import check_run_on_the_health_page, open_run_timeline
from tests.history import generated_history as planted

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "tests" / "e2e" / "screenshots"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed: `make browser`"),
]


@pytest.fixture(scope="module")
def api_server(airflow_db: str, generated_history, tmp_path_factory) -> Iterator[str]:
    """``airflow api-server`` (core API and UI only) on a free port; its URL. Stopped when the module ends."""
    home = tmp_path_factory.mktemp("api-server")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin"}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW_CONN_GREENERY_WAREHOUSE": warehouse_connection_json(generated_history.env),
    }
    log = home / "api-server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--apps", "core", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            assert server.poll() is None, f"the api-server exited:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, (
                f"the api-server did not answer in 2 minutes:\n{log.read_text()[-4000:]}"
            )
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)


def test_the_page_refuses_anonymous_requests_on_the_real_api_server(api_server: str) -> None:
    opener = urllib.request.build_opener(_KeepRedirects)
    for path, status in (("index.html", 307), ("api/runs", 401), ("lib/vega.min.js", 401)):
        try:
            opener.open(f"{api_server}{health_site.URL_PREFIX}/{path}", timeout=30)
            raise AssertionError(f"{path} answered without a login")
        except urllib.error.HTTPError as error:
            assert error.code == status, path
            if status == 307:
                assert error.headers["Location"].startswith("/auth/login?next="), error.headers["Location"]


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def browser_page(api_server: str):
    """A chromium page logged in to the api-server through Airflow's login form, with the console errors it logs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        context = browser.new_context(viewport={"width": 1500, "height": 1000}, timezone_id="Europe/Berlin")
        context.set_default_timeout(60_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{api_server}/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{api_server}/")
        errors.clear()  # the UI's own requests before the login are refused, as they should be
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            yield page, errors
        except Exception:
            page.screenshot(path=SCREENSHOTS / "health-failure.png", full_page=True)
            raise
        finally:
            browser.close()


def _open(page, url: str, view: str) -> float:
    """Open ``url`` afresh and wait for ``view`` to be drawn; the milliseconds from navigation to drawn."""
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_selector(f"#view-{view}[data-state='ready']")
    return float(page.evaluate("document.body.dataset.loadMs"))


def _cells(page, table: str, column: str) -> list[str]:
    headers = page.locator(f"#{table} thead th").all_inner_texts()
    index = next(i for i, text in enumerate(headers) if text.rstrip(" ↕↑↓") == column)
    return page.locator(f"#{table} tbody tr td:nth-child({index + 1})").all_inner_texts()


def test_the_browse_menu_opens_the_page_in_the_airflow_ui(browser_page, api_server: str) -> None:
    page, _ = browser_page
    page.goto(f"{api_server}/dags")
    page.get_by_role("button", name="Browse").click()
    with page.context.expect_page() as opened:
        page.get_by_role("menuitem", name="dbt health (greenery)").click()
    health = opened.value
    health.wait_for_selector("#view-runs[data-state='ready']")
    assert health.url == f"{api_server}/greenery-health/index.html"
    health.close()


def test_runs_show_each_run_with_its_failed_nodes_linked_to_their_task_logs(
    browser_page, api_server: str, generated_history
) -> None:
    from playwright.sync_api import expect

    page, errors = browser_page
    history = generated_history.history
    load_ms = _open(page, f"{api_server}/greenery-health/index.html", "runs")

    runs = page.locator("#runs tbody tr")
    expect(runs).to_have_count(60)  # the last 30 of each DAG
    newest = runs.filter(has_text=history.newest_daily_run)
    expect(newest.locator(".status").first).to_have_text("failed")
    run_url = f"/dags/greenery_daily/runs/{quote(history.newest_daily_run, safe='')}"
    expect(newest.get_by_role("link", name=history.newest_daily_run)).to_have_attribute("href", run_url)
    failing = newest.get_by_role("link", name=planted.FAILING_TEST)
    expect(failing).to_have_attribute("href", f"{run_url}/tasks/models.fct_orders.test")
    expect(newest).to_contain_text(f"{planted.FAILING_ROWS} failing rows")
    broken = runs.filter(has_text=history.broken_run)
    broken_url = f"/dags/greenery_daily/runs/{quote(history.broken_run, safe='')}"
    expect(broken.get_by_role("link", name=planted.BROKEN_MODEL)).to_have_attribute(
        "href", f"{broken_url}/tasks/models.product_conversion.run?try_number=3"
    )
    expect(runs.filter(has_text=history.healed_run).locator(".status").first).to_have_text("success")
    assert page.locator("#runs-chart svg.marks").count() == 1

    page.screenshot(path=SCREENSHOTS / "health-runs.png")

    # Sortable: the newest first, then by dbt's time, longest first, then shortest first.
    started = _cells(page, "runs", "Run, dbt started")
    assert history.hourly_runs[-1] in started[0] and history.newest_daily_run in "".join(started[:25])
    page.locator("#runs thead").get_by_role("button", name="dbt time").click()
    expect(page.locator("#runs thead th").nth(2)).to_have_attribute("aria-sort", "descending")
    expect(page.locator("#runs thead th").nth(1)).to_have_attribute("aria-sort", "none")
    page.locator("#runs thead").get_by_role("button", name="dbt time").click()
    expect(page.locator("#runs thead th").nth(2)).to_have_attribute("aria-sort", "ascending")
    seconds = [_as_seconds(text) for text in _cells(page, "runs", "dbt time")]
    assert seconds == sorted(seconds) and seconds[0] < seconds[-1]
    assert errors == []
    print(f"\nruns view drawn {load_ms:.0f} ms after navigation (90 days of history)")


def _as_seconds(text: str) -> float:
    if "min" in text:
        minutes, _, rest = text.partition(" min ")
        return int(minutes) * 60 + float(rest.split()[0])
    return float(text.split()[0])


def test_the_model_timing_of_the_newest_daily_run_marks_its_critical_path(
    browser_page, api_server: str, generated_history
) -> None:
    from playwright.sync_api import expect

    page, errors = browser_page
    history = generated_history.history
    load_ms = _open(page, f"{api_server}/greenery-health/index.html#timeline", "timeline")

    summary = page.locator("#timeline-summary")
    expect(summary).to_contain_text(history.newest_daily_run)
    expect(page.locator("#critical-path strong")).to_contain_text(planted.REGRESSION_MODEL)
    names = _cells(page, "timeline", "Node")
    critical = dict(zip(names, _cells(page, "timeline", "Critical path"), strict=True))
    assert critical[planted.REGRESSION_MODEL] == "yes"
    assert set(page.locator("#critical-path strong").inner_text().split(" → ")) == {
        name for name, mark in critical.items() if mark == "yes"
    }
    # Tests that failed or warned are there; those that passed (a hundred of them) only when asked for.
    assert {planted.FAILING_TEST, planted.WARNING_TEST} <= set(names)
    assert "unique_fct_orders_order_id" not in names
    bars = page.locator("#timeline-chart svg .mark-rect path")
    assert bars.count() == len(names)
    # In UTC, as the table and Airflow's UI show it, although this browser's clock is in Berlin.
    labels = page.locator("#timeline-chart svg .role-axis-label text").all_text_contents()
    hours = {label[:2] for label in labels if re.fullmatch(r"\d\d:\d\d:\d\d", label)}
    assert f"{planted.DAILY_HOUR:02d}" in hours and f"{planted.DAILY_HOUR + 1:02d}" not in hours, hours
    page.screenshot(path=SCREENSHOTS / "health-timeline.png")

    failing = dict(zip(names, _cells(page, "timeline", "Failing rows"), strict=True))
    assert failing[planted.FAILING_TEST] == str(planted.FAILING_ROWS)

    page.locator("#timeline-tests").check()
    page.wait_for_selector("#view-timeline[data-state='ready']")
    assert "unique_fct_orders_order_id" in _cells(page, "timeline", "Node")

    # Another run from the list: the run whose model failed on every try shows each try.
    page.locator("#timeline-run").select_option(label=f"greenery_daily · {history.broken_run} (failed)")
    expect(page.locator("#timeline-summary")).to_contain_text(history.broken_run)
    page.wait_for_selector("#view-timeline[data-state='ready']")
    assert _cells(page, "timeline", "Node").count(planted.BROKEN_MODEL) == 3
    assert errors == []
    print(f"\ntimeline view drawn {load_ms:.0f} ms after navigation")


def test_trends_flag_the_regression_the_failing_test_and_the_stale_source(browser_page, api_server: str) -> None:
    from playwright.sync_api import expect

    page, errors = browser_page
    load_ms = _open(page, f"{api_server}/greenery-health/index.html#trends", "trends")

    expect(page.locator("#models-lead .flag")).to_have_text(planted.REGRESSION_MODEL)
    flags = dict(zip(_cells(page, "models", "Model"), _cells(page, "models", "Regression"), strict=True))
    assert {name for name, flag in flags.items() if flag} == {planted.REGRESSION_MODEL}
    assert len(flags) == 23  # 21 models and 2 snapshots
    assert page.locator("#models-chart svg.marks").count() == 1
    assert page.locator("#models-chart svg.marks").get_by_text(f"{planted.REGRESSION_MODEL} (regression)").count() == 1

    failing = page.locator("#tests tbody tr").first
    expect(failing).to_contain_text(planted.FAILING_TEST)
    rows = dict(zip(_cells(page, "tests", "Test"), _cells(page, "tests", "Failing rows (newest)"), strict=True))
    assert rows[planted.FAILING_TEST] == str(planted.FAILING_ROWS)
    assert set(rows) == {planted.FAILING_TEST, planted.WARNING_TEST}  # the others passed every time: left out
    # The heatmap writes the failing rows in the failed cell.
    assert (
        page.locator("#tests-chart svg .mark-text text").get_by_text(str(planted.FAILING_ROWS), exact=True).count() == 1
    )

    stale = dict(zip(_cells(page, "sources", "Source table"), _cells(page, "sources", "Stale checks"), strict=True))
    assert stale == {planted.STALE_SOURCE: "6", "greenery.orders": "0", "greenery.users": "0"}
    assert page.locator("#sources-chart svg.marks").count() == 1
    page.screenshot(path=SCREENSHOTS / "health-trends.png", full_page=True)

    page.locator("#trends-all-tests").check()
    page.wait_for_selector("#view-trends[data-state='ready']")
    assert page.locator("#tests tbody tr").count() > 100

    page.locator("#trends-runs").select_option("10")
    page.wait_for_selector("#view-trends[data-state='ready']")
    expect(page.locator("#models tbody tr").first.locator("td").nth(2)).to_have_text("10")
    assert errors == []
    print(f"\ntrends view drawn {load_ms:.0f} ms after navigation")


def test_the_checks_of_a_real_platforms_run_pass_on_the_generated_history(
    browser_page, api_server: str, generated_history
) -> None:
    """tests/e2e/dbt_health_checks.py, which the platform's end-to-end tests run after a real daily run, here on the
    generated newest run (its node tasks are no Airflow tasks here: the metadata database has no runs)."""
    page, errors = browser_page
    history = generated_history.history
    token = page.evaluate("document.cookie").split("_token=")[1].split(";")[0]

    timeline = check_run_on_the_health_page(
        api_server, token, "greenery_daily", history.newest_daily_run, generated_history.connect, task_links_exist=False
    )
    assert planted.REGRESSION_MODEL in timeline["critical_path"]
    open_run_timeline(page, api_server, "greenery_daily", history.newest_daily_run)
    assert errors == []
