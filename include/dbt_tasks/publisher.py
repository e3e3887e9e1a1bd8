"""How ``dbt_build`` publishes each node task's result as soon as dbt finished the task's nodes.

dbt calls back from its threads as each node finishes (``node_finished``); once every node of a node task has
finished, the task's result goes into the producer's one results document (``include.dbt_tasks.node_results``),
stamped with when dbt finished the task's last node. A thread of its own pushes the document as an XCom whenever
it changed, so dbt's threads never wait for Airflow, and results that arrive while a push is under way go out
together in the next one.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from include.dbt_tasks.node_results import (
    FAILED,
    NOT_RUN,
    RESULTS_KEY,
    SKIPPED,
    SUCCESS,
    document,
    result_lines,
)
from include.dbt_tasks.node_tasks import NodeTask
from include.history.artifacts import FAILED_STATUSES

log = logging.getLogger(__name__)

_SKIPPED_STATUSES = frozenset({"skipped"})


def outcome_of(statuses: Iterable[str]) -> str:
    """A node task's outcome from its nodes' dbt statuses. A node dbt skipped is ``NOT_RUN``: its task decides
    from its upstream tasks whether a failure stopped it or it runs on its own (a failing unit test skips its
    model although the tasks upstream passed)."""
    statuses = list(statuses)
    if any(status in FAILED_STATUSES for status in statuses):
        return FAILED
    if any(status in _SKIPPED_STATUSES for status in statuses):
        return NOT_RUN
    return SUCCESS


class Publisher:
    """Keeps the results of one try of the producer and pushes them (module docstring)."""

    def __init__(
        self,
        ti: Any,
        followers: list[NodeTask],
        names: Mapping[str, str],
        clear_number: int = 0,
        try_number: int = 1,
    ) -> None:
        self.ti = ti
        self.names = names
        self.followers = list(followers)
        self.pending = {follower.task_id: follower for follower in followers}
        self.results: dict[str, dict[str, Any]] = {}
        self.document = document(clear_number, try_number, time.time())
        self.invocation_id: str | None = None
        self.command = "build"
        self.pushes = 0
        self._version = self._pushed_version = 0
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- dbt's side --------------------------------------------------------------------------------------------
    def node_finished(self, unique_id: str, status: str, message: str, failures: int, seconds: float) -> None:
        with self._lock:
            self.results[unique_id] = {
                "unique_id": unique_id,
                "name": self.names.get(unique_id, unique_id.split(".")[-1]),
                "status": status,
                "message": message or None,
                "failures": failures or None,
                "execution_seconds": round(seconds, 3),
                "finished_at": time.time(),
            }
            ready = [
                follower
                for follower in self.pending.values()
                if unique_id in follower.nodes and follower.nodes <= self.results.keys()
            ]
            for follower in ready:
                self._publish(follower, [self.results[node] for node in sorted(follower.nodes)])

    def _publish(
        self, follower: NodeTask, nodes: list[dict[str, Any]], outcome: str | None = None, why: str = ""
    ) -> None:
        """Put ``follower``'s result in the document (the lock is held)."""
        self.pending.pop(follower.task_id, None)
        finished = [node["finished_at"] for node in nodes if node.get("finished_at")]
        self.document["tasks"][follower.task_id] = {
            "outcome": outcome or outcome_of(node["status"] for node in nodes),
            "nodes": nodes,
            "invocation_id": self.invocation_id,
            "command": self.command,
            "log": result_lines(nodes, FAILED_STATUSES),
            "why": why,
            "finished_at": max(finished) if finished else time.time(),
        }
        self._version += 1
        self._changed.set()

    def skip(self, followers: Iterable[NodeTask], why: str) -> None:
        """Publish ``SKIPPED`` for node tasks this try builds nothing for."""
        with self._lock:
            for follower in followers:
                self._publish(follower, [], SKIPPED, why)

    def finish_step(self, step: str, outcome: str | None = None, why: str = "") -> None:
        """After a step's command: publish the step's tasks not published yet. ``outcome`` for a whole-step
        task (freshness, docs); without it a task's unreported nodes did not run (``NOT_RUN``)."""
        with self._lock:
            for follower in [f for f in self.pending.values() if f.step == step]:
                nodes = [self.results[node] for node in sorted(follower.nodes) if node in self.results]
                if outcome is not None:
                    self._publish(follower, nodes, outcome, why)
                elif follower.nodes and len(nodes) == len(follower.nodes):
                    self._publish(follower, nodes)
                elif any(node["status"] in FAILED_STATUSES for node in nodes):
                    self._publish(follower, nodes, FAILED)
                else:
                    self._publish(follower, nodes, NOT_RUN, why or f"dbt {step} did not run every node of this task")

    def orphan_failures(self) -> list[str]:
        """Nodes dbt failed that no node task stands for (unit tests, hooks): only the producer can report them."""
        owned = {node for follower in self.followers for node in follower.nodes}
        return sorted(
            result["name"]
            for unique_id, result in self.results.items()
            if result["status"] in FAILED_STATUSES and unique_id not in owned
        )

    def published(self) -> dict[str, Any]:
        """The document as it stands (a copy)."""
        with self._lock:
            return copy.deepcopy(self.document)

    # -- Airflow's side ----------------------------------------------------------------------------------------
    def _push(self) -> None:
        with self._lock:
            version, value = self._version, copy.deepcopy(self.document)
        self.ti.xcom_push(key=RESULTS_KEY, value=value)
        self._pushed_version = max(self._pushed_version, version)
        self.pushes += 1

    def _pushing(self) -> None:
        while True:
            self._changed.wait()
            self._changed.clear()
            stopping = self._stopping
            try:
                self._push()
            except Exception:  # the next change pushes everything again; the last push is checked in stop()
                log.exception("Could not publish the node tasks' results; trying again with the next result")
            if stopping:
                return

    def __enter__(self) -> Publisher:
        """Pushes the empty document at once (the node tasks then know this try serves their clear of the run),
        then each change."""
        self._push()
        self._thread = threading.Thread(target=self._pushing, name="publish-node-results", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Pushes what is left, from this thread if the pusher could not."""
        self._stopping = True
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._pushed_version < self._version:
            self._push()
