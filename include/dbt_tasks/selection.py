"""The trigger form's ``select`` and ``exclude``: which dbt nodes one run of ``greenery_daily`` builds.

``validate_params`` resolves them with dbt itself (``dbt ls``, in-process, against the repository's profile,
which needs no database) into the unique ids of the selected models, snapshots, tests and sources, and hands
them to the node tasks in its XCom. Each node task of the models and snapshots groups then runs when its node
was selected and ends ``skipped`` otherwise (``skip_unless_selected``, its ``pre_execute`` hook), so the Grid
shows at a glance what ran. dbt's own selection semantics apply: ``fct_orders+``, ``tag:product``,
``path:models/marts``, several criteria separated by spaces (their union), ``a,b`` (their intersection), and the
tests of a selected model come with it. The text never reaches a shell: each criterion is one argument of dbt's
command line in this process.
"""

from __future__ import annotations

import difflib
import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from include import settings
from include.dbt_tasks import parsed_project
from include.dbt_tasks.task_ids import VALIDATE_TASK_ID

# Node types a selection picks for this DAG; sources only so that a source's test task knows it was chosen.
RESOURCE_TYPES = ("model", "snapshot", "test", "source")
# The target of dbt/greenery/profiles.yml: listing nodes connects to nothing, so it needs no Airflow connection.
PLAIN_DBT_TARGET = "dev"
# What a criterion may contain: names, dotted and slashed paths, methods, wildcards and graph operators.
_CRITERION = re.compile(r"^[A-Za-z0-9_.:/*+@,=\-]+$")
# A criterion without its graph operators: 2+name+3, @name.
_GRAPH_OPERATORS = re.compile(r"^(?:\d*\+|@)?(?P<body>.*?)(?:\+\d*)?$")


class InvalidSelection(ValueError):
    """A selection that cannot be used; the message says what to change."""


def criteria(name: str, text: Any) -> list[str]:
    """The space-separated criteria of ``select`` or ``exclude`` (empty for none)."""
    if text is None:
        return []
    if not isinstance(text, str):
        raise InvalidSelection(f"{name} must be text such as 'fct_orders+ tag:product', not {text!r}.")
    found = text.split()
    for criterion in found:
        if not _CRITERION.match(criterion):
            raise InvalidSelection(
                f"{name} {criterion!r} is not dbt selection syntax: use node names, methods such as tag:product "
                "or path:models/marts, and the graph operators + and @, separated by spaces."
            )
    return found


def describe(select: list[str], exclude: list[str]) -> str:
    """The selection as dbt's flags: ``--select fct_orders+ --exclude tag:slow``."""
    return " ".join(
        f"--{flag} {' '.join(values)}" for flag, values in (("select", select), ("exclude", exclude)) if values
    )


def _methods() -> list[str]:
    from dbt.graph.selector_methods import MethodName

    return [method.value for method in MethodName]


def _bodies(criterion: str) -> list[str]:
    """The parts of a criterion that name something: ``+a,tag:b+`` -> ``["a", "tag:b"]``."""
    return [_GRAPH_OPERATORS.match(part).group("body") for part in criterion.split(",")]


def _node_names(manifest: Mapping[str, Any]) -> set[str]:
    names = {node["name"] for node in manifest.get("nodes", {}).values() if node["resource_type"] != "operation"}
    names |= {f"{source['source_name']}.{source['name']}" for source in manifest.get("sources", {}).values()}
    return names


def _check_words(name: str, found: list[str], manifest: Mapping[str, Any]) -> None:
    """One sentence for an unknown method or a node name that does not exist, with the closest names."""
    methods, names = _methods(), _node_names(manifest)
    for criterion in found:
        for body in _bodies(criterion):
            method = body.rpartition(":")[0]
            method = method.split(".")[0]  # config.materialized:table
            if method and method not in methods:
                close = difflib.get_close_matches(method, methods, n=2)
                hint = f"did you mean {' or '.join(close)}?" if close else f"use one of {', '.join(methods)}."
                raise InvalidSelection(f"{name} {criterion!r} uses {method!r}, which is no dbt selector method: {hint}")
            plain_name = not method and not any(mark in body for mark in "*/.")
            if plain_name and body not in names:
                close = difflib.get_close_matches(body, sorted(names), n=3)
                hint = f" Closest: {', '.join(close)}." if close else ""
                raise InvalidSelection(f"{name} {criterion!r} names no model, snapshot, test or source.{hint}")


def resolve(
    select: list[str],
    exclude: list[str],
    project_dir: Path = settings.DBT_PROJECT_DIR,
    manifest_path: Path = settings.DBT_MANIFEST_PATH,
    state_dir: Path | None = None,
    allow_empty: bool = False,
) -> list[str] | None:
    """The unique ids ``select`` minus ``exclude`` picks (None when neither is given: the whole project).

    ``state_dir``: a directory with the manifest that ``state:`` methods compare with. ``allow_empty``: a
    selection that matches no model or snapshot gives what it matched instead of raising."""
    if not select and not exclude:
        return None
    manifest = json.loads(Path(manifest_path).read_text()) if Path(manifest_path).is_file() else {}
    _check_words("select", select, manifest)
    _check_words("exclude", exclude, manifest)

    from dbt.cli.main import dbtRunner  # dbt loads where a selection is resolved, not where DAG files are parsed

    with tempfile.TemporaryDirectory(prefix="greenery-select-") as scratch:
        try:
            loaded = parsed_project.load(project_dir, settings.DBT_PROFILES_DIR, Path(scratch), target=PLAIN_DBT_TARGET)
        except RuntimeError as error:
            raise InvalidSelection(f"{error}.") from None
        # The ids come back in the result; --log-level none keeps them (and dbt's banner) out of the task log.
        argv = ["--log-level", "none", "ls", "--output", "json", "--output-keys", "unique_id"]
        for resource_type in RESOURCE_TYPES:
            argv += ["--resource-type", resource_type]
        argv += ["--select", *select] if select else []
        argv += ["--exclude", *exclude] if exclude else []
        argv += ["--project-dir", str(project_dir), "--profiles-dir", str(settings.DBT_PROFILES_DIR)]
        argv += ["--target", PLAIN_DBT_TARGET, "--target-path", scratch, "--log-path", scratch]
        argv += ["--state", str(state_dir)] if state_dir is not None else []
        result = dbtRunner(manifest=loaded).invoke(argv)
    if not result.success:
        detail = " ".join(str(result.exception or "dbt ls failed").split()).removeprefix("Runtime Error ")
        raise InvalidSelection(f"dbt cannot use this selection: {detail}.")
    chosen = sorted(json.loads(line)["unique_id"] for line in result.result or [])
    if not allow_empty and not any(unique_id.split(".")[0] in ("model", "snapshot") for unique_id in chosen):
        raise InvalidSelection(
            f"The selection {describe(select, exclude)} matches no model or snapshot: nothing would run."
        )
    return chosen


def node_selector(manifest: Mapping[str, Any], unique_id: str) -> str:
    """The dbt selection criterion that names exactly one node: its name, or ``source:<source>.<table>``."""
    if unique_id in manifest.get("sources", {}):
        source = manifest["sources"][unique_id]
        return f"source:{source['source_name']}.{source['name']}"
    return manifest["nodes"][unique_id]["name"]


def task_nodes(task: Any) -> set[str]:
    """The dbt node(s) a Cosmos task runs or tests, by unique id (empty for tasks that are not a node's)."""
    node = (getattr(task, "extra_context", None) or {}).get("dbt_node_config") or {}
    return {node["unique_id"]} if node.get("unique_id") else set()


def skip_unless_selected(context: Mapping[str, Any]) -> None:
    """``pre_execute`` hook of the daily DAG's node tasks: end ``skipped`` when the run's selection left the
    task's node out. Runs as usual when the run has no selection."""
    from airflow.sdk.exceptions import AirflowSkipException

    chosen = context["ti"].xcom_pull(task_ids=VALIDATE_TASK_ID) or {}
    selected = chosen.get("selected")
    nodes = task_nodes(context["task"])
    if selected is None or not nodes or nodes & set(selected):
        return
    raise AirflowSkipException(f"Not in this run's selection ({chosen.get('selection_text')}).")


def skip_when_nothing_to_build(context: Mapping[str, Any]) -> None:
    """``pre_execute`` hook of the daily DAG's whole-project dbt tasks (source freshness, docs): end ``skipped``
    when the run builds no node at all (nothing failed in the run to rerun, nothing changed), so such a run
    does no dbt work."""
    from airflow.sdk.exceptions import AirflowSkipException

    chosen = context["ti"].xcom_pull(task_ids=VALIDATE_TASK_ID) or {}
    if chosen.get("selected") == []:
        raise AirflowSkipException(f"Nothing to build in this run: {chosen.get('selection_text')}.")
