"""Fixtures for the DAG tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from include import settings


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """The manifest the DAGs render from, written as `make manifest` does when `make` has not done it already."""
    return parsed_manifest()


def parsed_manifest() -> Path:
    """``dbt_manifest`` for code that is no test (another session fixture)."""
    if not settings.DBT_MANIFEST_PATH.is_file():
        from include.dbt_tasks.cosmos_config import _dbt_executable

        target = str(settings.DBT_MANIFEST_PATH.parent.relative_to(settings.DBT_PROJECT_DIR))

        result = subprocess.run(
            [_dbt_executable(), "parse", "--profiles-dir", ".", "--project-dir", ".", "--target-path", target],
            cwd=settings.DBT_PROJECT_DIR,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"dbt parse failed:\n{result.stdout[-3000:]}"
    return settings.DBT_MANIFEST_PATH


@pytest.fixture(scope="module")
def dags(dbt_manifest: Path) -> dict:
    """Every DAG of dags/, parsed once per test module."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.REPO_ROOT / "dags"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags


@pytest.fixture(scope="module")
def daily(dags):
    return dags["greenery_daily"]


@pytest.fixture(scope="module")
def hourly(dags):
    return dags["greenery_hourly_snapshot"]
