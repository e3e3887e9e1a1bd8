"""Where the time of one Airflow task or one dbt command goes, read from its log.

A Cosmos task log (Airflow 3 writes JSON lines) holds Airflow's own milestones (the worker's DAG-file parse),
the start of the dbt command (``Starting dbt``, ``include.dbt_tasks.parsed_project``; Cosmos' own ``Trying to run
dbtRunner with`` in older results), how dbt loaded the project, and dbt's console output with its per-node timings
(``1 of 1 OK created sql view model ... [CREATE VIEW in 0.12s]``: the node's ``execution_time``, as in
run_results.json) and the command's elapsed time (``Finished running ... (0.81s).``). The same dbt lines come
out of a bare ``dbt`` command, so both sides of the comparison are split the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from include.dbt_tasks.parsed_project import LOADED_IN_FULL, STARTING_DBT

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# "... [CREATE VIEW in 0.12s]", "... [PASS in 0.05s]", "... [SELECT 30 in 0.32s]", "... [WARN 3 in 0.1s]"
NODE_RESULT = re.compile(r"^\s*\d+ of \d+ (?!START)(\S+) .*\[(.*?) in (\d+(?:\.\d+)?)s\]\s*$")
FINISHED = re.compile(r"Finished running .* \((\d+(?:\.\d+)?)s\)\.")
FULL_PARSE = "Unable to do partial parsing"
COSMOS_STARTING_DBT = "Trying to run dbtRunner"
FOUND = re.compile(r"^\s*Found \d+ ")
DBT_CLOCK = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\s+(.*)$")


@dataclass
class DbtCommandTiming:
    """What dbt itself reports about one invocation."""

    node_seconds: float = 0.0  # sum of the nodes' execution times (what run_results.json calls execution_time)
    nodes: int = 0
    hook_seconds: float = 0.0  # on-run-start / on-run-end hooks
    elapsed_seconds: float | None = None  # "Finished running ... (Xs)": dbt's own run phase, nodes + connections
    full_parse: bool = False  # dbt could not reuse its partial-parse file and parsed the whole project
    node_results: dict[str, int] = field(default_factory=dict)

    @property
    def work_seconds(self) -> float:
        """dbt's own time for its nodes: the run phase it reports (run_results.json's ``elapsed_time``, which
        counts parallel nodes once), else the sum of the nodes' execution times."""
        return self.elapsed_seconds if self.elapsed_seconds is not None else self.node_seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_dbt_output(lines: list[str]) -> DbtCommandTiming:
    """Read dbt's console output (with or without its ``HH:MM:SS`` prefix and colour codes)."""
    timing = DbtCommandTiming()
    for raw in lines:
        text = ANSI.sub("", raw).rstrip()
        if clock := DBT_CLOCK.match(text.strip()):
            text = clock.group(4)
        if FULL_PARSE in text:
            timing.full_parse = True
        elif finished := FINISHED.search(text):
            timing.elapsed_seconds = float(finished.group(1))
        elif (result := NODE_RESULT.match(text)) and " hook: " in text:
            timing.hook_seconds += float(result.group(3))
        elif result:
            timing.node_seconds += float(result.group(3))
            timing.nodes += 1
            timing.node_results[result.group(1)] = timing.node_results.get(result.group(1), 0) + 1
    timing.node_seconds = round(timing.node_seconds, 3)
    timing.hook_seconds = round(timing.hook_seconds, 3)
    return timing


@dataclass
class TaskPhases:
    """Seconds between the milestones of one Cosmos task (None when the log lacks the milestone)."""

    dag_file_parse_seconds: float | None  # the worker parsing the DAG file before running the task
    to_dbt_start_seconds: float | None  # task start (metadata DB) -> Cosmos calls dbt
    dbt_parse_seconds: float | None  # dbt start -> "Found N models" (loading the project)
    dbt_run_seconds: float | None  # "Found N models" -> dbt's last line (the nodes, connections, artifacts)
    dbt_seconds: float | None  # dbt start -> dbt's last line
    after_dbt_seconds: float | None  # dbt's last line -> task end (metadata DB)
    dbt: DbtCommandTiming

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dbt"] = self.dbt.as_dict()
        return data


def _is_dbt_output(logger: object, event: str) -> bool:
    """dbt's console lines: captured stdout (dbt runner in LOCAL tasks), or re-logged by Cosmos' watcher producer,
    which runs dbt with JSON logs and logs each message with dbt's clock in front."""
    if logger == "task.stdout":
        return True
    return str(logger).startswith("cosmos.") and bool(DBT_CLOCK.match(ANSI.sub("", event).strip()))


def _timestamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def span(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    """Seconds from ``a`` to ``b``, when both are known."""
    return round((b - a).total_seconds(), 3) if a and b else None


def _records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines log, skipping any other line (none when there is no log)."""
    records = []
    for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_task_log(path: Path, started: dt.datetime | None, ended: dt.datetime | None) -> TaskPhases:
    """Split one task attempt's JSON-lines log into phases; ``started``/``ended`` come from task_instance."""
    events: list[tuple[dt.datetime, str, dict]] = []
    for record in _records(path):
        try:
            events.append((_timestamp(record["timestamp"]), str(record.get("event", "")), record))
        except (ValueError, KeyError):
            continue
    parse_ms = next((r.get("dag_file_parse_ms") for _, e, r in events if e == "Worker startup parse complete"), None)
    dbt_start = next((t for t, e, _ in events if e.startswith((COSMOS_STARTING_DBT, STARTING_DBT))), None)
    dbt_lines = [(t, e) for t, e, r in events if _is_dbt_output(r.get("logger"), e)]
    found = next((t for t, e in dbt_lines if FOUND.match(DBT_CLOCK.sub(r"\4", ANSI.sub("", e).strip()))), None)
    dbt_end = dbt_lines[-1][0] if dbt_lines else None
    timing = parse_dbt_output([e for _, e in dbt_lines])
    loaded_in_full = any(e.startswith(LOADED_IN_FULL) for _, e, _ in events)

    return TaskPhases(
        dag_file_parse_seconds=round(parse_ms / 1000, 3) if isinstance(parse_ms, int | float) else None,
        to_dbt_start_seconds=span(started, dbt_start),
        dbt_parse_seconds=span(dbt_start, found),
        dbt_run_seconds=span(found, dbt_end),
        dbt_seconds=span(dbt_start, dbt_end),
        after_dbt_seconds=span(dbt_end, ended),
        dbt=replace(timing, full_parse=timing.full_parse or loaded_in_full),
    )


def log_tail(path: Path, lines: int = 12) -> list[str]:
    """The last error and warning events of a task log, kept in the results when a task failed."""
    events = []
    for record in _records(path):
        text = ANSI.sub("", str(record.get("event", "")))
        if record.get("level") in ("error", "warning", "critical") or "error" in text.lower():
            events.append(text[:500])
    return events[-lines:]


def read_trigger_log(path: Path, started: dt.datetime, ended: dt.datetime) -> dict[str, float | None]:
    """A task that started and ended in the triggerer, split from its log: ``pickup`` from its deferral by the
    scheduler to the triggerer starting its trigger (the triggerer's loops, loading the trigger and the task),
    ``trigger`` the trigger's own run (its reads through the Task SDK), ``write_back`` from the event the
    trigger fired to the task's end in the metadata DB."""
    trigger_start = fired = None
    for record in _records(path):
        event = str(record.get("event", ""))
        try:
            at = _timestamp(record["timestamp"])
        except (ValueError, KeyError):
            continue
        if trigger_start is None and event.startswith("trigger ") and event.endswith(" starting"):
            trigger_start = at
        elif event == "Trigger fired event":
            fired = at

    return {
        "pickup_seconds": span(started, trigger_start),
        "trigger_seconds": span(trigger_start, fired),
        "write_back_seconds": span(fired, ended),
    }
