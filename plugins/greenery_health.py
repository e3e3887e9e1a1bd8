"""The dbt health page of greenery under Browse > "dbt health (greenery)", behind Airflow's login
(include/health_site.py): runs, dbt's own model timing of a run, and trends of models, tests and sources."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from include import health_site
from include.docs_site import BuiltOnFirstRequest


class GreeneryHealthPlugin(AirflowPlugin):
    name = "greenery_health"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "greenery_health",
            "app": BuiltOnFirstRequest(health_site.create_app),
            "url_prefix": health_site.URL_PREFIX,
        }
    ]
    external_views: ClassVar[list[dict[str, str]]] = [health_site.menu_entry()]
