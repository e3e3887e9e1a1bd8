"""Airflow's LocalExecutor, with dbt and Cosmos imported once in the scheduler instead of once per task.

On Linux the LocalExecutor forks its worker processes from the scheduler, and each worker forks a process per
task: whatever the scheduler imported before starting its workers, every task process starts with, for free.
A Cosmos LOCAL task otherwise spends seconds of CPU importing dbt before dbt does any work; with one task per dbt
node that is most of a small model's task time (bench/RESULTS.md). Importing it once costs the scheduler that
import at start-up and the memory of the modules, which the forked processes share.

Only third-party libraries are preloaded (dbt, its Postgres adapter, Cosmos, the Slack SDK): the project's own
modules (``include/``, the DAG files) are still imported fresh by every task, so a code change takes effect
without restarting the scheduler. Upgrading dbt or Cosmos needs a scheduler restart, as any upgrade does.

Use it with ``AIRFLOW__CORE__EXECUTOR=include.local_platform.preloading_executor.PreloadingLocalExecutor``
(``make up`` does; the Astro CLI's local environment can, through ``.env``). With the ``spawn`` start method
(macOS) there is nothing to inherit, so it behaves exactly like the LocalExecutor.
"""

from __future__ import annotations

import importlib
import logging
import time

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

# What a Cosmos LOCAL task imports before dbt runs: dbt's CLI and runner (which pull in the parser, the tasks and
# the artifacts), the Postgres adapter dbt loads for the profile, and Cosmos' operators with their Slack alerts.
PRELOADED_MODULES = (
    "dbt.cli.main",
    "dbt.adapters.postgres",
    "cosmos.operators.local",
    "cosmos.airflow.task_group",
    "airflow.providers.slack.hooks.slack_webhook",
)


def preload(modules: tuple[str, ...] = PRELOADED_MODULES) -> list[str]:
    """Import ``modules``; returns the ones that could not be imported (each is logged, none is fatal: a task
    that needs a missing module fails with its own import error, as it would without preloading)."""
    missing = []
    started = time.monotonic()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # an optional library missing from this deployment must not stop the scheduler
            log.warning("Not preloading %s for the task processes: %s", name, error)
            missing.append(name)
    log.info(
        "Preloaded %d modules for the task processes in %.1f s", len(modules) - len(missing), time.monotonic() - started
    )
    return missing


class PreloadingLocalExecutor(LocalExecutor):
    """A LocalExecutor whose forked workers, and so every task process, start with dbt and Cosmos imported."""

    def start(self) -> None:
        if self.is_mp_using_fork:
            preload()
        super().start()
