"""Running the greenery dbt project against a test database, the way a user does, and reading what it did.

dbt runs as a subprocess (the CLI of this virtualenv) with the libpq variables of the test database, so
each run is exactly `make dbt ARGS=...` minus make. Every database gets its own target and log directory:
runs against different databases never share artifacts or partial-parse state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from include import settings

DBT_EXECUTABLE = Path(sys.executable).with_name("dbt")

# Statuses dbt writes to run_results.json for nodes that did not do their job.
FAILED_STATUSES = {"error", "fail", "runtime error"}


def node_name(unique_id: str) -> str:
    """The name a user sees in dbt's log: test.greenery.<name>.<hash>, unit_test.greenery.<model>.<name>, ..."""
    parts = unique_id.split(".")
    return parts[3] if parts[0] == "unit_test" else parts[2]


@dataclass
class DbtRun:
    """One finished dbt command: its exit code, console output and per-node results."""

    args: list[str]
    returncode: int
    output: str
    # node name ("fct_orders", "source_unique_greenery_orders_order_id") -> its entry in run_results.json
    results: dict[str, dict] = field(default_factory=dict)
    # unique_id -> entry of sources.json, after `dbt source freshness`
    freshness: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def status(self, name: str) -> str:
        """The status of the node called ``name`` (success, error, skipped, pass, fail, warn)."""
        if name not in self.results:
            raise AssertionError(f"dbt {' '.join(self.args)} has no result for {name!r}:\n{self.tail()}")
        return self.results[name]["status"]

    def names_with_status(self, *statuses: str) -> set[str]:
        return {name for name, result in self.results.items() if result["status"] in statuses}

    def failed(self) -> set[str]:
        return self.names_with_status(*FAILED_STATUSES)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


class DbtProject:
    """The greenery dbt project pointed at one database (``env``: its libpq variables)."""

    def __init__(self, env: dict[str, str], work_dir: Path, extra_env: dict[str, str] | None = None):
        self.env = {**os.environ, **env, **(extra_env or {})}
        self.target_path = work_dir / "target"
        self.log_path = work_dir / "logs"

    def run(self, *args: str, dbt_vars: dict | None = None) -> DbtRun:
        """Run ``dbt <args>``; returns its outcome whatever it is (callers assert what they expect)."""
        command = [str(DBT_EXECUTABLE), *args]
        command += ["--project-dir", str(settings.DBT_PROJECT_DIR), "--profiles-dir", str(settings.DBT_PROFILES_DIR)]
        command += ["--target-path", str(self.target_path), "--log-path", str(self.log_path)]
        if dbt_vars:
            command += ["--vars", json.dumps(dbt_vars)]
        for artifact in ("run_results.json", "sources.json"):
            (self.target_path / artifact).unlink(missing_ok=True)  # never read a previous command's results
        completed = subprocess.run(
            command, env=self.env, capture_output=True, text=True, cwd=settings.DBT_PROJECT_DIR, timeout=600
        )
        run = DbtRun(list(args), completed.returncode, completed.stdout + completed.stderr)
        run_results = self.target_path / "run_results.json"
        if run_results.exists():
            for result in json.loads(run_results.read_text())["results"]:
                run.results[node_name(result["unique_id"])] = result
        sources = self.target_path / "sources.json"
        if sources.exists():
            run.freshness = {result["unique_id"]: result for result in json.loads(sources.read_text())["results"]}
        return run

    def build_ok(self, *args: str, dbt_vars: dict | None = None) -> DbtRun:
        """Run a dbt command that must succeed; fails the test with dbt's own output otherwise."""
        run = self.run(*args, dbt_vars=dbt_vars)
        assert run.ok and not run.failed(), f"dbt {' '.join(args)} failed ({sorted(run.failed())}):\n{run.tail()}"
        return run

    def compiled_analysis(self, name: str) -> str:
        """SQL of ``analyses/<name>.sql`` as the last `dbt compile` rendered it."""
        return (self.target_path / "compiled" / "greenery" / "analyses" / f"{name}.sql").read_text()


class Warehouse:
    """A test database with the raw tables, a psycopg2 connection (autocommit) and the dbt project on it."""

    def __init__(self, dbname: str, env: dict[str, str], work_dir: Path, extra_env: dict[str, str] | None = None):
        self.dbname = dbname
        self.env = env
        self.conn = psycopg2.connect(
            host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"], dbname=dbname
        )
        self.conn.autocommit = True
        self.dbt = DbtProject(env, work_dir, extra_env)

    def query(self, sql: str, params: tuple | dict | None = None) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql: str, params: tuple | dict | None = None):
        rows = self.query(sql, params)
        assert len(rows) == 1 and len(rows[0]) == 1, f"expected one value from {sql!r}, got {rows!r}"
        return rows[0][0]

    def execute(self, sql: str, params: tuple | dict | None = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)

    def close(self) -> None:
        self.conn.close()
