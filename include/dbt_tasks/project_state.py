"""The trigger form's ``only``: build only what changed (``changed``) or what new raw rows reach (``fresher``)
since the last good run of ``greenery_daily``.

A run that built the whole project (or everything that had changed) and ended green leaves its *state* in the
warehouse, where every worker can read it: table ``dbt_meta.project_states``, one row per run, holding the dbt
manifest the run was built from and, per source table, the newest ``loaded_at_field`` value that run's
``dbt source freshness`` saw. ``docs_generate`` writes it (``record_project_state``, a Cosmos callback): it runs
only when no model, test or snapshot of the run failed.

- ``only=changed`` asks dbt for ``state:modified+`` against that manifest: models whose code, config or
  contract changed, or whose macros did, and everything downstream. Sources compare by their configured schema
  (dbt flag ``state_modified_compare_more_unrendered_values``), so machines with other environments agree.
- ``only=fresher`` compares each source table's newest ``loaded_at_field`` value now with the stored one, as
  dbt's ``source_status:fresher+`` does, and selects ``source:<table>+`` for each that grew. Tables without a
  freshness check (``freshness: null``, e.g. addresses) have no stored value and never count as fresher. The
  run history is a source too (``dbt_meta``), and every run adds to it: the monitoring models are always fresher.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg2 import sql
from psycopg2.extras import Json

from include import settings
from include.history import schema
from include.history.schema import Table, meta_schema
from include.history.store import warehouse_connection

log = logging.getLogger(__name__)

PROJECT_STATES = Table(
    "project_states",
    (
        ("dag_id", "text not null"),
        ("run_id", "text not null"),
        ("mode", "text not null"),
        ("manifest", "text not null"),
        ("source_loaded_at", "jsonb not null"),
    ),
    key=("dag_id", "run_id"),
    references_invocation=False,
)
# What a run built when it may leave its state: everything, or everything that had changed.
STATE_MODES = ("all", "changed")
# States kept per DAG: only the newest is compared with; a few more say what the recent baselines were.
KEEP_STATES = 7


@dataclass(frozen=True)
class ProjectState:
    """The state one green run left: its run id, when it was kept, its manifest (JSON text) and, per source
    unique id, the newest ``loaded_at_field`` value its freshness check saw."""

    run_id: str
    recorded_at: dt.datetime
    manifest: str
    source_loaded_at: dict[str, dt.datetime]


def _table() -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(meta_schema()), sql.Identifier(PROJECT_STATES.name))


def ensure_table(connection: Any) -> None:
    schema.ensure_table(connection, PROJECT_STATES)


def _freshness_of_run(cursor: Any, dag_id: str, run_id: str) -> dict[str, str]:
    """The newest row per source table that the run's last ``dbt source freshness`` found (ISO timestamps)."""
    cursor.execute(
        sql.SQL(
            "select distinct on (f.unique_id) f.unique_id, f.max_loaded_at from {schema}.source_freshness f "
            "join {schema}.invocations i using (invocation_id) "
            "where i.dag_id = %s and i.run_id = %s and f.max_loaded_at is not null "
            "order by f.unique_id, i.generated_at desc"
        ).format(schema=sql.Identifier(meta_schema())),
        (dag_id, run_id),
    )
    return {unique_id: loaded_at.isoformat() for unique_id, loaded_at in cursor.fetchall()}


def store_state(connection: Any, dag_id: str, run_id: str, mode: str, manifest: str) -> None:
    """Keep ``manifest`` and the run's freshness results as the state of ``run_id`` (again: replaced), and
    only the newest ``KEEP_STATES`` states of the DAG."""
    ensure_table(connection)
    with connection.cursor() as cursor:
        loaded_at = _freshness_of_run(cursor, dag_id, run_id)
        cursor.execute(
            sql.SQL(
                "insert into {table} (dag_id, run_id, mode, manifest, source_loaded_at) values (%s, %s, %s, %s, %s) "
                "on conflict (dag_id, run_id) do update set mode = excluded.mode, manifest = excluded.manifest, "
                "source_loaded_at = excluded.source_loaded_at, recorded_at = now()"
            ).format(table=_table()),
            (dag_id, run_id, mode, manifest, Json(loaded_at)),
        )
        # A manifest is about a megabyte: a daily run would otherwise add a third of a gigabyte a year.
        cursor.execute(
            sql.SQL(
                "delete from {table} where dag_id = %s and run_id not in ("
                "select run_id from {table} where dag_id = %s order by recorded_at desc limit %s)"
            ).format(table=_table()),
            (dag_id, dag_id, KEEP_STATES),
        )
    connection.commit()


def latest_state(connection: Any, dag_id: str) -> ProjectState | None:
    """The state of the newest green full (or changed-only) run of ``dag_id``; None before the first."""
    ensure_table(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "select run_id, recorded_at, manifest, source_loaded_at from {table} where dag_id = %s "
                "order by recorded_at desc limit 1"
            ).format(table=_table()),
            (dag_id,),
        )
        row = cursor.fetchone()
    if row is None:
        return None
    run_id, recorded_at, manifest, loaded_at = row
    return ProjectState(
        run_id, recorded_at, manifest, {uid: dt.datetime.fromisoformat(value) for uid, value in loaded_at.items()}
    )


def record_project_state(project_dir: str, context: Mapping[str, Any] | None = None, **_: Any) -> None:
    """Cosmos callback of ``docs_generate``: when this run built everything (or everything changed) and the
    docs were generated, keep the manifest the run was built from as the state ``only`` compares against.

    ``docs_generate`` runs only when no node of the run failed, so a kept state always belongs to a green build.
    Never raises: without a state, the next ``only=changed`` says so instead of building from a wrong one."""
    try:
        target = Path(project_dir) / "target"
        if not (target / "catalog.json").is_file() or context is None:
            return  # dbt docs generate failed: the task fails with dbt's error, and no state is kept
        from include.dbt_tasks.params import VALIDATE_TASK_ID

        ti = context["ti"]
        chosen = ti.xcom_pull(task_ids=VALIDATE_TASK_ID) or {}
        mode = chosen.get("state_mode")
        if mode not in STATE_MODES:
            log.info("This run built a part of the project: it is no baseline for only=changed or only=fresher.")
            return
        manifest = Path(settings.DBT_MANIFEST_PATH).read_text()
        connection = warehouse_connection()
        try:
            store_state(connection, ti.dag_id, ti.run_id, mode, manifest)
        finally:
            connection.close()
        log.info("Kept this run's dbt manifest and freshness results as the baseline for only=changed/fresher.")
    except Exception:
        log.exception("Could not keep this run's state for only=changed/fresher")


def write_state_dir(state: ProjectState, directory: Path) -> Path:
    """The stored manifest as a dbt ``--state`` directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(state.manifest)
    return directory


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def newest_loaded_at(connection: Any, manifest: Mapping[str, Any], unique_ids: list[str]) -> dict[str, dt.datetime]:
    """The newest ``loaded_at_field`` value of each source table now (dbt's freshness query, without dbt)."""
    found = {}
    with connection.cursor() as cursor:
        for unique_id in unique_ids:
            source = manifest["sources"][unique_id]
            field = source.get("loaded_at_field") or (source.get("config") or {}).get("loaded_at_field")
            if not field:
                continue
            relation = sql.Identifier(source["schema"], source["identifier"])
            cursor.execute(sql.SQL("select max({}) from {}").format(sql.Identifier(field), relation))
            (value,) = cursor.fetchone()
            if value is not None:
                found[unique_id] = _utc(value)
    connection.commit()
    return found


def fresher_sources(connection: Any, state: ProjectState, manifest: Mapping[str, Any]) -> list[str]:
    """The source tables that received rows newer than the state's freshness check saw, by unique id."""
    stored = {uid: _utc(value) for uid, value in state.source_loaded_at.items() if uid in manifest.get("sources", {})}
    now = newest_loaded_at(connection, manifest, sorted(stored))
    return sorted(uid for uid, value in now.items() if value > stored[uid])


def read_manifest(path: Path = settings.DBT_MANIFEST_PATH) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
