"""The Cosmos configuration every greenery DAG shares: one profile, one project, one execution config and a
render-config factory, so that a DAG file only says *what* to run.

Settings (``include.settings``, read when a DAG file is parsed): ``GREENERY_COSMOS_EXECUTION_MODE``,
``GREENERY_DBT_SCHEMA``, ``GREENERY_DBT_THREADS``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cosmos.config import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, SourceRenderingBehavior, TestBehavior
from cosmos.profiles.postgres.user_pass import PostgresUserPasswordProfileMapping

from include import settings

# LOCAL runs one dbt command per task in the task's own process. WATCHER is Cosmos' producer `dbt build` with
# the node tasks as deferrable sensors. PRODUCER (ours, include/dbt_tasks/producer.py) renders the LOCAL tasks
# and runs the run's dbt commands in one process beside them, the node tasks ending in the triggerer. The
# default and why: bench/RESULTS.md.
_EXECUTION_MODES = {"local": ExecutionMode.LOCAL, "watcher": ExecutionMode.WATCHER, "producer": ExecutionMode.LOCAL}

# One slot, shared by every snapshot task of every DAG: two `dbt snapshot` commands on one table at the same
# time can both close the current row and insert duplicate current versions.
SNAPSHOT_POOL = "dbt_snapshots"
POOLS: list[tuple[str, int, str]] = [
    (SNAPSHOT_POOL, 1, "Serialises dbt snapshots across greenery_daily and greenery_hourly_snapshot."),
]

DBT_PROFILE_NAME = "greenery"
DBT_TARGET_NAME = "airflow"


def execution_mode() -> ExecutionMode:
    """The Cosmos execution mode chosen by ``GREENERY_COSMOS_EXECUTION_MODE``."""
    return _EXECUTION_MODES[settings.COSMOS_EXECUTION_MODE.value()]


def uses_producer() -> bool:
    """True in the ``producer`` mode: one dbt process per DAG run (``include.dbt_tasks.producer``)."""
    return settings.COSMOS_EXECUTION_MODE.value() == "producer"


def dbt_threads() -> int:
    return settings.DBT_THREADS.value()


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


# `make manifest` (and the Docker build) write the manifest where plain dbt never writes, in one rename, so a
# DAG parse never reads half a file.
MANIFEST_AVAILABLE = settings.DBT_MANIFEST_PATH.is_file()


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

    The DAGs render from ``dbt/greenery/target/airflow/manifest.json`` (written by ``dbt parse``), which costs a JSON
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
