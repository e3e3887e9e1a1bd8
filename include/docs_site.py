"""The dbt docs behind Airflow's login: the site ``docs_generate`` publishes to ``include.settings.DBT_DOCS_DIR``, or
to the object store of ``GREENERY_DBT_DOCS_URL`` when it is set (``include/dbt_tasks/docs.py``), served by the
api-server under Browse > "dbt Docs (greenery)". From a store the api-server reads the files the worker wrote, with
no disk shared between them.

Cosmos' Airflow 3 plugin serves these files to anyone who can reach the api-server: its routes have no auth
dependency. This app puts Airflow's own one in front of every file (``requires_access_view``, which reads the
UI's ``_token`` cookie or an ``Authorization: Bearer`` token), so the docs need what the rest of the UI needs.
Without a token, the page sends the browser to Airflow's login and the JSON files answer 401; a user the auth
manager does not let see the website gets 403. ``plugins/greenery_docs.py`` registers it with Airflow.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from include import settings
from include.dbt_tasks.docs import DOCS_FILES, describe_store_error, docs_store

if TYPE_CHECKING:
    from fastapi import FastAPI

URL_PREFIX = "/greenery-docs"
MENU_NAME = "dbt Docs (greenery)"
INDEX = "index.html"
NOT_PUBLISHED = "The dbt docs are not published yet: they appear once a greenery_daily run's docs_generate succeeds."
# Only Airflow's own pages may frame the docs (as with Cosmos' plugin); no shared cache keeps a copy of them, and
# a browser asks again after each publish (the answer is a 304 when nothing changed).
HEADERS = {"Content-Security-Policy": "frame-ancestors 'self'", "Cache-Control": "private, no-cache"}


def menu_entry() -> dict[str, str]:
    """The Browse menu entry: an external view, as Cosmos' plugin adds one (the docs open in a new tab)."""
    from airflow.configuration import conf

    root_path = urlsplit(conf.get("api", "base_url", fallback="")).path.rstrip("/")
    return {"name": MENU_NAME, "category": "Browse", "href": f"{root_path}{URL_PREFIX}/{INDEX}"}


def create_app() -> FastAPI:
    """The site: each of ``DOCS_FILES`` at ``/<name>``, for a user Airflow's auth manager lets see the website."""
    # Imported here, not at the top: Airflow imports plugins in every process (scheduler, dag-processor, each
    # task), and Airflow's API security module takes seconds to import; only the api-server builds this app,
    # and it has these modules loaded already.
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view
    from fastapi import Depends, FastAPI, Header, HTTPException, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import FileResponse, RedirectResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="greenery dbt docs", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def login_first(request: Request, error: StarletteHTTPException) -> Response:
        # A browser opening the page without a valid token (never logged in, or the token expired) goes to the
        # login page and comes back; the JSON files the page fetches keep the plain 401.
        if error.status_code == 401 and request.url.path.endswith(f"/{INDEX}"):
            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)))
        return await http_exception_handler(request, error)

    @app.get("/{name}", dependencies=[Depends(requires_access_view(AccessView.WEBSITE))])
    def docs_file(name: str, if_none_match: str | None = Header(default=None)) -> Response:
        if name not in DOCS_FILES:
            raise HTTPException(status_code=404, detail="Not Found")
        store = docs_store()
        if store is not None:
            return _from_store(store / name, if_none_match or "")
        path = settings.DBT_DOCS_DIR / name
        if not path.is_file():
            raise HTTPException(status_code=404, detail=NOT_PUBLISHED)
        return FileResponse(path, headers=HEADERS)

    def _from_store(path: Any, if_none_match: str) -> Response:
        """A file of the docs store, with an ETag of its content: a browser that has it gets a 304."""
        try:
            try:
                content = path.read_bytes()
            except FileNotFoundError as missing:
                if path.fs.exists(path.bucket):
                    raise HTTPException(status_code=404, detail=NOT_PUBLISHED) from None
                raise FileNotFoundError(f"its bucket {path.bucket} does not exist") from missing
        except HTTPException:
            raise
        except Exception as error:  # s3fs, botocore and the provider each raise their own kinds
            detail = f"The dbt docs cannot be shown: {describe_store_error(error)}"
            raise HTTPException(status_code=503, detail=detail) from error
        etag = f'"{hashlib.md5(content, usedforsecurity=False).hexdigest()}"'
        headers = {**HEADERS, "ETag": etag}
        if etag in if_none_match:
            return Response(status_code=304, headers=headers)
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(content, media_type=media_type, headers=headers)

    return app


class BuiltOnFirstRequest:
    """An ASGI app that builds ``factory()`` (default: ``create_app``) when the api-server first calls it, so that
    loading the plugin costs the other Airflow processes nothing (see ``create_app``)."""

    def __init__(self, factory: Callable[[], Any] | None = None) -> None:
        self._factory = factory or create_app
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = self._factory()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:  # what Browse > Plugins shows for the app
        return f"{self._factory.__module__}.{self._factory.__name__}()"
