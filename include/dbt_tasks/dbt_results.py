"""The Cosmos callback every dbt task runs after each dbt command: the results go to the alerts and to the run
history. It uses both rooms below the dbt tasks (``include.alerts``, ``include.history``), so it lives here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from include import settings
from include.alerts.callbacks import notify_dbt_results
from include.history.artifacts import read_invocations
from include.history.store import upload

log = logging.getLogger(__name__)

# Cosmos resolves a callback given as a dotted path when the task runs.
CALLBACK = "include.dbt_tasks.dbt_results.record_dbt_artifacts"


def record_dbt_artifacts(
    project_dir: str | Path,
    context: Mapping[str, Any] | None = None,
    conn_id: str = settings.WAREHOUSE_CONN_ID,
    node_tasks: Mapping[str, str] | None = None,
    **_: Any,
) -> None:
    """Cosmos ``callback`` of every dbt task: alert on the results, then keep them in ``dbt_meta``.

    Cosmos calls it after each dbt command, before it decides whether the task failed, so failed runs are kept
    too. Never raises: a callback exception would fail the task and hide dbt's own result. The producer passes
    ``node_tasks``, the node task of each node it ran.
    """
    try:
        invocations = read_invocations(Path(project_dir) / "target")
    except Exception:
        log.exception("Could not read the dbt artifacts in %s", project_dir)
        return
    if context is not None:
        notify_dbt_results(context, invocations)
    upload(invocations, context, conn_id=conn_id, node_tasks=node_tasks)
