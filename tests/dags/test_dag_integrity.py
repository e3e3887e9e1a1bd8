"""DAG integrity, in the spirit of the Astro project template: every DAG file imports with no connections or
variables defined, and every DAG carries what an operator needs in the UI."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))


def _dag_bag(monkeypatch: pytest.MonkeyPatch, simulator: bool):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("GREENERY_DEV_SIMULATOR", "1" if simulator else "0")
    for key in list(os.environ):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            monkeypatch.delenv(key)
    return DagBag(dag_folder=str(DAGS_DIR))  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES


@pytest.fixture(scope="module", params=[False, True], ids=["production", "dev-simulator"])
def dag_bag(request):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _dag_bag(monkeypatch, request.param)


def test_there_are_dag_files() -> None:
    assert DAG_FILES, f"no DAG files in {DAGS_DIR}"


def test_every_dag_file_imports_without_connections(dag_bag) -> None:
    assert dag_bag.import_errors == {}, "\n".join(f"{f}: {e}" for f, e in dag_bag.import_errors.items())
    assert dag_bag.dags, "the DAG folder produced no DAGs"


def test_every_dag_is_documented_tagged_owned_and_retried(dag_bag) -> None:
    problems = []
    for dag_id, dag in dag_bag.dags.items():
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        if not dag.doc_md:
            problems.append(f"{dag_id}: no doc_md")
        owner = dag.default_args.get("owner")
        if not owner or owner == "airflow":
            problems.append(f"{dag_id}: default_args has no owner of its own")
        if dag.default_args.get("retries", 0) < 2:
            problems.append(f"{dag_id}: default_args retries < 2")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_catchup_is_set_deliberately(dag_file: Path) -> None:
    """`catchup` is passed explicitly to every DAG, so nobody relies on a config default by accident."""
    tree = ast.parse(dag_file.read_text())
    dag_calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("DAG", "dag", "DbtDag")
    ]
    assert dag_calls, f"{dag_file.name} defines no DAG"
    for call in dag_calls:
        assert any(kw.arg == "catchup" for kw in call.keywords), f"{dag_file.name}: DAG without catchup="
