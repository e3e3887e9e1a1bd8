"""The Cosmos configuration every greenery DAG shares: one profile, one project, one execution config and a
render-config factory, so that a DAG file only says *what* to run.

Settings (environment variables, read when a DAG file is parsed):

- ``GREENERY_COSMOS_EXECUTION_MODE``: ``local`` (default) or ``watcher``; see ``EXECUTION_MODE`` below.
- ``GREENERY_DBT_SCHEMA``: the schema dbt builds into (``analytics``), via ``include.settings``.
- ``GREENERY_DBT_THREADS``: dbt threads per dbt command (4), the same variable plain dbt's profiles.yml reads.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cosmos.config import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, SourceRenderingBehavior, TestBehavior
from cosmos.profiles.postgres.user_pass import PostgresUserPasswordProfileMapping

from include import settings

EXECUTION_MODE_ENV = "GREENERY_COSMOS_EXECUTION_MODE"
# LOCAL runs one dbt command per task, in the task's own process through dbt's Python API (no dbt subprocess):
# every node keeps its own task, retry, log and alert. WATCHER runs one `dbt build` in a producer task and
# turns the node tasks into deferrable sensors that follow it: less dbt start-up per node, but the producer is
# never retried (Cosmos skips a second try; a failed node is re-run by its sensor) and the sensors need the
# triggerer. Measured (bench/RESULTS.md, full run at scale 10, `make up`'s preloading LocalExecutor): the daily
# DAG took 205 s in LOCAL and 176 s in WATCHER (14% faster). LOCAL is still the default: in an earlier run on a
# busy machine WATCHER failed the daily DAG with Cosmos 1.15.1 (the detached two-model test tasks ended with
# "XCom not found ... tests_status" although the producer's `dbt build` had passed them), its producer is never
# retried, and it runs the source tests twice. LOCAL keeps per-node tasks, retries and alerts working every time.
DEFAULT_EXECUTION_MODE = "local"
_EXECUTION_MODES = {"local": ExecutionMode.LOCAL, "watcher": ExecutionMode.WATCHER}

# One slot, shared by every snapshot task of every DAG: two `dbt snapshot` commands on one table at the same
# time can both close the current row and insert duplicate current versions.
SNAPSHOT_POOL = "dbt_snapshots"
POOLS: list[tuple[str, int, str]] = [
    (SNAPSHOT_POOL, 1, "Serialises dbt snapshots across greenery_daily and greenery_hourly_snapshot."),
]

DBT_PROFILE_NAME = "greenery"
DBT_TARGET_NAME = "airflow"
DOCS_PROJECT_SLUG = "greenery"


class ConfigurationError(ValueError):
    """A setting has a value the DAGs cannot use; the message says which and what is allowed."""


def execution_mode() -> ExecutionMode:
    """The Cosmos execution mode chosen by ``GREENERY_COSMOS_EXECUTION_MODE``."""
    value = os.environ.get(EXECUTION_MODE_ENV, DEFAULT_EXECUTION_MODE).strip().lower()
    if value not in _EXECUTION_MODES:
        raise ConfigurationError(
            f"{EXECUTION_MODE_ENV}={value!r} is not supported: use one of {', '.join(sorted(_EXECUTION_MODES))}."
        )
    return _EXECUTION_MODES[value]


def dbt_threads() -> int:
    value = os.environ.get("GREENERY_DBT_THREADS", "4")
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"GREENERY_DBT_THREADS={value!r} must be a whole number of at least 1.")
    return int(value)


def _dbt_executable() -> str:
    """The dbt next to this Python, so that `dbt ls` works even when the virtualenv's bin/ is not on PATH."""
    beside_python = Path(sys.executable).parent / "dbt"
    return str(beside_python) if beside_python.exists() else "dbt"


def profile_config() -> ProfileConfig:
    """The dbt profile, built from the Airflow connection ``greenery_warehouse`` when a task runs dbt.

    The password stays in the Airflow connection: Cosmos hands it to dbt in an environment variable. A new
    object for every DAG-file parse, because Cosmos' profile mapping keeps the connection it first looked up:
    a module-level one would keep serving the old host or database to every later parse in the same process
    (``airflow dags test``, a dag-processor that does not fork) after the connection was edited.
    """
    return ProfileConfig(
        profile_name=DBT_PROFILE_NAME,
        target_name=DBT_TARGET_NAME,
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id=settings.WAREHOUSE_CONN_ID,
            profile_args={"schema": settings.DBT_TARGET_SCHEMA, "threads": dbt_threads()},
        ),
    )


def _manifest_complete(path: Path) -> bool:
    """True when ``path`` holds a whole manifest: dbt rewrites it in place on every command, so a DAG parse
    that races a developer's `dbt run` could otherwise read half a file."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(path.stat().st_size - 64, 0))
            return handle.read().rstrip().endswith(b"}")
    except OSError:
        return False


def manifest_available(wait_seconds: float = 5.0) -> bool:
    """Whether the DAGs can render from the manifest; waits briefly for one that dbt is still writing."""
    path = settings.DBT_MANIFEST_PATH
    if not path.is_file():
        return False
    deadline = time.monotonic() + wait_seconds
    while not _manifest_complete(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


MANIFEST_AVAILABLE = manifest_available()


PROJECT_CONFIG = ProjectConfig(
    dbt_project_path=settings.DBT_PROJECT_DIR,
    manifest_path=settings.DBT_MANIFEST_PATH if MANIFEST_AVAILABLE else None,
    # The project has no packages (the dbt hub is not reachable from every deployment); never run `dbt deps`.
    install_dbt_deps=False,
)

EXECUTION_CONFIG = ExecutionConfig(
    execution_mode=execution_mode(),
    invocation_mode=InvocationMode.DBT_RUNNER,
    dbt_executable_path=_dbt_executable(),
)

# Snapshots always run as LOCAL tasks, whatever the setting above: the snapshot pool must hold the process that
# writes the snapshot, and under WATCHER that would be one producer running every snapshot at once.
LOCAL_EXECUTION_CONFIG = ExecutionConfig(
    execution_mode=ExecutionMode.LOCAL,
    invocation_mode=InvocationMode.DBT_RUNNER,
    dbt_executable_path=_dbt_executable(),
)


def render_config(select: list[str], exclude: list[str] | None = None, **options: Any) -> RenderConfig:
    """How a selection of the project becomes tasks: one task per node, its tests in a task right after it.

    The DAGs render from ``dbt/greenery/target/manifest.json`` (written by ``dbt parse``), which costs a JSON
    read at parse time and never runs dbt. Without a manifest they fall back to running ``dbt ls`` once and
    keeping its output in Cosmos' cache, which works but makes the first parse take seconds. ``options`` are
    further ``RenderConfig`` fields (node converters, task naming, ``emit_datasets``).
    """
    fields: dict[str, Any] = {
        "load_method": LoadMode.DBT_MANIFEST if MANIFEST_AVAILABLE else LoadMode.DBT_LS,
        "select": select,
        "exclude": exclude or [],
        "test_behavior": TestBehavior.AFTER_EACH,
        # A test on two models (relationships) runs once both are built, in its own task, instead of with
        # whichever model happens to run first.
        "should_detach_multiple_parents_tests": True,
        # Sources are rendered by the DAG's own converter (tests only); freshness is one task of its own.
        "source_rendering_behavior": SourceRenderingBehavior.NONE,
        "emit_datasets": True,
        "invocation_mode": InvocationMode.DBT_RUNNER,
    }
    return RenderConfig(**{**fields, **options})


def dbt_docs_projects_setting() -> str:
    """The value of ``AIRFLOW__COSMOS__DBT_DOCS_PROJECTS``: Cosmos' Airflow 3 plugin then serves the docs that
    the daily DAG writes to ``include.settings.DBT_DOCS_DIR`` under Browse > "dbt Docs (greenery)"."""
    return json.dumps(
        {
            DOCS_PROJECT_SLUG: {
                "dir": str(settings.DBT_DOCS_DIR),
                "index": "index.html",
                "name": "dbt Docs (greenery)",
            }
        }
    )
