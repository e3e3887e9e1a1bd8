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


# What a DAG may import: the DAG-facing packages of include/. The laptop/CI platform (include.local_platform)
# does not exist on a deployment, so neither a DAG file nor anything it imports may reach for it.
DAG_FACING = (
    "include.settings",
    "include.redaction",
    "include.dbt_tasks",
    "include.alerts",
    "include.history",
    "include.greenery_data",
)
DAG_FACING_DIRS = [DAGS_DIR.parent / "include" / name for name in ("dbt_tasks", "alerts", "history")]
PLATFORM = "include.local_platform"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_dags_import_only_the_dag_facing_packages() -> None:
    problems = []
    for dag_file in DAG_FILES:
        problems += [
            f"{dag_file.name} imports {name}"
            for name in sorted(_imports(dag_file))
            if name.startswith("include.") and not name.startswith(DAG_FACING)
        ]
    for folder in DAG_FACING_DIRS:
        for module in folder.rglob("*.py"):
            problems += [
                f"{module.relative_to(DAGS_DIR.parent)} imports {n}" for n in _imports(module) if n.startswith(PLATFORM)
            ]
    assert not problems, "\n".join(problems)


def test_parsing_the_dags_loads_nothing_of_the_local_platform(tmp_path: Path) -> None:
    """The import graph, not only the import lines: parse the DAG folder in a fresh process and look."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_DIR)!r})\n"
        "assert bag.dags and not bag.import_errors, bag.import_errors\n"
        f"print(sorted(m for m in sys.modules if m.startswith({PLATFORM!r})))\n"
    )
    env = {**os.environ, "GREENERY_DEV_SIMULATOR": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
