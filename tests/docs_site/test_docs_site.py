"""The dbt docs site asks Airflow's auth manager before it serves a file: the plugin as Airflow's plugin loader
loads it from plugins/, mounted the way the api-server mounts plugin apps, with real JWTs signed by the simple
auth manager (the one `make up` runs)
and checked against a migrated metadata database. The whole api-server with a browser: tests/e2e/test_platform.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.api_fastapi.app import create_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi import FastAPI
from fastapi.testclient import TestClient

from include import docs_site, settings
from include.dbt_tasks.docs import DOCS_FILES
from tests.conftest import ObjectStore, loaded_plugin

MANIFEST = {"metadata": {"project_name": "greenery"}, "nodes": {}}


@pytest.fixture(scope="module")
def plugin():
    return loaded_plugin("greenery_docs")


@pytest.fixture
def client(plugin, airflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The api-server's app with the plugin mounted; a token is checked against the metadata database's list of
    revoked tokens, hence ``airflow_db``."""
    monkeypatch.setattr(settings, "DBT_DOCS_DIR", tmp_path)
    (tmp_path / "index.html").write_text("<html><head></head><body>dbt docs</body></html>")
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "catalog.json").write_text("{}")
    create_auth_manager()  # the api-server's, which Airflow's auth dependency asks
    api_server = FastAPI()
    for app in plugin.fastapi_apps:
        api_server.mount(app["url_prefix"], app["app"])
    return TestClient(api_server, base_url="http://127.0.0.1:8080", follow_redirects=False)


def _token(role: str | None) -> str:
    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="someone", role=role))


def _url(name: str) -> str:
    return f"{docs_site.URL_PREFIX}/{name}"


def test_the_plugin_adds_the_docs_to_the_browse_menu(plugin) -> None:
    assert plugin.external_views == [
        {"name": "dbt Docs (greenery)", "category": "Browse", "href": "/greenery-docs/index.html"}
    ]


@pytest.mark.parametrize("name", ["manifest.json", "catalog.json"])
def test_without_a_token_the_docs_files_answer_401(client: TestClient, name: str) -> None:
    response = client.get(_url(name))
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}


def test_without_a_token_the_docs_page_sends_the_browser_to_the_login(client: TestClient) -> None:
    response = client.get(_url("index.html"))
    assert response.status_code == 307
    assert response.headers["location"] == (
        "/auth/login?next=http%3A%2F%2F127.0.0.1%3A8080%2Fgreenery-docs%2Findex.html"
    )


def test_a_forged_or_roleless_token_is_refused(client: TestClient) -> None:
    forged = client.get(_url("manifest.json"), cookies={COOKIE_NAME_JWT_TOKEN: _token("admin") + "x"})
    assert forged.status_code == 403
    roleless = client.get(_url("manifest.json"), headers={"Authorization": f"Bearer {_token(None)}"})
    assert roleless.status_code == 403
    assert "greenery" not in forged.text + roleless.text


def test_the_uis_cookie_or_an_api_token_opens_every_file(client: TestClient) -> None:
    client.cookies.set(COOKIE_NAME_JWT_TOKEN, _token("viewer"))
    for name in DOCS_FILES:
        response = client.get(_url(name))
        assert response.status_code == 200, (name, response.text)
        assert response.headers["content-security-policy"] == "frame-ancestors 'self'"
    assert client.get(_url("manifest.json")).json() == MANIFEST
    client.cookies.clear()

    response = client.get(_url("manifest.json"), headers={"Authorization": f"Bearer {_token('viewer')}"})
    assert response.json() == MANIFEST


def test_only_the_docs_files_are_served_and_a_missing_site_says_why(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {_token('admin')}"}
    for other in ("run_results.json", "..%2Fairflow.cfg", ".index.html.tmp"):
        assert client.get(_url(other), headers=headers).status_code == 404
    (settings.DBT_DOCS_DIR / "catalog.json").unlink()
    missing = client.get(_url("catalog.json"), headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": docs_site.NOT_PUBLISHED}


@pytest.fixture
def store_client(client: TestClient, object_store: ObjectStore, docs_in_the_store: str) -> TestClient:
    """The same app with GREENERY_DBT_DOCS_URL set: the site is in the object store, none of it on this disk."""
    for path in settings.DBT_DOCS_DIR.iterdir():
        path.unlink()
    s3 = object_store.client()
    s3.put_object(Bucket=object_store.bucket, Key=f"{docs_in_the_store}/index.html", Body=b"<html>store docs</html>")
    s3.put_object(Bucket=object_store.bucket, Key=f"{docs_in_the_store}/manifest.json", Body=json.dumps(MANIFEST))
    return client


def test_with_a_store_the_docs_come_from_it_behind_the_same_login(store_client: TestClient) -> None:
    assert store_client.get(_url("manifest.json")).status_code == 401
    headers = {"Authorization": f"Bearer {_token('viewer')}"}

    page = store_client.get(_url("index.html"), headers=headers)
    assert page.status_code == 200
    assert page.text == "<html>store docs</html>"
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == "frame-ancestors 'self'"
    assert store_client.get(_url("manifest.json"), headers=headers).json() == MANIFEST

    # A browser that has the page asks again after each publish and gets a 304 while it is unchanged.
    again = store_client.get(_url("index.html"), headers={**headers, "If-None-Match": page.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")

    missing = store_client.get(_url("catalog.json"), headers=headers)
    assert (missing.status_code, missing.json()) == (404, {"detail": docs_site.NOT_PUBLISHED})


def test_a_store_that_cannot_be_read_answers_503_with_what_to_check(
    store_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENERY_DBT_DOCS_URL", "s3://no-such-bucket/dbt-docs")
    response = store_client.get(_url("index.html"), headers={"Authorization": f"Bearer {_token('viewer')}"})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail.startswith("The dbt docs cannot be shown: the dbt docs store s3://no-such-bucket/dbt-docs failed")
    assert "its bucket no-such-bucket does not exist" in detail and "'greenery_test_store'" in detail
