"""A throwaway copy of the ``make up`` platform for the benchmarks: its own warehouse and Airflow under a
temporary ``GREENERY_LOCAL_DIR`` on free ports, driven through the same commands as the Makefile. The developer's
``.local`` is never touched."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.measure import BenchError, CommandResult, clean_env, run_timed, wait_for
from bench.sizes import MODES
from include import settings
from include.local_platform.pgcluster import PgCluster, free_port
from include.local_platform.warehouse import read_env_file

VENV_BIN = Path(sys.executable).parent


class Stack:
    """Warehouse (and, on demand, Airflow) in ``base``; ``stop()`` shuts everything down."""

    def __init__(self, base: Path, dbt_threads: int):
        self.base = base
        self.local_dir = base / "local"
        self.dbt_target_dir = base / "dbt-target"
        self.env = clean_env(
            GREENERY_LOCAL_DIR=str(self.local_dir),
            GREENERY_WAREHOUSE_PORT=str(free_port()),
            GREENERY_AIRFLOW_PORT=str(free_port()),
            # Nothing but the benchmark may write to raw or run dbt while it measures: the scheduler starts only
            # the runs we trigger, so neither the DAGs' schedules nor the live-shop simulator DAG ever run.
            # (The simulator DAG is left defined: without it `local_airflow up` waits for a DAG that never comes.)
            GREENERY_DEV_SIMULATOR="1",
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
            GREENERY_DBT_THREADS=str(dbt_threads),
            PATH=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]),
            DO_NOT_TRACK="1",
        )
        self.airflow_mode: str | None = None
        self._warehouse_env: dict[str, str] | None = None

    # -- warehouse -------------------------------------------------------------------------------------------
    def start_warehouse(self) -> None:
        self._module("include.local_platform.warehouse", "start", env=self.env).check(
            "starting the benchmark warehouse"
        )
        self._warehouse_env = read_env_file(self.local_dir / "warehouse.env")

    @property
    def warehouse_env(self) -> dict[str, str]:
        """Our environment plus the warehouse's libpq variables (what ``make load`` / ``make dbt`` source)."""
        if self._warehouse_env is None:
            raise BenchError("the benchmark warehouse is not started")
        return {**self.env, **self._warehouse_env}

    def connect(self, dbname: str = "greenery"):
        return PgCluster(self.local_dir / "postgres").connect(dbname)

    def query(self, sql: str, params: tuple = (), dbname: str = "greenery") -> list[tuple]:
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def reset_warehouse(self) -> None:
        """Drop everything the loader and dbt created, so the next scale starts from an empty database."""
        rows = self.query(
            "select nspname from pg_namespace where nspname not like 'pg\\_%' and nspname <> 'information_schema'"
        )
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                for (schema,) in rows:
                    cur.execute(f'drop schema "{schema}" cascade')
                cur.execute("create schema if not exists public")
        finally:
            conn.close()
        shutil.rmtree(self.dbt_target_dir, ignore_errors=True)

    # -- tools, run as the Makefile runs them ---------------------------------------------------------------
    def _module(self, module: str, *args: str, env: dict[str, str], timeout: float = 3600) -> CommandResult:
        return run_timed([sys.executable, "-m", module, *args], env=env, cwd=settings.REPO_ROOT, timeout=timeout)

    def greenery_data(self, *args: str, timeout: float = 3600) -> CommandResult:
        """``python -m include.greenery_data ...`` with the warehouse env (``make load``)."""
        return self._module("include.greenery_data", *args, env=self.warehouse_env, timeout=timeout)

    def dbt(self, *args: str, timeout: float = 3600) -> CommandResult:
        """Plain dbt in dbt/greenery with its profiles.yml (``make dbt``), writing artifacts to our own target
        directory so the repository's manifest, which the DAGs render from, is left alone."""
        env = {
            **self.warehouse_env,
            "DBT_TARGET_PATH": str(self.dbt_target_dir),
            "DBT_LOG_PATH": str(self.base / "dbt-logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        }
        argv = [str(VENV_BIN / "dbt"), *args, "--profiles-dir", str(settings.DBT_PROFILES_DIR)]
        argv += ["--project-dir", str(settings.DBT_PROJECT_DIR)]
        return run_timed(argv, env=env, cwd=settings.DBT_PROJECT_DIR, timeout=timeout)

    def run_results(self) -> dict[str, Any]:
        return json.loads((self.dbt_target_dir / "run_results.json").read_text())

    # -- Airflow ---------------------------------------------------------------------------------------------
    def airflow_up(self, execution_mode: str) -> CommandResult:
        """``make up``'s Airflow in one of ``bench.sizes.MODES`` (restarting it when the mode changes)."""
        if self.airflow_mode not in (None, execution_mode):
            self.airflow_down()
        env = {**self.env, **MODES[execution_mode]}
        result = self._module("include.local_platform.local_airflow", "up", env=env, timeout=900)
        result.check(f"starting Airflow ({execution_mode} mode)")
        self.airflow_mode = execution_mode
        return result

    def airflow_down(self) -> None:
        self._module("include.local_platform.local_airflow", "down", env=self.env, timeout=120)
        self.airflow_mode = None

    def component_pid(self, component: str) -> int:
        """The pid of a running Airflow component (``scheduler``, ...), from the platform's supervisord."""
        result = self._module("include.local_platform.local_airflow", "status", "--json", env=self.env, timeout=60)
        lines = result.stdout.strip().splitlines()
        components = json.loads(lines[-1]) if lines else {}
        pid = components.get(component, {}).get("pid")
        if not pid:
            raise BenchError(f"the {component} is not running: {components}")
        return int(pid)

    @property
    def airflow_home(self) -> Path:
        return self.local_dir / "airflow"

    @property
    def airflow_env(self) -> dict[str, str]:
        return {**self.env, **read_env_file(self.local_dir / "airflow.env")}

    def airflow(self, *args: str, timeout: float = 300) -> CommandResult:
        return self._module("airflow", *args, env=self.airflow_env, timeout=timeout)

    def airflow_query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.query(sql, params, dbname="airflow")

    def wait_until_idle(self, timeout: float = 1800) -> None:
        """Wait until no DAG run is queued or running."""
        busy = "select 1 from dag_run where state in ('queued', 'running')"
        wait_for(
            lambda: not self.airflow_query(busy), timeout, 2, "Airflow's own scheduled runs did not finish in time"
        )

    def stop(self) -> None:
        if self.airflow_mode is not None or (self.airflow_home / "supervisord.pid").exists():
            self.airflow_down()
        self._module("include.local_platform.warehouse", "stop", env=self.env, timeout=120)


@contextmanager
def throwaway_stack(dbt_threads: int, keep: bool = False) -> Iterator[Stack]:
    """A started warehouse in a new temporary directory; everything is stopped and deleted afterwards."""
    base = Path(tempfile.mkdtemp(prefix="greenery-bench-"))
    base.chmod(0o755)  # the PostgreSQL server runs as the unprivileged `postgres` user and must enter it
    stack = Stack(base, dbt_threads)
    try:
        stack.start_warehouse()
        yield stack
    finally:
        try:
            stack.stop()
        finally:
            if keep:
                print(f"bench: kept the benchmark platform in {base}", file=sys.stderr)
            else:
                shutil.rmtree(base, ignore_errors=True)
