"""Fixtures of the dbt tests: databases with raw data loaded by the data package, and dbt pointed at them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dbt_runs import Warehouse

from include import settings
from include.greenery_data import apply_schema


@pytest.fixture(scope="session")
def warehouse_factory(module_database_factory, tmp_path_factory) -> Iterator[Callable[..., Warehouse]]:
    """``warehouse_factory("dbt_course")`` -> a Warehouse on a brand-new database with empty raw tables."""
    created: list[Warehouse] = []

    def make(prefix: str, extra_env: dict[str, str] | None = None) -> Warehouse:
        dbname, env = module_database_factory(prefix)
        warehouse = Warehouse(dbname, env, tmp_path_factory.mktemp(prefix), extra_env)
        apply_schema(warehouse.conn)
        created.append(warehouse)
        return warehouse

    yield make
    for warehouse in created:
        warehouse.close()


@pytest.fixture(scope="session")
def course_data() -> Path:
    """The course's seven CSV files; tests that need them skip when this machine does not have them."""
    path = settings.course_data_dir()
    if path is None:
        pytest.skip(
            f"course data not found: set {settings.COURSE_DATA.name} or put it in ../shared/greenery-course-data"
        )
    return path
