"""Checks of the dbt health page against a run of the real platform, for the platform's end-to-end tests to call once
their daily run has ended (they start the platform; these only look at it):

    from tests.e2e.dbt_health_checks import check_run_on_the_health_page, open_run_timeline

    check_run_on_the_health_page(url, token, "greenery_daily", run_id, connect)   # HTTP only, no browser
    open_run_timeline(page, url, "greenery_daily", run_id, screenshot)           # a logged-in Playwright page

``url`` is the UI's address, ``token`` an API token of a logged-in user (``AirflowApi(url).token``), ``connect`` a
callable that returns a psycopg2 connection to the platform's warehouse. tests/health_site/test_health_browser.py
runs both against generated history.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from tests.e2e.platform_api import plain_get

PREFIX = "/greenery-health"


def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    """(status, JSON body or the Location of a redirect) of a GET, with the token when given."""
    status, headers, body = plain_get(url, {"Authorization": f"Bearer {token}"} if token else None)
    if status in (301, 302, 303, 307):
        return status, headers["Location"]
    return status, json.loads(body or b"null")


def _dbt_results(connect: Callable[[], Any], dag_id: str, run_id: str) -> dict[str, tuple[Any, Any]]:
    """What the run's dbt commands left in dbt_meta: each timed node result's (start, end), by unique id and try."""
    connection = connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "select n.unique_id, n.started_at, n.completed_at from dbt_meta.node_results n "
                "join dbt_meta.invocations i using (invocation_id) "
                "where i.dag_id = %s and i.run_id = %s and n.status <> 'skipped' and n.started_at is not null "
                "order by n.started_at",
                (dag_id, run_id),
            )
            return {f"{uid}@{start.isoformat()}": (start, end) for uid, start, end in cursor.fetchall()}
    finally:
        connection.close()


def check_run_on_the_health_page(
    url: str,
    token: str,
    dag_id: str,
    run_id: str,
    connect: Callable[[], Any],
    task_links_exist: bool = True,
) -> dict[str, Any]:
    """The run is on the dbt health page with dbt's own timings, behind the login: anonymous requests are refused;
    the run is listed with its dbt commands and a link to it; its timeline holds exactly the timed node results
    dbt_meta has for it, with a critical path through the manifest's dependencies; each node links to a task of
    the run that exists in Airflow (``task_links_exist``: asked through the REST API); the trends hold its models
    and sources. Returns the timeline as the page got it."""
    page = f"{url}{PREFIX}"
    assert _get(f"{page}/api/runs")[0] == 401
    status, location = _get(f"{page}/index.html")
    assert status == 307 and location.startswith("/auth/login?next="), (status, location)

    status, body = _get(f"{page}/api/runs?per_dag=50", token)
    assert status == 200, body
    runs = {(run["dag_id"], run["run_id"]): run for run in body["runs"]}
    assert (dag_id, run_id) in runs, f"{run_id} is not on the page: {sorted(runs)[:10]}"
    run = runs[(dag_id, run_id)]
    assert run["url"].endswith(f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"), run["url"]
    assert run["dbt_seconds"] and run["dbt_seconds"] > 0, run
    commands = {invocation["command"] for invocation in run["invocations"]}
    assert "source freshness" in commands and commands & {"build", "run"}, commands  # producer: build; local: run
    assert all(invocation["log_url"] for invocation in run["invocations"]), run["invocations"]

    status, timeline = _get(f"{page}/api/timeline?{urlencode({'dag_id': dag_id, 'run_id': run_id})}", token)
    assert status == 200, timeline
    nodes = [node for node in timeline["nodes"] if node["resource_type"] != "source freshness"]
    recorded = _dbt_results(connect, dag_id, run_id)
    assert len(nodes) == len(recorded) > 0, (len(nodes), len(recorded))
    for node in nodes:
        assert node["started_at"] <= node["completed_at"], node
        assert node["execution_seconds"] is not None, node
    assert {node["resource_type"] for node in nodes} >= {"model", "test"}
    assert timeline["has_dependencies"] and len(timeline["critical_path"]) >= 2, timeline["critical_path"]
    last = max(timeline["nodes"], key=lambda node: node["completed_at"])
    assert timeline["critical_path"][-1] == last["name"]

    run_link = run["url"]
    tasks = {node["log_url"].split("?")[0].removeprefix(f"{run_link}/tasks/") for node in timeline["nodes"]}
    assert all(task and "/" not in task for task in tasks), tasks
    if task_links_exist:
        # Each node's log link names a task of the run: in the producer mode its node task, not dbt_build.
        assert "dbt_build" not in {n["log_url"].rsplit("/", 1)[-1] for n in nodes if n["resource_type"] == "model"}
        for task in sorted(tasks):
            api = f"{url}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task}"
            assert _get(api, token)[0] == 200, f"{task} of the page's links is no task of {run_id}"

    status, trends = _get(f"{page}/api/trends?runs=30", token)
    assert status == 200, trends
    built = {node["name"] for node in nodes if node["resource_type"] == "model" and node["status"] == "success"}
    assert built <= {model["name"] for model in trends["models"]}
    assert {source["name"] for source in trends["sources"]} >= {"greenery.orders", "greenery.events"}
    return timeline


def open_run_timeline(page: Any, url: str, dag_id: str, run_id: str, screenshot: Path | None = None) -> None:
    """In a logged-in Playwright ``page``: the run's model timing draws a bar per node it shows and outlines the
    critical path named above it; then the Trends view draws its charts. ``screenshot``: where to keep the
    timeline's picture."""
    from playwright.sync_api import expect

    page.goto(f"{url}{PREFIX}/index.html#timeline/{quote(dag_id, safe='')}/{quote(run_id, safe='')}")
    page.wait_for_selector("#view-timeline[data-state='ready']")
    expect(page.locator("#timeline-summary")).to_contain_text(run_id)
    expect(page.locator("#critical-path strong")).to_contain_text(" → ")
    rows = page.locator("#timeline tbody tr").count()
    assert rows > 0 and page.locator("#timeline-chart svg .mark-rect path").count() == rows
    if screenshot is not None:
        page.screenshot(path=screenshot)
    page.goto(f"{url}{PREFIX}/index.html#trends")
    page.wait_for_selector("#view-trends[data-state='ready']")
    for chart in ("models", "sources"):
        assert page.locator(f"#{chart}-chart svg.marks").count() == 1, chart
