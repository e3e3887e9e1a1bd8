"""The dbt health page behind Airflow's login, under Browse > "dbt health (greenery)": runs, dbt's own model timing of
a run, and trends of models, tests and sources, read from the warehouse's run history (``include/history/health.py``
and ``trends.py``) through the connection the DAGs use, so it shows the same on every executor.
``plugins/greenery_health.py`` mounts it in the api-server (built on the first request, as the docs site is).

It is served as the dbt docs are (``include/docs_site.py``): every file and every answer passes Airflow's own auth
dependency (the UI's ``_token`` cookie or an ``Authorization: Bearer`` token). Without one, the page sends the
browser to Airflow's login and the rest answers 401; the data also needs the right to read DAG runs. The charts
are drawn in the browser by Vega-Lite, which ``make chart-libs`` installs from the npm registry (package-lock.json)
and this app serves from ``node_modules``: the page needs no internet.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import psycopg2

from include import settings
from include.history import health, trends
from include.history.store import warehouse_connection
from include.history.timeline import dependencies

if TYPE_CHECKING:
    from fastapi import FastAPI

URL_PREFIX = "/greenery-health"
MENU_NAME = "dbt health (greenery)"
INDEX = "index.html"
PAGE_DIR = Path(__file__).resolve().parent / "health_page"
PAGE_FILES = {"health.js": "text/javascript", "health.css": "text/css"}
# The UMD builds of the npm packages package.json names; the page loads them in this order.
CHART_LIBRARIES = {
    "vega.min.js": "vega/build/vega.min.js",
    "vega-lite.min.js": "vega-lite/build/vega-lite.min.js",
    "vega-embed.min.js": "vega-embed/build/vega-embed.min.js",
}
NO_CHART_LIBRARIES = (
    "The chart libraries are not installed: run `make chart-libs` (npm ci from package-lock.json) where the "
    "api-server runs; the tables work without them."
)
# The timeline opens on the newest run of the daily DAG, the one that builds every model.
TIMELINE_DAG = "greenery_daily"
# Vega-Embed runs with ast=true (no eval), so scripts come from this app only; Vega-Embed adds its own styles.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; frame-ancestors 'self'",
    "Cache-Control": "private, no-cache",
}


def _root_path() -> str:
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="")).path.rstrip("/")


def menu_entry() -> dict[str, str]:
    """The Browse menu entry: an external view, as the dbt docs have (the page opens in a new tab)."""
    return {"name": MENU_NAME, "category": "Browse", "href": f"{_root_path()}{URL_PREFIX}/{INDEX}"}


def run_url(root: str, dag_id: str, run_id: str) -> str:
    """The Airflow 3 UI's page of a DAG run (its route ``dags/:dagId/runs/:runId``)."""
    return f"{root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_log_url(root: str, dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> str:
    """The UI's task instance page, whose first tab is the log (``.../tasks/:taskId``, ``?try_number=``)."""
    url = f"{run_url(root, dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    return f"{url}?try_number={try_number}" if try_number else url


class _Dependencies:
    """What each dbt node waits for, from the manifest the DAGs render from; read again when it changes."""

    def __init__(self) -> None:
        self._key: tuple[Path, float] | None = None
        self._value: dict[str, frozenset[str]] = {}

    def get(self) -> dict[str, frozenset[str]]:
        path = Path(settings.DBT_MANIFEST_PATH)
        try:
            key = (path, path.stat().st_mtime)
            if key != self._key:
                self._value, self._key = dependencies(json.loads(path.read_text())), key
        except (OSError, ValueError):
            return {}
        return self._value


def _json_value(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _links(payload: Any, root: str) -> Any:
    """Add the Airflow UI links of runs and task logs to what ``health`` returned."""
    for run in payload:
        run["url"] = run_url(root, run["dag_id"], run["run_id"])
        for item in [*run["invocations"], *run["failed"], *run["warned"]]:
            if item["task_id"]:
                item["log_url"] = task_log_url(root, run["dag_id"], run["run_id"], item["task_id"], item["try_number"])
    return payload


def create_app() -> FastAPI:
    """The page at ``/index.html``, its files, the chart libraries at ``/lib/<name>`` and its data at ``/api/...``,
    for a user Airflow's auth manager lets see the website (and, for the data, read DAG runs)."""
    # Imported here, not at the top, for the reason docs_site.create_app gives: only the api-server builds it.
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag, requires_access_view
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.middleware.gzip import GZipMiddleware
    from fastapi.responses import FileResponse, RedirectResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="greenery dbt health", docs_url=None, redoc_url=None, openapi_url=None)
    # Vega is half a megabyte, the trends' JSON a few hundred kilobytes: about a sixth of it goes over the wire.
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    website = [Depends(requires_access_view(AccessView.WEBSITE))]
    data = [*website, Depends(requires_access_dag("GET", DagAccessEntity.RUN))]
    manifest = _Dependencies()

    @app.exception_handler(StarletteHTTPException)
    async def login_first(request: Request, error: StarletteHTTPException) -> Response:
        # As for the dbt docs: the page goes to the login and back; its files and data keep the plain 401.
        if error.status_code == 401 and request.url.path.endswith(f"/{INDEX}"):
            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)))
        return await http_exception_handler(request, error)

    @app.get(f"/{INDEX}", dependencies=website)
    def page() -> Response:
        return FileResponse(PAGE_DIR / INDEX, media_type="text/html", headers=HEADERS)

    @app.get("/static/{name}", dependencies=website)
    def page_file(name: str) -> Response:
        if name not in PAGE_FILES:
            raise HTTPException(status_code=404, detail="Not Found")
        return FileResponse(PAGE_DIR / name, media_type=PAGE_FILES[name], headers=HEADERS)

    @app.get("/lib/{name}", dependencies=website)
    def chart_library(name: str) -> Response:
        if name not in CHART_LIBRARIES:
            raise HTTPException(status_code=404, detail="Not Found")
        path = settings.NODE_MODULES_DIR / CHART_LIBRARIES[name]
        if not path.is_file():
            raise HTTPException(status_code=503, detail=NO_CHART_LIBRARIES)
        return FileResponse(path, media_type="text/javascript", headers=HEADERS)

    def _read(reader: Any) -> Response:
        """``reader(connection)`` on a new connection to the warehouse, as JSON; what keeps it from the history
        answers 503 with what to check."""
        connection = None
        try:
            connection = warehouse_connection()
            body = reader(connection)
        except psycopg2.errors.UndefinedTable:
            body = reader(None)  # no dbt command recorded yet: the history's tables do not exist
        except psycopg2.Error as error:
            detail = (
                f"The dbt run history cannot be read from the warehouse ({type(error).__name__}: "
                f"{str(error).strip()}): check the connection {settings.WAREHOUSE_CONN_ID!r}."
            )
            raise HTTPException(status_code=503, detail=detail) from error
        except Exception as error:  # the connection is missing or malformed: Airflow's and the SDK's own kinds
            detail = (
                f"The dbt run history cannot be read: {error}. Check the connection {settings.WAREHOUSE_CONN_ID!r}."
            )
            raise HTTPException(status_code=503, detail=detail) from error
        finally:
            if connection is not None:
                connection.close()
        # json.dumps with ISO timestamps: FastAPI's jsonable_encoder takes longer than the queries on 90 days.
        content = json.dumps(body, default=_json_value, separators=(",", ":"))
        return Response(content, media_type="application/json", headers=HEADERS)

    @app.get("/api/runs", dependencies=data)
    def runs_data(per_dag: int = Query(default=30, ge=1, le=500)) -> Response:
        root = _root_path()
        return _read(
            lambda connection: {
                "retention_days": settings.HISTORY_RETENTION_DAYS.value(),
                "runs": _links(health.recent_runs(connection, per_dag) if connection else [], root),
            }
        )

    @app.get("/api/timeline", dependencies=data)
    def timeline_data(dag_id: str = Query(default=TIMELINE_DAG), run_id: str | None = Query(default=None)) -> Response:
        root = _root_path()

        def read(connection: Any) -> dict[str, Any]:
            chosen = run_id or health.latest_run(connection, dag_id) if connection else None
            found = health.run_timeline(connection, dag_id, chosen, manifest.get()) if chosen else None
            if found is None:
                return {"dag_id": dag_id, "run_id": chosen, "nodes": []}
            found["url"] = run_url(root, dag_id, found["run_id"])
            for node in found["nodes"]:
                if node["task_id"]:
                    node["log_url"] = task_log_url(root, dag_id, found["run_id"], node["task_id"], node["try_number"])
            return found

        return _read(read)

    @app.get("/api/trends", dependencies=data)
    def trends_data(runs: int = Query(default=30, ge=2, le=500)) -> Response:
        return _read(
            lambda connection: {
                "runs": runs,
                "regression_factor": trends.REGRESSION_FACTOR,
                "regression_min_seconds": trends.REGRESSION_MIN_SECONDS,
                "models": trends.model_trends(connection, runs) if connection else [],
                "tests": trends.test_trends(connection, runs) if connection else [],
                "sources": trends.freshness_trends(connection, runs) if connection else [],
            }
        )

    return app
