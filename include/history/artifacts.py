"""What a dbt command leaves in its ``target/`` directory, read into small records.

``run_results.json`` (build, run, test, snapshot, seed) and ``sources.json`` (``dbt source freshness``) say what
ran and how it ended; ``manifest.json`` names the nodes (a test's model and column). The alerts and the run
history both read dbt's results through this module, so a message and a history row never disagree.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Statuses dbt gives a node result: model/snapshot/seed success|error|skipped, test pass|fail|warn|error,
# source freshness pass|warn|error|runtime error.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
WARNED_STATUSES = frozenset({"warn"})
FRESHNESS_COMMAND = "source freshness"


@dataclass(frozen=True)
class NodeResult:
    """One node's result in one dbt invocation (a model built, a test run, a source's freshness checked)."""

    unique_id: str
    resource_type: str
    name: str
    status: str
    message: str | None = None
    failures: int | None = None
    execution_seconds: float | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    rows_affected: int | None = None
    relation_name: str | None = None
    # Data tests: the node (model, snapshot, source) and column they test, by name.
    tested_node: str | None = None
    tested_column: str | None = None
    # Source freshness: the newest row, when dbt looked, how old the row was and the thresholds.
    max_loaded_at: datetime | None = None
    snapshotted_at: datetime | None = None
    age_seconds: float | None = None
    warn_after: str | None = None
    error_after: str | None = None

    @property
    def is_failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def is_warned(self) -> bool:
        return self.status in WARNED_STATUSES


@dataclass(frozen=True)
class DbtInvocation:
    """One dbt command: its id, what it was, when it ran and every node result."""

    invocation_id: str
    command: str
    dbt_version: str | None
    started_at: datetime | None
    generated_at: datetime | None
    elapsed_seconds: float | None
    selector: str | None
    results: tuple[NodeResult, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[NodeResult]:
        return [result for result in self.results if result.is_failed]

    @property
    def warned(self) -> list[NodeResult]:
        return [result for result in self.results if result.is_warned]

    @property
    def status(self) -> str:
        """``error`` when any node failed, else ``warn`` when any warned, else ``success``."""
        if self.failed:
            return "error"
        if self.warned:
            return "warn"
        return "success"


def read_invocations(target_dir: Path | str) -> list[DbtInvocation]:
    """The dbt invocations whose artifacts are in ``target_dir`` (run_results.json, sources.json), oldest first.

    Missing files give an empty list; an unreadable file is logged and skipped, never raised.
    """
    target = Path(target_dir)
    manifest = _read_json(target / "manifest.json") or {}
    invocations = []
    run_results = _read_json(target / "run_results.json")
    if run_results is not None:
        invocations.append(_invocation_from_run_results(run_results, manifest))
    sources = _read_json(target / "sources.json")
    if sources is not None:
        invocations.append(_invocation_from_sources(sources, manifest))
    unique = {invocation.invocation_id: invocation for invocation in invocations}
    return sorted(unique.values(), key=lambda invocation: invocation.generated_at or datetime.min)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("Could not read dbt artifact %s: %s", path, error)
        return None


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _execute_timing(result: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    for step in result.get("timing") or []:
        if step.get("name") == "execute":
            return _timestamp(step.get("started_at")), _timestamp(step.get("completed_at"))
    return None, None


def _name_from_unique_id(unique_id: str) -> str:
    parts = unique_id.split(".")
    kind = parts[0]
    if kind == "source" and len(parts) >= 4:
        return f"{parts[2]}.{parts[3]}"
    if kind == "unit_test" and len(parts) >= 4:
        return parts[3]
    return parts[2] if len(parts) >= 3 else unique_id


def _manifest_node(manifest: dict[str, Any], unique_id: str) -> dict[str, Any]:
    for section in ("nodes", "sources", "unit_tests"):
        node = (manifest.get(section) or {}).get(unique_id)
        if node:
            return node
    return {}


def node_name(manifest: dict[str, Any], unique_id: str) -> str:
    """A node's name as the history and the alerts show it: ``orders`` of a model, ``greenery.orders`` of a source."""
    node = _manifest_node(manifest, unique_id)
    if node.get("resource_type") == "source":
        return f"{node['source_name']}.{node['name']}"
    return node.get("name") or _name_from_unique_id(unique_id)


def _tested(manifest: dict[str, Any], unique_id: str) -> tuple[str | None, str | None]:
    node = _manifest_node(manifest, unique_id)
    # Generic tests name the node they are attached to; a singular test only lists what it reads.
    attached = node.get("attached_node") or ((node.get("depends_on") or {}).get("nodes") or [None])[-1]
    if node.get("resource_type") == "unit_test":
        return node.get("model"), None
    return (node_name(manifest, attached) if attached else None), node.get("column_name")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _invocation_from_run_results(data: dict[str, Any], manifest: dict[str, Any]) -> DbtInvocation:
    metadata = data.get("metadata") or {}
    args = data.get("args") or {}
    results = []
    for raw in data.get("results") or []:
        unique_id = raw["unique_id"]
        resource_type = unique_id.split(".")[0]
        started_at, completed_at = _execute_timing(raw)
        tested_node, tested_column = (None, None)
        if resource_type in ("test", "unit_test"):
            tested_node, tested_column = _tested(manifest, unique_id)
        rows_affected = _int((raw.get("adapter_response") or {}).get("rows_affected"))
        results.append(
            NodeResult(
                unique_id=unique_id,
                resource_type=resource_type,
                name=node_name(manifest, unique_id),
                status=str(raw.get("status")),
                message=raw.get("message"),
                failures=_int(raw.get("failures")),
                execution_seconds=raw.get("execution_time"),
                started_at=started_at,
                completed_at=completed_at,
                # dbt reports -1 when the database does not say (views, DDL).
                rows_affected=rows_affected if rows_affected is not None and rows_affected >= 0 else None,
                relation_name=raw.get("relation_name"),
                tested_node=tested_node,
                tested_column=tested_column,
            )
        )
    return DbtInvocation(
        invocation_id=metadata.get("invocation_id") or "unknown",
        command=_command(args),
        dbt_version=metadata.get("dbt_version"),
        started_at=_timestamp(metadata.get("invocation_started_at")),
        generated_at=_timestamp(metadata.get("generated_at")),
        elapsed_seconds=data.get("elapsed_time"),
        selector=_selector(args),
        results=tuple(results),
    )


def _command(args: dict[str, Any]) -> str:
    which = str(args.get("which") or "unknown")
    return {"generate": "docs generate", "source-freshness": FRESHNESS_COMMAND}.get(which, which)


def _selector(args: dict[str, Any]) -> str | None:
    select = args.get("select") or []
    if isinstance(select, str):
        select = [select]
    return " ".join(str(item) for item in select) or None


def _period(threshold: dict[str, Any] | None) -> str | None:
    if not threshold or threshold.get("count") is None or not threshold.get("period"):
        return None
    count = threshold["count"]
    return f"{count} {threshold['period']}{'' if count == 1 else 's'}"


def _invocation_from_sources(data: dict[str, Any], manifest: dict[str, Any]) -> DbtInvocation:
    metadata = data.get("metadata") or {}
    results = []
    for raw in data.get("results") or []:
        unique_id = raw["unique_id"]
        criteria = raw.get("criteria") or {}
        started_at, completed_at = _execute_timing(raw)
        results.append(
            NodeResult(
                unique_id=unique_id,
                resource_type="source",
                name=node_name(manifest, unique_id),
                status=str(raw.get("status")),
                # A runtime error (table missing, bad loaded_at_field) carries dbt's error text in `error`.
                message=raw.get("error"),
                execution_seconds=raw.get("execution_time"),
                started_at=started_at,
                completed_at=completed_at,
                max_loaded_at=_timestamp(raw.get("max_loaded_at")),
                snapshotted_at=_timestamp(raw.get("snapshotted_at")),
                age_seconds=raw.get("max_loaded_at_time_ago_in_s"),
                warn_after=_period(criteria.get("warn_after")),
                error_after=_period(criteria.get("error_after")),
            )
        )
    return DbtInvocation(
        invocation_id=metadata.get("invocation_id") or "unknown",
        command=FRESHNESS_COMMAND,
        dbt_version=metadata.get("dbt_version"),
        started_at=_timestamp(metadata.get("invocation_started_at")),
        generated_at=_timestamp(metadata.get("generated_at")),
        elapsed_seconds=data.get("elapsed_time"),
        selector=None,
        results=tuple(results),
    )
