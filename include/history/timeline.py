"""The critical path of a dbt run: the chain of nodes that decided when it ended.

dbt starts a node once everything it depends on has finished (in ``dbt build`` also the tests of what it depends
on). Walking back from the node that finished last, each step goes to the node it waited for: of its upstream nodes
(and the earlier try of the same node, after a retry), the one that finished last before it started. What is on
that chain is where a faster model shortens the run; what is off it only fills threads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# dbt's execute timings exclude compiling, so a node starts after its upstream nodes end; a little slack keeps
# clocks that round differently (one task's machine against another's) from breaking the chain.
SLACK = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class TimedNode:
    """One try of one node: dbt's start and end of its execution."""

    unique_id: str
    started_at: dt.datetime
    completed_at: dt.datetime

    @property
    def seconds(self) -> float:
        return (self.completed_at - self.started_at).total_seconds()


def dependencies(manifest: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """What each node of ``manifest`` waits for in ``dbt build``: its parents (models, snapshots, seeds, sources)
    and, as dbt adds them, the data tests on those parents whose every parent is upstream of the node (a test on
    the node itself and one of its parents, a ``relationships`` test, does not hold the node back)."""
    nodes = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    parents = {
        unique_id: frozenset(p for p in (node.get("depends_on") or {}).get("nodes", []) if not p.startswith("macro."))
        for unique_id, node in nodes.items()
    }
    tests_on: dict[str, set[str]] = {}
    for unique_id, node_parents in parents.items():
        if unique_id.startswith("test."):
            for parent in node_parents:
                tests_on.setdefault(parent, set()).add(unique_id)
    above: dict[str, frozenset[str]] = {}

    def upstream(unique_id: str) -> frozenset[str]:
        if unique_id not in above:
            direct = parents.get(unique_id, frozenset())
            above[unique_id] = direct.union(*(upstream(parent) for parent in direct))
        return above[unique_id]

    waits_for = {}
    for unique_id, node_parents in parents.items():
        if unique_id.startswith(("test.", "unit_test.")):
            waits_for[unique_id] = node_parents
            continue
        ancestors = upstream(unique_id)
        tests = {test for parent in node_parents for test in tests_on.get(parent, ()) if parents[test] <= ancestors}
        waits_for[unique_id] = node_parents | tests
    return waits_for


def critical_path(nodes: Sequence[TimedNode], waits_for: Mapping[str, frozenset[str]]) -> list[int]:
    """The indexes in ``nodes`` of the critical path, first to last (empty without nodes). ``waits_for``: each
    node's upstream nodes by unique id (``dependencies``); a node none of whose upstream nodes ran ends the walk."""
    if not nodes:
        return []
    by_id: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        by_id.setdefault(node.unique_id, []).append(index)
    current = max(range(len(nodes)), key=lambda index: (nodes[index].completed_at, nodes[index].started_at))
    path = [current]
    seen = {current}
    while True:
        node = nodes[current]
        upstream = [*waits_for.get(node.unique_id, ()), node.unique_id]
        candidates = [
            index
            for unique_id in upstream
            for index in by_id.get(unique_id, ())
            if index not in seen and nodes[index].completed_at <= node.started_at + SLACK
        ]
        if not candidates:
            break
        current = max(candidates, key=lambda index: nodes[index].completed_at)
        path.append(current)
        seen.add(current)
    return path[::-1]
