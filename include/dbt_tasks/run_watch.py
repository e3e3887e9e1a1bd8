"""One read per DAG run for all of its node tasks waiting in the triggerer.

Every node task of a producer-mode run waits in the triggerer from the start of the run. Were each trigger to ask
Airflow for its own answer, 70 of them would make about 140 Task SDK calls a second, all served one after another
by the triggerer's own loop, which also decides when their events reach the database. Instead the triggers of one
run, which run in the same asyncio loop of the triggerer, share one ``RunWatch``: one task that reads the run's task
states and the producer's published results (``include.dbt_tasks.node_results``) and wakes every trigger of the run
with the same ``Snapshot``. It reads the results every ``FAST_SECONDS`` while the producer runs, and the task states
every ``SLOW_SECONDS``; it stops when the run's last trigger leaves it (a trigger ends, is cancelled, or moves to
another triggerer: the next one to subscribe starts a new watch).

The reads go through the Task SDK as any trigger's would (``Reader``); tests hand in their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from include.dbt_tasks.node_results import RESULTS_KEY
from include.dbt_tasks.task_ids import PRODUCER_TASK_ID, VALIDATE_TASK_ID
from include.dbt_tasks.upstream_gate import RunGraph, state_name

log = logging.getLogger(__name__)

# While the producer runs, results arrive every few hundred milliseconds; otherwise only task states change.
FAST_SECONDS = 0.25
SLOW_SECONDS = 1.0
_PRODUCER_BUSY = frozenset({"queued", "running", "restarting"})


class Reader(Protocol):
    """How a watch reads one run: its task states, and one task's XCom."""

    async def states(self, dag_id: str, run_id: str) -> dict[str, str | None]: ...

    async def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any: ...


class TaskSdkReader:
    """The Task SDK's calls, from a thread (the trigger's supervisor answers them while the loop runs on)."""

    async def states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        found = await asyncio.to_thread(RuntimeTaskInstance.get_task_states, dag_id=dag_id, run_ids=[run_id])
        return {task_id: state_name(state) for task_id, state in (found.get(run_id) or {}).items()}

    async def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        from airflow.sdk.execution_time.xcom import XCom

        return await asyncio.to_thread(
            XCom.get_one, run_id=run_id, key=key, task_id=task_id, dag_id=dag_id, map_index=-1
        )


@dataclass(frozen=True)
class Snapshot:
    """What one read of a run found. ``published``: the producer's document (None before its first push);
    ``plan``: what ``validate_params`` returned, once it succeeded."""

    version: int
    states: Mapping[str, str | None]
    published: Mapping[str, Any] | None
    plan: Mapping[str, Any] | None
    read_at: float
    graph: RunGraph | None = None
    _effective: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    def effective_states(self) -> Mapping[str, str | None]:
        """The states with the tasks skipped because of an upstream failure counted ``upstream_failed``, worked
        out once per snapshot for all the run's triggers."""
        if not self._effective and self.graph is not None:
            self._effective.update(self.graph.effective_states(self.states))
        return self._effective


class RunWatch:
    """The shared read of one DAG run (module docstring). ``subscribe`` before waiting, ``unsubscribe`` after."""

    def __init__(self, dag_id: str, run_id: str, reader: Reader) -> None:
        self.dag_id, self.run_id, self.reader = dag_id, run_id, reader
        self.subscribers = 0
        self.graph: RunGraph | None = None
        self.snapshot: Snapshot | None = None
        self.reads = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self._states: dict[str, str | None] = {}
        self._states_at = 0.0

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll(), name=f"run-watch {self.run_id}")

    async def next(self, after: int) -> Snapshot:
        """The first snapshot newer than version ``after`` (-1: any)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.snapshot is not None and self.snapshot.version > after)
            return self.snapshot

    async def _read(self, now: float) -> Snapshot:
        previous = self.snapshot
        if previous is None or now - self._states_at >= SLOW_SECONDS:
            self._states, self._states_at = await self.reader.states(self.dag_id, self.run_id), now
        published = await self.reader.xcom(self.dag_id, self.run_id, PRODUCER_TASK_ID, RESULTS_KEY)
        plan = previous.plan if previous is not None else None
        if plan is None and self._states.get(VALIDATE_TASK_ID) == "success":
            plan = await self.reader.xcom(self.dag_id, self.run_id, VALIDATE_TASK_ID, "return_value") or {}
        self.reads += 1
        version = previous.version + 1 if previous is not None else 0
        return Snapshot(version, dict(self._states), published, plan, now, self.graph)

    async def _poll(self) -> None:
        failures = 0
        while self.subscribers > 0:
            try:
                snapshot = await self._read(time.time())
                failures = 0
            except Exception as error:  # a read the supervisor could not answer: the next one may
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("Reading run %s of %s failed (%s): trying again", self.run_id, self.dag_id, error)
                await asyncio.sleep(SLOW_SECONDS)
                continue
            async with self._changed:
                self.snapshot = snapshot
                self._changed.notify_all()
            producer_busy = snapshot.states.get(PRODUCER_TASK_ID) in _PRODUCER_BUSY
            await asyncio.sleep(FAST_SECONDS if producer_busy else SLOW_SECONDS)


# One watch per run and per event loop (the triggerer runs one loop; tests start several).
_WATCHES: dict[tuple[int, str, str], RunWatch] = {}


def subscribe(dag_id: str, run_id: str, reader: Reader | None = None) -> RunWatch:
    """The run's watch, started if no trigger of the run watches it yet. Its first trigger sets its ``graph``."""
    key = (id(asyncio.get_running_loop()), dag_id, run_id)
    watch = _WATCHES.get(key)
    if watch is None or (watch.subscribers == 0 and not watch.running()):
        watch = _WATCHES[key] = RunWatch(dag_id, run_id, reader or TaskSdkReader())
    watch.subscribers += 1
    if not watch.running():
        watch.start()
    return watch


def unsubscribe(watch: RunWatch) -> None:
    """A trigger leaves its run's watch; the last one to leave stops it."""
    watch.subscribers -= 1
    if watch.subscribers <= 0:
        if watch._task is not None:
            watch._task.cancel()
        key = next((key for key, found in _WATCHES.items() if found is watch), None)
        if key is not None:
            del _WATCHES[key]
