"""What the numbers were measured on: machine, load, software versions, commit, date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from include import settings
from include.local_platform.pgcluster import find_server_bin_dir

PACKAGES = ("apache-airflow", "astronomer-cosmos", "dbt-core", "dbt-postgres", "psycopg2-binary")


def _field(path: str, key: str, sep: str) -> str | None:
    """The value of the first ``key<sep>value`` line of a system file, if there is one."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(sep, 1)[1].strip().strip('"') for line in lines if line.startswith(key)), None)


def _postgres_version() -> str:
    try:
        out = subprocess.run(
            [str(find_server_bin_dir() / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        found = re.search(r"\(PostgreSQL\) (\S+)", out)
        return found.group(1) if found else out.strip()
    except Exception:  # a fact we cannot read is reported as unknown, not a failed benchmark
        return "unknown"


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=settings.REPO_ROOT, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict[str, Any]:
    """Hardware and OS; the load average shows how busy the machine was when the run started."""
    return {
        "cpu_count": os.cpu_count() or 0,
        "cpu_model": _field("/proc/cpuinfo", "model name", ":") or platform.processor() or "unknown",
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": _field("/etc/os-release", "PRETTY_NAME=", "=") or platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    found = {package: _version(package) for package in PACKAGES}
    found["postgresql"] = _postgres_version()
    return found


def git_facts() -> dict[str, Any]:
    status = _git("status", "--porcelain")
    return {"commit": _git("rev-parse", "HEAD") or "unknown", "dirty": bool(status)}


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
