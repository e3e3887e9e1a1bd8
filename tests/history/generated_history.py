"""Generated run history: what ``greenery_daily`` and ``greenery_hourly_snapshot`` leave in ``dbt_meta`` over many days
in the producer mode, written through the history store's own code (``store.write_invocations``, with the node
tasks ``dbt_build`` names), from the real project's manifest.

Each node gets a steady time of its own with some noise; a run's nodes are scheduled on dbt's 4 threads in
dependency order (a node starts once its parents and their tests have ended), so runs have a real critical path.
Planted in it, for the tests to find:

- the newest daily run: ``fct_orders`` takes ``REGRESSION_FACTOR`` times its usual time, and its test
  ``FAILING_TEST`` fails on ``FAILING_ROWS`` rows (what depends on ``fct_orders`` is skipped, as ``dbt build`` does);
- the daily run two days before: ``product_conversion`` fails in ``dbt_build`` and on both retries of its own task;
- every fifth day ``WARNING_TEST`` warns; the events table is stale every tenth day (warn) and the day after
  (error);
- one hourly run: ``orders_snapshot`` fails in ``dbt_build`` and passes on its task's retry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import heapq
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from include.history import store
from include.history.artifacts import FRESHNESS_COMMAND, DbtInvocation, NodeResult
from include.history.timeline import dependencies
from include.history.trends import hours

THREADS = 4
DAILY_HOUR, HOURLY_MINUTE = 6, 30
REGRESSION_MODEL = "fct_orders"
REGRESSION_FACTOR = 6.0
FAILING_TEST = "not_null_fct_orders_order_id"
FAILING_ROWS = 17
WARNING_TEST = "accepted_values_fct_orders_status__preparing__shipped__delivered"
BROKEN_MODEL = "product_conversion"
HEALED_SNAPSHOT = "orders_snapshot"
STALE_SOURCE = "greenery.events"
FRESHNESS = {"greenery.users": ("24 hours", "48 hours"), "greenery.orders": ("3 hours", "12 hours")}
FRESHNESS[STALE_SOURCE] = ("2 hours", "6 hours")


@dataclass
class GeneratedHistory:
    """What was written: the runs of each DAG (oldest first) and where the planted facts are."""

    now: dt.datetime
    daily_runs: list[str] = field(default_factory=list)
    hourly_runs: list[str] = field(default_factory=list)
    broken_run: str = ""
    healed_run: str = ""
    invocations: int = 0
    node_results: int = 0
    freshness_checks: int = 0
    usual_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def newest_daily_run(self) -> str:
        return self.daily_runs[-1]


def _steady_seconds(unique_id: str) -> float:
    """A node's usual time, the same in every session: models and snapshots take seconds, tests a fraction."""
    fraction = int(hashlib.sha256(unique_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if unique_id == f"model.greenery.{REGRESSION_MODEL}":
        return 1.5
    if unique_id.startswith(("model.", "snapshot.")):
        return 0.4 + 3.0 * fraction
    return 0.05 + 0.4 * fraction


def _node_task(manifest: Mapping[str, Any], unique_id: str) -> str:
    """The node task that shows a node's result, as Cosmos names them for these DAGs."""
    kind, _, name = unique_id.split(".")[:3]
    if kind in ("model", "snapshot"):
        group = "models" if kind == "model" else "snapshots"
        return f"{group}.{name}.run" if kind == "model" else f"{group}.{name}.snapshot"
    if kind == "source":
        return "source_freshness"
    parents = [p for p in manifest["nodes"].get(unique_id, {}).get("depends_on", {}).get("nodes", []) if "." in p]
    parent = parents[-1].split(".")[2] if parents else name
    return f"{'snapshots' if parents and parents[-1].startswith('snapshot.') else 'models'}.{parent}.test"


class _Simulator:
    def __init__(self, manifest: Mapping[str, Any], seed: int) -> None:
        self.manifest = manifest
        self.random = random.Random(seed)
        self.waits_for = dependencies(manifest)
        nodes = {**manifest["nodes"], **manifest.get("unit_tests", {})}
        self.names = {uid: node["name"] for uid, node in nodes.items()}
        on_snapshots = {
            uid
            for uid, node in manifest["nodes"].items()
            if node["resource_type"] == "test" and any(p.startswith("snapshot.") for p in node["depends_on"]["nodes"])
        }
        snapshots = {uid for uid in nodes if uid.startswith("snapshot.")}
        self.snapshot_step = sorted(snapshots | on_snapshots)
        self.build_step = sorted(
            uid for uid in nodes if uid.split(".")[0] in ("model", "test", "unit_test") and uid not in on_snapshots
        )
        self.by_name = {name: uid for uid, name in self.names.items()}

    def step(
        self, nodes: list[str], start: dt.datetime, slow: Mapping[str, float], outcome: Mapping[str, tuple]
    ) -> list[NodeResult]:
        """``nodes`` run on dbt's threads from ``start`` in dependency order; ``outcome``: (status, failures,
        message) of chosen nodes; what depends on a failed node is skipped."""
        chosen = set(nodes)
        waits = {uid: {p for p in self.waits_for.get(uid, ()) if p in chosen} for uid in nodes}
        children: dict[str, set[str]] = {}
        for uid, parents in waits.items():
            for parent in parents:
                children.setdefault(parent, set()).add(uid)
        done: dict[str, dt.datetime] = {}
        results: dict[str, NodeResult] = {}
        skipped: set[str] = set()
        threads = [start] * THREADS
        ready = [(start, uid) for uid in nodes if not waits[uid]]
        heapq.heapify(ready)
        left = {uid: len(parents) for uid, parents in waits.items()}
        while ready:
            ready_at, uid = heapq.heappop(ready)
            free_at = heapq.heappop(threads)
            began = max(ready_at, free_at) + dt.timedelta(milliseconds=self.random.randint(20, 80))
            built = uid.startswith(("model.", "snapshot.", "seed."))
            status, failures, message = outcome.get(uid, ("success" if built else "pass", 0, None))
            if uid in skipped:
                heapq.heappush(threads, free_at)
                results[uid] = NodeResult(uid, uid.split(".")[0], self.names[uid], "skipped")
                ended = ready_at
            else:
                seconds = _steady_seconds(uid) * slow.get(uid, 1.0) * self.random.uniform(0.85, 1.15)
                ended = began + dt.timedelta(seconds=seconds)
                heapq.heappush(threads, ended)
                results[uid] = self._result(uid, status, failures, message, began, ended)
                if status in ("error", "fail"):
                    skipped |= self._descendants(uid, children)
            done[uid] = ended
            for child in children.get(uid, ()):
                left[child] -= 1
                if not left[child]:
                    heapq.heappush(ready, (max(done[p] for p in waits[child]), child))
        return [results[uid] for uid in nodes if uid in results]

    def _descendants(self, uid: str, children: Mapping[str, set[str]]) -> set[str]:
        found, todo = set(), [uid]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in found and not child.startswith("test."):
                    found.add(child)
                    todo.append(child)
        return found | {t for t in self.build_step if t.startswith("test.") and self.waits_for[t] & found}

    def _result(
        self, uid: str, status: str, failures: int, message: str | None, began: dt.datetime, ended: dt.datetime
    ) -> NodeResult:
        kind = uid.split(".")[0]
        tested = self.names.get(next(iter(self.waits_for.get(uid, ())), ""), None) if kind == "test" else None
        return NodeResult(
            unique_id=uid,
            resource_type=kind,
            name=self.names[uid],
            status=status,
            message=message,
            failures=failures if kind in ("test", "unit_test") else None,
            execution_seconds=round((ended - began).total_seconds(), 3),
            started_at=began,
            completed_at=ended,
            tested_node=tested,
        )


def _invocation(command: str, results: list[NodeResult], started: dt.datetime) -> DbtInvocation:
    ended = max([r.completed_at for r in results if r.completed_at] or [started])
    return DbtInvocation(
        invocation_id=str(uuid.uuid4()),
        command=command,
        dbt_version="1.11.2",
        started_at=started,
        generated_at=ended + dt.timedelta(milliseconds=200),
        elapsed_seconds=round((ended - started).total_seconds() + 0.2, 3),
        selector=None,
        results=tuple(results),
    )


class _Writer:
    def __init__(self, connection: Any, manifest: Mapping[str, Any], history: GeneratedHistory) -> None:
        self.connection = connection
        self.manifest = manifest
        self.history = history

    def write(self, dag_id: str, run_id: str, task_id: str, try_number: int, invocations: list[DbtInvocation]) -> None:
        ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, try_number=try_number)
        node_tasks = (
            {r.unique_id: _node_task(self.manifest, r.unique_id) for i in invocations for r in i.results}
            if task_id == "dbt_build"
            else None
        )
        store.write_invocations(self.connection, invocations, {"ti": ti}, node_tasks)
        self.history.invocations += len(invocations)
        for invocation in invocations:
            if invocation.command == FRESHNESS_COMMAND:
                self.history.freshness_checks += len(invocation.results)
            else:
                self.history.node_results += len(invocation.results)


def _freshness(simulator: _Simulator, day: int, started: dt.datetime) -> DbtInvocation:
    results = []
    for name, (warn, error) in FRESHNESS.items():
        age_hours = 0.5 + simulator.random.random()
        if name == STALE_SOURCE and day % 10 == 0:
            age_hours = 3.5  # over warn_after
        if name == STALE_SOURCE and day % 10 == 1:
            age_hours = 7.0  # over error_after
        status = "error" if age_hours > hours(error) else "warn" if age_hours > hours(warn) else "pass"
        checked = started + dt.timedelta(seconds=0.3)
        results.append(
            NodeResult(
                unique_id=f"source.greenery.{name}",
                resource_type="source",
                name=name,
                status=status,
                execution_seconds=0.05,
                started_at=started,
                completed_at=checked,
                max_loaded_at=checked - dt.timedelta(hours=age_hours),
                snapshotted_at=checked,
                age_seconds=age_hours * 3600,
                warn_after=warn,
                error_after=error,
            )
        )
    return dataclasses.replace(_invocation(FRESHNESS_COMMAND, results, started), elapsed_seconds=0.9)


def generate(
    connection: Any, manifest: Mapping[str, Any], days: int = 90, now: dt.datetime | None = None, seed: int = 28
) -> GeneratedHistory:
    """``days`` days of both DAGs' history up to ``now``, written to ``connection``'s ``dbt_meta``."""
    now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    history = GeneratedHistory(now=now)
    simulator = _Simulator(manifest, seed)
    writer = _Writer(connection, manifest, history)
    store.ensure_tables(connection)
    uid = simulator.by_name
    first = (now - dt.timedelta(days=days)).replace(minute=0, second=0)
    hour = first
    while hour + dt.timedelta(minutes=HOURLY_MINUTE) < now:
        started = hour + dt.timedelta(minutes=HOURLY_MINUTE, seconds=8)
        if hour.hour == DAILY_HOUR and hour + dt.timedelta(minutes=10) < now:
            _daily_run(simulator, writer, hour, (now - hour).days)
        run_id = f"scheduled__{(hour - dt.timedelta(hours=1, minutes=-HOURLY_MINUTE)).isoformat()}"
        # The healed run is about 20 hours old whatever the time of day: among the last 30 hourly runs the pages list.
        healed = not history.healed_run and (now - hour) < dt.timedelta(hours=20)
        outcome = {uid[HEALED_SNAPSHOT]: ("error", 0, "could not serialize access")} if healed else {}
        results = simulator.step(simulator.snapshot_step, started, {}, outcome)
        writer.write("greenery_hourly_snapshot", run_id, "dbt_build", 1, [_invocation("build", results, started)])
        if healed:
            retry = started + dt.timedelta(minutes=2)
            results = simulator.step([uid[HEALED_SNAPSHOT]], retry, {}, {})
            task = f"snapshots.{HEALED_SNAPSHOT}.snapshot"
            writer.write("greenery_hourly_snapshot", run_id, task, 2, [_invocation("snapshot", results, retry)])
            history.healed_run = run_id
        history.hourly_runs.append(run_id)
        hour += dt.timedelta(hours=1)
    history.usual_seconds = {name: _steady_seconds(u) for name, u in uid.items()}
    return history


def _daily_run(simulator: _Simulator, writer: _Writer, at: dt.datetime, days_ago: int) -> None:
    uid, history = simulator.by_name, writer.history
    run_id = f"scheduled__{(at - dt.timedelta(days=1)).isoformat()}"
    started = at + dt.timedelta(seconds=15)
    newest, broken = days_ago == 0, days_ago == 2
    freshness = _freshness(simulator, days_ago, started)
    snapshot_start = started + dt.timedelta(seconds=4)
    snapshots = _invocation("build", simulator.step(simulator.snapshot_step, snapshot_start, {}, {}), snapshot_start)
    build_start = snapshots.generated_at + dt.timedelta(seconds=3)
    slow = {uid[REGRESSION_MODEL]: REGRESSION_FACTOR} if newest else {}
    outcome: dict[str, tuple] = {}
    if newest:
        outcome[uid[FAILING_TEST]] = ("fail", FAILING_ROWS, f"Got {FAILING_ROWS} results, configured to fail if != 0")
    if days_ago % 5 == 0:
        outcome[uid[WARNING_TEST]] = ("warn", 2 + days_ago % 3, "Got 2 results, configured to warn if != 0")
    error = 'relation "analytics_product.fct_page_views" does not exist'
    if broken:
        outcome[uid[BROKEN_MODEL]] = ("error", 0, error)
    build = _invocation("build", simulator.step(simulator.build_step, build_start, slow, outcome), build_start)
    writer.write("greenery_daily", run_id, "dbt_build", 1, [freshness, snapshots, build])
    if broken:
        for try_number in (2, 3):
            retry = build.generated_at + dt.timedelta(minutes=try_number)
            results = simulator.step([uid[BROKEN_MODEL]], retry, {}, {uid[BROKEN_MODEL]: ("error", 0, error)})
            task = f"models.{BROKEN_MODEL}.run"
            writer.write("greenery_daily", run_id, task, try_number, [_invocation("run", results, retry)])
        history.broken_run = run_id
    history.daily_runs.append(run_id)
