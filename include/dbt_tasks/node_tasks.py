"""The node tasks of a DAG as the producer execution mode sees them: which dbt nodes end each task, and the dbt
step (command) they run in. ``dbt_build`` publishes a task's result once dbt finished all of its nodes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include import settings
from include.dbt_tasks.selection import task_nodes

SOURCE_NAME = "greenery"
# The dbt commands the producer can run, in the order it runs them.
FRESHNESS, SNAPSHOT, BUILD, DOCS = "freshness", "snapshot", "build", "docs"
STEPS = (FRESHNESS, SNAPSHOT, BUILD, DOCS)
# Steps whose tasks stand for dbt nodes (the others for a whole command).
NODE_STEPS = (SNAPSHOT, BUILD)
_NODE_TASK_TYPES = ("DbtRunLocalOperator", "DbtTestLocalOperator", "DbtSnapshotLocalOperator", "DbtSeedLocalOperator")


@dataclass(frozen=True)
class NodeTask:
    """A node task of the DAG as the producer sees it: the dbt nodes whose results end it, and the step they
    run in."""

    task_id: str
    nodes: frozenset[str]
    step: str


def read_manifest() -> dict[str, Any]:
    """The manifest the DAGs render from."""
    return json.loads(Path(settings.DBT_MANIFEST_PATH).read_text())


def _single_parent_tests(manifest: Mapping[str, Any]) -> dict[str, set[str]]:
    """Tests by the one node they test (tests on two nodes have a task of their own)."""
    tests: dict[str, set[str]] = {}
    for unique_id, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") != "test":
            continue
        parents = [parent for parent in node.get("depends_on", {}).get("nodes", []) if parent.split(".")[0] != "macro"]
        if len(parents) == 1:
            tests.setdefault(parents[0], set()).add(unique_id)
    return tests


def _task_nodes(task: Any, tests_of: Mapping[str, set[str]]) -> frozenset[str]:
    unique_id = next(iter(task_nodes(task)), None)
    if not unique_id:
        return frozenset()
    if type(task).__name__ == "DbtTestLocalOperator" and unique_id.split(".")[0] != "test":
        return frozenset(tests_of.get(unique_id, ()))
    return frozenset({unique_id})


def node_tasks(tasks: Iterable[Any], manifest: Mapping[str, Any] | None = None) -> list[NodeTask]:
    """The dbt node tasks among ``tasks`` with the nodes each one stands for."""
    manifest = manifest if manifest is not None else read_manifest()
    tests_of = _single_parent_tests(manifest)
    found = []
    for task in tasks:
        kind = type(task).__name__
        if kind == "DbtSourceLocalOperator":
            sources = {uid for uid, source in manifest["sources"].items() if source["source_name"] == SOURCE_NAME}
            found.append(NodeTask(task.task_id, frozenset(sources), FRESHNESS))
        elif kind == "DbtDocsLocalOperator":
            found.append(NodeTask(task.task_id, frozenset(), DOCS))
        elif kind in _NODE_TASK_TYPES:
            step = SNAPSHOT if task.task_id.startswith("snapshots.") else BUILD
            found.append(NodeTask(task.task_id, _task_nodes(task, tests_of), step))
    return found


def step_nodes(selected: list[str] | None, pending: Iterable[NodeTask] | None = None) -> dict[str, list[str]] | None:
    """What the snapshot and build steps select: the run's selection (``validate_params``), narrowed on a retry to
    the nodes of the node tasks still ``pending``. None: everything."""
    if pending is None:
        if selected is None:
            return None
        return {SNAPSHOT: [uid for uid in selected if uid.startswith("snapshot.")], BUILD: list(selected)}
    pending = list(pending)
    nodes = {step: {node for f in pending if f.step == step for node in f.nodes} for step in NODE_STEPS}
    if selected is not None:
        nodes = {step: found & set(selected) for step, found in nodes.items()}
    return {step: sorted(found) for step, found in nodes.items()}
