"""What a load makes stale: the dbt project's incremental models keep the rows they were built from, so once the
raw tables are replaced, rows of data that no longer exists would stay in them (and fail the marts'
relationships tests on the next run, though the new data is fine).

``make load`` therefore drops them after replacing the raw tables; the next run (Airflow's or plain dbt's) finds
no table and builds each in full from the new data. They are found in the dbt manifest the DAGs render from (or
plain dbt's), where the project says which models are incremental; without a manifest nothing has been built
from it here, and there is nothing to drop.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
from psycopg2 import sql

from include import settings
from include.greenery_data.errors import GreeneryDataError


class StaleModelsError(GreeneryDataError):
    """The raw tables were replaced, but the models built from the old data are still there."""


# How long the drop waits for a dbt run that is reading one of them before it gives up and says what to do.
LOCK_TIMEOUT = "10s"


def incremental_relations(manifest_paths: list[Path] | None = None) -> list[tuple[str, str]]:
    """(schema, table) of every incremental model of the dbt project, in the schemas dbt builds them in here."""
    paths = manifest_paths or [settings.DBT_MANIFEST_PATH, settings.DBT_PROJECT_DIR / "target" / "manifest.json"]
    manifest = next((path for path in paths if path.is_file()), None)
    if manifest is None:
        return []
    nodes = json.loads(manifest.read_text())["nodes"].values()
    relations = []
    for node in nodes:
        config = node.get("config", {})
        if node["resource_type"] != "model" or config.get("materialized") != "incremental":
            continue
        # dbt's default schema naming (the project has no generate_schema_name of its own), for this machine's
        # target schema rather than the one of the machine that parsed the manifest.
        custom = config.get("schema")
        schema = f"{settings.DBT_TARGET_SCHEMA}_{custom}" if custom else settings.DBT_TARGET_SCHEMA
        relations.append((schema, node.get("alias") or node["name"]))
    return sorted(relations)


def drop_stale_incremental_models(conn, relations: list[tuple[str, str]] | None = None) -> str | None:
    """Drop the incremental models that exist in the warehouse (one transaction). Returns the one line to show
    the user, or None when there was nothing to drop; raises StaleModelsError, saying what to do, when a lock held
    them longer than LOCK_TIMEOUT."""
    relations = incremental_relations() if relations is None else relations
    with conn.cursor() as cur:
        present = []
        for schema, table in relations:
            cur.execute("select to_regclass(%s)", (f'"{schema}"."{table}"',))
            if cur.fetchone()[0] is not None:
                present.append((schema, table))
        if not present:
            conn.rollback()
            return None
        names = ", ".join(f"{schema}.{table}" for schema, table in present)
        try:
            cur.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
            for schema, table in present:
                cur.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, table)))
        except psycopg2.Error as error:
            conn.rollback()
            raise StaleModelsError(
                f"the raw data was replaced, but the incremental models built from the old data could not be dropped "
                f"({names}: {str(error).strip().splitlines()[0]}). Trigger greenery_daily with full_refresh on, or "
                'run `make dbt ARGS="build --full-refresh"`, so that they keep no rows of the data that was replaced.'
            ) from None
    conn.commit()
    return (
        f"The raw data was replaced: dropped the incremental models built from the old data ({names}); "
        "the next run builds them in full."
    )
