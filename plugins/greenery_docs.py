"""The dbt docs of greenery under Browse > "dbt Docs (greenery)", behind Airflow's login (include/docs_site.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from include import docs_site


class GreeneryDocsPlugin(AirflowPlugin):
    name = "greenery_docs"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"name": "greenery_docs", "app": docs_site.BuiltOnFirstRequest(), "url_prefix": docs_site.URL_PREFIX}
    ]
    external_views: ClassVar[list[dict[str, str]]] = [docs_site.menu_entry()]
