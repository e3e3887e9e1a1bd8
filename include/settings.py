"""Where things live and how they are named: the one place that turns environment variables into paths.

Every path has an environment variable that overrides it and a default relative to the repository, so the
same code runs from a clone (``make up``), from the test suite and inside the Docker image.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("GREENERY_REPO_ROOT", Path(__file__).resolve().parent.parent))

# Private state of the local platform: the PostgreSQL cluster, AIRFLOW_HOME, logs. Git-ignored.
LOCAL_DIR = Path(os.environ.get("GREENERY_LOCAL_DIR", REPO_ROOT / ".local"))
WAREHOUSE_ENV_FILE = LOCAL_DIR / "warehouse.env"

DBT_PROJECT_DIR = Path(os.environ.get("GREENERY_DBT_PROJECT_DIR", REPO_ROOT / "dbt" / "greenery"))
DBT_PROFILES_DIR = Path(os.environ.get("GREENERY_DBT_PROFILES_DIR", DBT_PROJECT_DIR))
DBT_MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"
# Where the daily DAG writes `dbt docs generate` output; the Airflow UI serves it from here.
DBT_DOCS_DIR = Path(os.environ.get("GREENERY_DBT_DOCS_DIR", LOCAL_DIR / "dbt-docs"))

# Schema of the raw source tables, and the schema dbt builds into (custom schemas hang off it).
RAW_SCHEMA = os.environ.get("GREENERY_RAW_SCHEMA", "raw")
DBT_TARGET_SCHEMA = os.environ.get("GREENERY_DBT_SCHEMA", "analytics")

# Airflow connection ids.
WAREHOUSE_CONN_ID = "greenery_warehouse"
SLACK_CONN_ID = "slack_alerts"

COURSE_DATA_ENV = "GREENERY_COURSE_DATA"


def course_data_dir() -> Path | None:
    """The greenery course data set (seven CSVs), or None when it is not on this machine.

    Read from ``$GREENERY_COURSE_DATA`` or ``../shared/greenery-course-data`` beside the repository; it is never
    copied into the repository.
    """
    candidates = []
    if os.environ.get(COURSE_DATA_ENV):
        candidates.append(Path(os.environ[COURSE_DATA_ENV]))
    candidates.append(REPO_ROOT.parent / "shared" / "greenery-course-data")
    for candidate in candidates:
        if (candidate / "orders.csv").is_file():
            return candidate
    return None
