"""How much each benchmark run measures. Every size runs the same code; only the counts and scales differ."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

# What each measured mode sets for `make up`: the Cosmos execution mode, whether the executor preloads dbt
# (include/preloading_executor.py, make up's default) or is Airflow's stock LocalExecutor, and the executor
# (`-celery`: make up EXECUTOR=celery, two Celery workers behind a Redis broker, on the same machine).
_LOCAL = {"GREENERY_EXECUTOR": "local"}
_CELERY = {"GREENERY_EXECUTOR": "celery"}
MODES: dict[str, dict[str, str]] = {
    "local": {"GREENERY_COSMOS_EXECUTION_MODE": "local", "GREENERY_PRELOAD_DBT": "1", **_LOCAL},
    "watcher": {"GREENERY_COSMOS_EXECUTION_MODE": "watcher", "GREENERY_PRELOAD_DBT": "1", **_LOCAL},
    "producer": {"GREENERY_COSMOS_EXECUTION_MODE": "producer", "GREENERY_PRELOAD_DBT": "1", **_LOCAL},
    "local-stock": {"GREENERY_COSMOS_EXECUTION_MODE": "local", "GREENERY_PRELOAD_DBT": "0", **_LOCAL},
    "producer-celery": {"GREENERY_COSMOS_EXECUTION_MODE": "producer", **_CELERY},
    "local-celery": {"GREENERY_COSMOS_EXECUTION_MODE": "local", **_CELERY},
}


def celery_twin(mode: str) -> str | None:
    """The LocalExecutor mode a ``-celery`` mode runs the same DAGs as (None for a LocalExecutor mode)."""
    return mode.removesuffix("-celery") if mode.endswith("-celery") else None


def cosmos_mode(mode: str) -> str:
    """The Cosmos execution mode (``local`` or ``watcher``) a measured mode runs."""
    return MODES[mode]["GREENERY_COSMOS_EXECUTION_MODE"]


@dataclass(frozen=True)
class Size:
    name: str
    parse_cold_runs: int  # each in a fresh Python process
    parse_warm_runs: int  # repeated in one process after a first parse
    overhead_scale: int  # data volume of the Cosmos-vs-bare-dbt comparison
    overhead_pairs: int  # alternating (bare dbt, DAG run) pairs per execution mode
    overhead_modes: tuple[str, ...]  # values of GREENERY_COSMOS_EXECUTION_MODE
    overhead_dag: str  # greenery_daily; the smoke size runs the four-task hourly DAG to stay short
    scaling_scales: tuple[int, ...]
    load_scale: int  # loader against `psql \copy`
    load_repeats: int
    profile: bool  # py-spy profiles of the DAG-file parse and of a DAG run's tasks (RESULTS.md's explanations)
    dbt_threads: int = 4
    overhead_hourly_modes: tuple[str, ...] = ()  # also greenery_hourly_snapshot against bare `dbt snapshot`

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Size(
    name="full",
    parse_cold_runs=3,
    parse_warm_runs=10,
    overhead_scale=10,
    overhead_pairs=3,
    overhead_modes=("producer", "local", "watcher", "producer-celery", "local-celery"),
    overhead_dag="greenery_daily",
    scaling_scales=(1, 10, 100, 1000),
    load_scale=100,
    load_repeats=3,
    profile=True,
    overhead_hourly_modes=("producer",),
)

# Under five minutes on two cores: a daily DAG run alone takes minutes there, so the Cosmos comparison runs the
# hourly DAG (the same code path) in the default mode only (the producer mode, with its own figures: the lag of
# its node tasks, the tail after dbt_build); `--dag greenery_daily` puts the daily one back.
QUICK = Size(
    name="quick",
    parse_cold_runs=2,
    parse_warm_runs=5,
    overhead_scale=1,
    overhead_pairs=1,
    overhead_modes=("producer",),
    overhead_dag="greenery_hourly_snapshot",
    scaling_scales=(1, 10, 100),
    load_scale=10,
    load_repeats=1,
    profile=False,
)

# The CI smoke test: every section once, at the smallest size, to prove the code path still works (profiles
# included, so CI keeps the profiling code working).
SMOKE = replace(
    QUICK, name="smoke", parse_cold_runs=1, parse_warm_runs=1, scaling_scales=(1,), load_scale=1, profile=True
)
