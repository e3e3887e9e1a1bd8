"""Every setting of the package, declared once: its environment variable, default, allowed values and meaning.

The rest of the code reads a setting through its declaration here (``DAILY_HOUR.value()``) and never from
``os.environ`` itself, so every value goes through one bounded parser and every bad value ends in one
:class:`ConfigurationError` that names the variable and says what to set. The README's Configuration table
lists every setting declared here (a test holds the two in step).

Paths are read once, when this module is imported; the other settings when they are used, so that a test or a
DAG-file parse sees the environment of the moment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class ConfigurationError(ValueError):
    """An environment variable has a value the package cannot use; the message says which and what to set."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: what it means, its default (as the environment would hold it) and its type.

    ``kind`` is one of ``int``, ``number``, ``bool``, ``choice``, ``identifier``, ``text``, ``name``, ``url``,
    ``storage_url``, ``path``;
    ``low``/``high`` bound numbers, ``choices`` a choice. ``read_by`` names who reads it when it is not this
    package's Python (dbt's ``env_var()``).
    """

    name: str
    default: str | None
    meaning: str
    kind: str = "text"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_by: str = "python"

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The variable as set (stripped), or ``None`` when it is unset or empty."""
        value = (os.environ if environ is None else environ).get(self.name)
        value = value.strip() if value is not None else None
        return value or None

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        return self.raw(environ) is not None

    def value(self, environ: Mapping[str, str] | None = None) -> Any:
        """The parsed value from ``environ`` (default: the process environment), or the default when unset.

        Raises :class:`ConfigurationError` when the value is not allowed.
        """
        raw = self.raw(environ)
        text = raw if raw is not None else self.default
        if text is None:
            return None
        return _PARSERS[self.kind](self, text, raw)


def _int(setting: Setting, text: str, raw: str | None) -> int:
    low, high = int(setting.low or 0), int(setting.high or 0)
    if not re.fullmatch(r"\d+", text) or not low <= int(text) <= high:
        raise ConfigurationError(f"{setting.name}={raw!r} must be a whole number from {low} to {high}.")
    return int(text)


def _number(setting: Setting, text: str, raw: str | None) -> float:
    low, high = setting.low or 0.0, setting.high or 0.0
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ConfigurationError(f"{setting.name}={raw!r} must be a number from {low:g} to {high:g}.")
    return value


def _bool(setting: Setting, text: str, raw: str | None) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ConfigurationError(f"{setting.name}={raw!r} must be 1 (on) or 0 (off).")


def _choice(setting: Setting, text: str, raw: str | None) -> str:
    value = text.lower()
    if value not in setting.choices:
        raise ConfigurationError(f"{setting.name}={raw!r} is not supported: use one of {', '.join(setting.choices)}.")
    return value


def _identifier(setting: Setting, text: str, raw: str | None) -> str:
    if not _IDENTIFIER.fullmatch(text):
        raise ConfigurationError(
            f"{setting.name}={raw!r} must be a PostgreSQL schema name: letters, digits and _, at most 63, "
            "not starting with a digit."
        )
    return text


def _url(setting: Setting, text: str, raw: str | None) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
        raise ConfigurationError(f"{setting.name}={raw!r} must be an http(s) URL, e.g. https://airflow.example.com.")
    return text.rstrip("/")


def _text(setting: Setting, text: str, raw: str | None) -> str:
    return text


def _name(setting: Setting, text: str, raw: str | None) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise ConfigurationError(f"{setting.name}={raw!r} must be a name of letters, digits, '_', '.' and '-'.")
    return text


def _storage_url(setting: Setting, text: str, raw: str | None) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^\s/]+(/\S*)?", text):
        raise ConfigurationError(
            f"{setting.name}={raw!r} must be an object storage URL with a bucket, e.g. s3://my-bucket/dbt-docs."
        )
    return text.rstrip("/")


def _path(setting: Setting, text: str, raw: str | None) -> Path:
    return Path(text).expanduser()


_PARSERS: dict[str, Callable[[Setting, str, str | None], Any]] = {
    "int": _int,
    "number": _number,
    "bool": _bool,
    "choice": _choice,
    "identifier": _identifier,
    "url": _url,
    "text": _text,
    "name": _name,
    "storage_url": _storage_url,
    "path": _path,
}

SETTINGS: dict[str, Setting] = {}


def _declare(name: str, default: str | None, meaning: str, **shape: Any) -> Setting:
    setting = Setting(name, default, meaning, **shape)
    if setting.kind not in _PARSERS:
        raise TypeError(f"{name}: unknown kind {setting.kind!r}")
    SETTINGS[name] = setting
    return setting


# -- where things live ---------------------------------------------------------------------------------------
_REPO_DEFAULT = str(Path(__file__).resolve().parent.parent)
REPO_ROOT_SETTING = _declare(
    "GREENERY_REPO_ROOT", _REPO_DEFAULT, "the repository (the Docker image sets it)", kind="path"
)
REPO_ROOT: Path = REPO_ROOT_SETTING.value()
LOCAL_DIR_SETTING = _declare(
    "GREENERY_LOCAL_DIR", str(REPO_ROOT / ".local"), "private state of the local platform", kind="path"
)
# Private state of the local platform: the PostgreSQL cluster, AIRFLOW_HOME, logs. Git-ignored.
LOCAL_DIR: Path = LOCAL_DIR_SETTING.value()
WAREHOUSE_ENV_FILE = LOCAL_DIR / "warehouse.env"
DBT_PROJECT_DIR_SETTING = _declare(
    "GREENERY_DBT_PROJECT_DIR", str(REPO_ROOT / "dbt" / "greenery"), "the dbt project", kind="path"
)
DBT_PROJECT_DIR: Path = DBT_PROJECT_DIR_SETTING.value()
DBT_PROFILES_DIR_SETTING = _declare(
    "GREENERY_DBT_PROFILES_DIR", str(DBT_PROJECT_DIR), "where plain dbt finds profiles.yml", kind="path"
)
DBT_PROFILES_DIR: Path = DBT_PROFILES_DIR_SETTING.value()
# `make manifest` writes here and plain dbt never does (its own commands write target/manifest.json), so a DAG
# parse never meets a manifest that dbt is still writing.
DBT_MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "airflow" / "manifest.json"
DBT_DOCS_DIR_SETTING = _declare(
    "GREENERY_DBT_DOCS_DIR",
    str(LOCAL_DIR / "dbt-docs"),
    "where docs_generate publishes the dbt docs that the Airflow UI serves",
    kind="path",
)
DBT_DOCS_DIR: Path = DBT_DOCS_DIR_SETTING.value()
DBT_DOCS_URL = _declare(
    "GREENERY_DBT_DOCS_URL",
    None,
    "object storage folder (s3://bucket/path) for the dbt docs instead of GREENERY_DBT_DOCS_DIR: no shared disk",
    kind="storage_url",
)
DBT_DOCS_CONN_ID = _declare(
    "GREENERY_DBT_DOCS_CONN_ID",
    None,
    "Airflow connection to GREENERY_DBT_DOCS_URL's store (default: the provider's, e.g. aws_default)",
    kind="name",
)
# The chart libraries of the dbt health page, which `make chart-libs` installs with npm from package-lock.json.
NODE_MODULES_DIR = REPO_ROOT / "node_modules"
COURSE_DATA = _declare(
    "GREENERY_COURSE_DATA",
    str(REPO_ROOT.parent / "shared" / "greenery-course-data"),
    "the course's reference CSVs, used by tests",
    kind="path",
)

# -- the warehouse -------------------------------------------------------------------------------------------
RAW_SCHEMA: str = _declare("GREENERY_RAW_SCHEMA", "raw", "schema of the raw source tables", kind="identifier").value()
DBT_TARGET_SCHEMA: str = _declare(
    "GREENERY_DBT_SCHEMA", "analytics", "schema dbt builds into (custom schemas hang off it)", kind="identifier"
).value()
DBT_META_SCHEMA = _declare(
    "GREENERY_DBT_META_SCHEMA", "dbt_meta", "schema of the dbt run history (also read by dbt)", kind="identifier"
)
HISTORY_RETENTION_DAYS = _declare(
    "GREENERY_HISTORY_RETENTION_DAYS",
    "90",
    "days of dbt run history dbt_meta keeps; the daily run deletes what is older",
    kind="int",
    low=1,
    high=3660,
)
REPORTING_ROLES = _declare(
    "GREENERY_REPORTING_ROLES", None, "database roles granted select on the marts, comma-separated", read_by="dbt"
)

# Airflow connection ids.
WAREHOUSE_CONN_ID = "greenery_warehouse"
SLACK_CONN_ID = "slack_alerts"

# -- the DAGs ------------------------------------------------------------------------------------------------
DAILY_HOUR = _declare("GREENERY_DAILY_HOUR", "6", "UTC hour of the daily run", kind="int", low=0, high=23)
FRESHNESS_BLOCKS = _declare("GREENERY_FRESHNESS_BLOCKS", "0", "1: a stale source stops the daily build", kind="bool")
MAX_WINDOW_DAYS = _declare(
    "GREENERY_MAX_WINDOW_DAYS", "31", "longest date window one daily run may reprocess", kind="int", low=1, high=3660
)
DAILY_DEADLINE_MINUTES = _declare(
    "GREENERY_DAILY_DEADLINE_MINUTES",
    "120",
    "the daily run alerts as late this long after it was queued; 0 turns it off",
    kind="number",
    low=0,
    high=24 * 60,
)
COSMOS_EXECUTION_MODE = _declare(
    "GREENERY_COSMOS_EXECUTION_MODE",
    "producer",
    "Cosmos execution mode",
    kind="choice",
    choices=("local", "watcher", "producer"),
)
DBT_THREADS = _declare(
    "GREENERY_DBT_THREADS", "4", "dbt threads per dbt command (plain dbt reads it too)", kind="int", low=1, high=64
)
DBT_QUEUE = _declare(
    "GREENERY_DBT_QUEUE",
    "dbt",
    "executor queue of the tasks that run dbt (CeleryExecutor); the others use [operators] default_queue",
    kind="name",
)
RETRY_DELAY_SECONDS = _declare(
    "GREENERY_RETRY_DELAY_SECONDS",
    "60",
    "pause before a dbt task's first retry (it doubles at each retry, up to 10 minutes)",
    kind="int",
    low=1,
    high=3600,
)
DEV_SIMULATOR = _declare(
    "GREENERY_DEV_SIMULATOR",
    "0",
    "1: the live shop simulator DAG exists (make up sets it; never production)",
    kind="bool",
)

# -- alerts --------------------------------------------------------------------------------------------------
SLACK_WEBHOOK_URL = _declare(
    "SLACK_WEBHOOK_URL", None, "Slack incoming webhook; builds the slack_alerts connection", kind="text"
)
AIRFLOW_BASE_URL = _declare(
    "GREENERY_AIRFLOW_BASE_URL",
    None,
    "the UI's address in alert links (default: Airflow's [api] base_url) and in the monitoring exposure (dbt)",
    kind="url",
)
SLACK_TIMEOUT_SECONDS = _declare(
    "GREENERY_SLACK_TIMEOUT_SECONDS", "10", "timeout of one request to Slack", kind="number", low=1, high=120
)
SLACK_RETRIES = _declare(
    "GREENERY_SLACK_RETRIES", "3", "retries of an alert on 429, 5xx and timeouts", kind="int", low=0, high=10
)
SLACK_BACKOFF_SECONDS = _declare(
    "GREENERY_SLACK_BACKOFF_SECONDS", "1", "first pause before retrying Slack (it grows)", kind="number", low=0, high=60
)

# -- the local platform (make up) ----------------------------------------------------------------------------
WAREHOUSE_PORT = _declare(
    "GREENERY_WAREHOUSE_PORT", "5433", "preferred port of the local warehouse", kind="int", low=1, high=65535
)
AIRFLOW_PORT = _declare(
    "GREENERY_AIRFLOW_PORT", "8080", "preferred port of the local Airflow UI", kind="int", low=1, high=65535
)
ADMIN_PASSWORD = _declare("AIRFLOW_ADMIN_PASSWORD", "admin", "password of the local UI's admin user")
EXECUTOR = _declare(
    "GREENERY_EXECUTOR",
    "local",
    "executor of make up's Airflow: local, or celery (Redis broker, Celery workers, docs in an S3 store)",
    kind="choice",
    choices=("local", "celery"),
)
CELERY_WORKERS = _declare(
    "GREENERY_CELERY_WORKERS", "2", "Celery workers of make up EXECUTOR=celery", kind="int", low=1, high=8
)
CELERY_CONCURRENCY = _declare(
    "GREENERY_CELERY_CONCURRENCY", "2", "task slots of each local Celery worker", kind="int", low=1, high=32
)
WORKER_HOST = _declare(
    "GREENERY_WORKER_HOST",
    None,
    "host name a local Celery worker gives its tasks (make up EXECUTOR=celery sets it per worker)",
)
TASK_HEARTBEAT_TIMEOUT_SECONDS = _declare(
    "GREENERY_TASK_HEARTBEAT_TIMEOUT_SECONDS",
    "60",
    "make up EXECUTOR=celery: a task whose worker went away fails this long after its last heartbeat",
    kind="int",
    low=15,
    high=3600,
)
PRELOAD_DBT = _declare(
    "GREENERY_PRELOAD_DBT",
    "1",
    "0: make up runs Airflow's stock LocalExecutor instead of the preloading one",
    kind="bool",
)

# Variables whose values never appear in an alert or a history row (libpq's password is not ours to declare).
SECRET_VARIABLES = (SLACK_WEBHOOK_URL.name, "PGPASSWORD")


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret-holding variables that are set (long enough to be worth hiding)."""
    environ = os.environ if environ is None else environ
    return [value.strip() for name in SECRET_VARIABLES if len((value := environ.get(name) or "").strip()) >= 4]


def course_data_dir() -> Path | None:
    """The greenery course data set (seven CSVs), or None when it is not on this machine.

    Read from ``$GREENERY_COURSE_DATA`` or ``../shared/greenery-course-data`` beside the repository; it is never
    copied into the repository.
    """
    candidates = [COURSE_DATA.value(), Path(COURSE_DATA.default or "")]
    for candidate in candidates:
        if (candidate / "orders.csv").is_file():
            return candidate
    return None
