"""The dbt health page asks Airflow's auth manager before it answers anything: the plugin as Airflow's plugin loader
loads it, mounted as the api-server mounts plugin apps, with real JWTs of the simple auth manager, reading 90 days of
generated history from a real PostgreSQL through the warehouse connection. In a real browser: test_health_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from airflow.api_fastapi.app import create_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi import FastAPI
from fastapi.testclient import TestClient

from include import health_site, settings
from tests.conftest import loaded_plugin, warehouse_connection_json
from tests.history import generated_history as planted

PREFIX = health_site.URL_PREFIX


@pytest.fixture(scope="module")
def plugin():
    return loaded_plugin("greenery_health")


@pytest.fixture
def client(plugin, airflow_db: str, generated_history, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", warehouse_connection_json(generated_history.env))
    create_auth_manager()
    api_server = FastAPI()
    for app in plugin.fastapi_apps:
        api_server.mount(app["url_prefix"], app["app"])
    return TestClient(api_server, base_url="http://127.0.0.1:8080", follow_redirects=False)


def _token(role: str | None) -> str:
    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="someone", role=role))


def _viewer() -> dict[str, str]:
    return {"Authorization": f"Bearer {_token('viewer')}"}


def test_the_plugin_adds_the_page_to_the_browse_menu(plugin) -> None:
    assert plugin.external_views == [
        {"name": "dbt health (greenery)", "category": "Browse", "href": "/greenery-health/index.html"}
    ]
    assert [app["url_prefix"] for app in plugin.fastapi_apps] == [PREFIX]
    assert repr(plugin.fastapi_apps[0]["app"]) == "include.health_site.create_app()"


@pytest.mark.parametrize(
    "path", ["api/runs", "api/timeline", "api/trends", "static/health.js", "lib/vega.min.js", "static/health.css"]
)
def test_without_a_token_everything_but_the_page_answers_401(client: TestClient, path: str) -> None:
    response = client.get(f"{PREFIX}/{path}")
    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})


def test_without_a_token_the_page_sends_the_browser_to_the_login(client: TestClient) -> None:
    response = client.get(f"{PREFIX}/index.html")
    assert response.status_code == 307
    assert (
        response.headers["location"] == "/auth/login?next=http%3A%2F%2F127.0.0.1%3A8080%2Fgreenery-health%2Findex.html"
    )


def test_a_forged_or_roleless_token_is_refused(client: TestClient) -> None:
    forged = client.get(f"{PREFIX}/api/runs", cookies={COOKIE_NAME_JWT_TOKEN: _token("admin") + "x"})
    roleless = client.get(f"{PREFIX}/api/runs", headers={"Authorization": f"Bearer {_token(None)}"})
    assert (forged.status_code, roleless.status_code) == (403, 403)
    assert "greenery" not in forged.text + roleless.text


def test_the_uis_cookie_opens_the_page_its_files_and_the_chart_libraries(client: TestClient) -> None:
    client.cookies.set(COOKIE_NAME_JWT_TOKEN, _token("viewer"))
    page = client.get(f"{PREFIX}/index.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self';" in page.headers["content-security-policy"]  # no CDN, no eval
    for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js"):
        assert f'src="lib/{name}"' in page.text
        library = client.get(f"{PREFIX}/lib/{name}")
        assert library.status_code == 200, library.text[:300]
        assert library.headers["content-type"].startswith("text/javascript")
        assert library.headers["content-encoding"] == "gzip"  # half a megabyte of Vega, a sixth over the wire
    assert client.get(f"{PREFIX}/static/health.js").text.startswith("// The dbt health page")
    for other in ("lib/vega.js", "static/..%2F..%2Fsettings.py", "static/index.html", "lib/package.json"):
        assert client.get(f"{PREFIX}/{other}").status_code == 404, other


def test_without_the_chart_libraries_the_page_says_how_to_install_them(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "NODE_MODULES_DIR", tmp_path)
    response = client.get(f"{PREFIX}/lib/vega.min.js", headers=_viewer())
    assert (response.status_code, response.json()) == (503, {"detail": health_site.NO_CHART_LIBRARIES})
    assert "make chart-libs" in health_site.NO_CHART_LIBRARIES


def test_runs_link_to_the_airflow_run_and_each_failed_nodes_task_log(client: TestClient, generated_history) -> None:
    history = generated_history.history
    response = client.get(f"{PREFIX}/api/runs?per_dag=5", headers=_viewer())
    assert response.status_code == 200
    body = response.json()
    assert body["retention_days"] == 90
    runs = {run["run_id"]: run for run in body["runs"]}
    assert len(runs) == 10

    newest = runs[history.newest_daily_run]
    run_url = f"/dags/greenery_daily/runs/{quote(history.newest_daily_run, safe='')}"
    assert newest["url"] == run_url
    assert "%3A" in run_url and "%2B00%3A00" in run_url  # the run id's ':' and '+' are escaped
    [failed] = newest["failed"]
    assert (failed["name"], failed["failures"]) == (planted.FAILING_TEST, planted.FAILING_ROWS)
    assert failed["log_url"] == f"{run_url}/tasks/models.fct_orders.test"
    assert [i["log_url"] for i in newest["invocations"]] == [f"{run_url}/tasks/dbt_build?try_number=1"] * 3


def test_the_timeline_defaults_to_the_newest_daily_run(client: TestClient, generated_history) -> None:
    history = generated_history.history
    body = client.get(f"{PREFIX}/api/timeline", headers=_viewer()).json()
    assert body["run_id"] == history.newest_daily_run
    assert body["has_dependencies"] is True  # the manifest of the DAGs is there: a critical path
    assert planted.REGRESSION_MODEL in body["critical_path"]
    slow = next(node for node in body["nodes"] if node["name"] == planted.REGRESSION_MODEL)
    assert slow["critical"] is True
    assert slow["log_url"].endswith("/tasks/models.fct_orders.run")

    broken = client.get(
        f"{PREFIX}/api/timeline", params={"dag_id": "greenery_daily", "run_id": history.broken_run}, headers=_viewer()
    ).json()
    retries = [node for node in broken["nodes"] if node["name"] == planted.BROKEN_MODEL]
    assert [(node["status"], node["log_url"].rsplit("/", 1)[-1]) for node in retries] == [
        ("error", "models.product_conversion.run"),
        ("error", "models.product_conversion.run?try_number=2"),
        ("error", "models.product_conversion.run?try_number=3"),
    ]
    unknown = client.get(f"{PREFIX}/api/timeline", params={"run_id": "manual__none"}, headers=_viewer()).json()
    assert unknown == {"dag_id": "greenery_daily", "run_id": "manual__none", "nodes": []}


def test_trends_flag_the_regression_and_show_the_failing_rows(client: TestClient) -> None:
    body = client.get(f"{PREFIX}/api/trends?runs=30", headers=_viewer()).json()
    assert [model["name"] for model in body["models"] if model["regression"]] == [planted.REGRESSION_MODEL]
    assert (body["tests"][0]["name"], body["tests"][0]["last_failures"]) == (planted.FAILING_TEST, planted.FAILING_ROWS)
    assert {source["name"] for source in body["sources"]} == set(planted.FRESHNESS)
    assert client.get(f"{PREFIX}/api/trends?runs=1", headers=_viewer()).status_code == 422


def test_links_keep_the_uis_base_path(client: TestClient, generated_history, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/team-a/")
    body = client.get(f"{PREFIX}/api/runs?per_dag=1", headers=_viewer()).json()
    assert all(run["url"].startswith("/team-a/dags/") for run in body["runs"])
    assert health_site.menu_entry()["href"] == "/team-a/greenery-health/index.html"


def test_a_warehouse_without_history_shows_nothing_yet(client: TestClient, fresh_database, monkeypatch) -> None:
    _, env = fresh_database("no_history")
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", warehouse_connection_json(env))
    assert client.get(f"{PREFIX}/api/runs", headers=_viewer()).json() == {"retention_days": 90, "runs": []}
    timeline = client.get(f"{PREFIX}/api/timeline", headers=_viewer()).json()
    assert timeline == {"dag_id": "greenery_daily", "run_id": None, "nodes": []}
    trends = client.get(f"{PREFIX}/api/trends", headers=_viewer()).json()
    assert (trends["models"], trends["tests"], trends["sources"]) == ([], [], [])


def test_a_warehouse_that_cannot_be_read_answers_503_with_what_to_check(
    client: TestClient, pg_cluster, monkeypatch
) -> None:
    connection = {"conn_type": "postgres", "host": "127.0.0.1", "port": pg_cluster.port, "login": "nobody"}
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", json.dumps({**connection, "schema": "nowhere"}))
    response = client.get(f"{PREFIX}/api/runs", headers=_viewer())
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail.startswith("The dbt run history cannot be read from the warehouse (OperationalError: ")
    assert detail.endswith("check the connection 'greenery_warehouse'.")

    monkeypatch.delenv("AIRFLOW_CONN_GREENERY_WAREHOUSE")
    missing = client.get(f"{PREFIX}/api/runs", headers=_viewer())
    assert missing.status_code == 503
    assert "greenery_warehouse" in missing.json()["detail"]
