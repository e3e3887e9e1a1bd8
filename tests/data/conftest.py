"""Fixtures of the data tests: databases on the session's throwaway cluster, loaded with course or generated data.

Databases that many tests only read are loaded once per module; tests that change data get their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
from data_helpers import END, dsn

from include import settings
from include.greenery_data import load_csv_dir, load_generated


@pytest.fixture(scope="session")
def course_dir() -> Path:
    path = settings.course_data_dir()
    if path is None:
        pytest.skip(f"the greenery course data is not on this machine (set ${settings.COURSE_DATA.name})")
    return path


@pytest.fixture
def database(fresh_database) -> Iterator[tuple[object, dict[str, str]]]:
    """(connection, libpq env) of a new empty database, for tests that change data."""
    _, env = fresh_database("data")
    conn = psycopg2.connect(dsn(env))
    yield conn, env
    conn.close()


@pytest.fixture(scope="module")
def loaded_database(module_database_factory) -> Iterator[Callable[..., tuple[object, dict[str, str]]]]:
    """``loaded_database(csv=dir)`` or ``loaded_database(scale=..., seed=...)``: a database loaded once per
    module and argument set, for tests that only read."""
    made: dict[tuple, tuple[object, dict[str, str]]] = {}

    def make(csv: Path | None = None, **generate) -> tuple[object, dict[str, str]]:
        key = (str(csv), tuple(sorted(generate.items())))
        if key not in made:
            _, env = module_database_factory("data")
            conn = psycopg2.connect(dsn(env))
            if csv is not None:
                load_csv_dir(conn, csv)
            else:
                load_generated(conn, **{"end": END, **generate})
            made[key] = (conn, env)
        return made[key]

    yield make
    for conn, _ in made.values():
        conn.close()
