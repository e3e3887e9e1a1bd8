"""Who answers for a dbt node, read from the manifest the DAGs render from (``settings.DBT_MANIFEST_PATH``).

A node's owners are its ``meta.owner`` (a Slack id, a name, or a list of them) when it has one, else the owner
of its dbt group (``groups:`` in the project; the owner's ``slack`` key, else its name). A test, unit test or
singular test without an owner of its own is owned as the nodes it tests are. A source has no group in dbt, so
only its ``meta.owner`` (set on the source or one of its tables) names anyone.

Nothing here may cost an alert: a missing or unreadable manifest, or a node it does not know, gives no owners,
and the manifest's absence is logged once per process (per version of the file), not at every alert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include import settings

log = logging.getLogger(__name__)

# Node types that carry what another node is tested for: their owners are that node's.
_TEST_TYPES = frozenset({"test", "unit_test"})


@dataclass(frozen=True)
class Ownership:
    """The owners of a set of nodes, in the order first met, and the one dbt group they all belong to (None when
    they span several groups, or some node has none)."""

    owners: tuple[str, ...] = ()
    group: str | None = None


@dataclass(frozen=True)
class _Node:
    owners: tuple[str, ...]
    group: str | None
    tested: tuple[str, ...]  # a test's nodes under test; empty for everything else


@dataclass(frozen=True)
class _Index:
    nodes: dict[str, _Node]
    group_owners: dict[str, tuple[str, ...]]


# path -> (the file's (mtime, size) or None when missing, its index or None when unreadable)
_CACHE: dict[Path, tuple[tuple[int, int] | None, _Index | None]] = {}


def _owner_names(value: Any) -> tuple[str, ...]:
    """``meta.owner`` or a group's ``owner`` as owner texts: a string, a list of them, or a mapping with ``slack``
    (preferred), ``name`` or ``email``."""
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()
    if isinstance(value, Mapping):
        for key in ("slack", "name", "email"):
            names = _owner_names(value.get(key))
            if names:
                return names
        return ()
    if isinstance(value, list | tuple):
        return tuple(name for item in value for name in _owner_names(item))
    return ()


def _meta_owner(node: Mapping[str, Any]) -> tuple[str, ...]:
    config_meta = (node.get("config") or {}).get("meta") or {}
    return _owner_names(config_meta.get("owner")) or _owner_names((node.get("meta") or {}).get("owner"))


def _index(manifest: Mapping[str, Any]) -> _Index:
    group_owners = {
        group.get("name"): _owner_names(group.get("owner"))
        for group in (manifest.get("groups") or {}).values()
        if group.get("name")
    }
    nodes: dict[str, _Node] = {}
    for section in ("nodes", "sources", "unit_tests"):
        for unique_id, node in (manifest.get(section) or {}).items():
            tested: tuple[str, ...] = ()
            if node.get("resource_type") in _TEST_TYPES:
                # A generic test names the node it is attached to; a singular or unit test lists what it reads.
                attached = node.get("attached_node")
                tested = (attached,) if attached else tuple((node.get("depends_on") or {}).get("nodes") or ())
            group = node.get("group") or (node.get("config") or {}).get("group")
            nodes[unique_id] = _Node(_meta_owner(node), group or None, tested)
    return _Index(nodes, group_owners)


def _load(path: Path) -> _Index | None:
    """The manifest at ``path``, indexed; read again only when the file changed. None when it cannot be read."""
    try:
        stat = path.stat()
        signature: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        signature = None
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    index = None
    try:
        index = _index(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError, TypeError) as error:
        log.warning(
            "Alerts name no owners: cannot read the dbt manifest %s (%s: %s). Run `make manifest` (the image "
            "builds it) to have failures mention the owners of their dbt nodes.",
            path,
            type(error).__name__,
            error,
        )
    _CACHE[path] = (signature, index)
    return index


def _claims(index: _Index, unique_id: str, depth: int = 0) -> list[tuple[tuple[str, ...], str | None]]:
    """(owners, group) of each node that answers for ``unique_id``: itself, or for a test without an owner of
    its own, the nodes it tests."""
    node = index.nodes.get(unique_id)
    if node is None:
        return [((), None)]
    if node.tested and not node.owners and depth == 0:
        claims = [claim for tested in node.tested for claim in _claims(index, tested, depth + 1)]
        if node.group:  # dbt puts a generic test in the group of the model it tests
            claims = [(owners or index.group_owners.get(node.group, ()), node.group) for owners, _ in claims]
        return claims or [((), node.group)]
    owners = node.owners or (index.group_owners.get(node.group, ()) if node.group else ())
    return [(owners, node.group)]


def ownership(unique_ids: Iterable[str], manifest_path: Path | None = None) -> Ownership:
    """Who owns the nodes ``unique_ids`` (and the one group they share), from the manifest at ``manifest_path``
    (default: the DAGs' manifest). Empty when there are no ids or no readable manifest. Never raises."""
    unique_ids = [unique_id for unique_id in unique_ids if unique_id]
    if not unique_ids:
        return Ownership()
    try:
        index = _load(Path(manifest_path or settings.DBT_MANIFEST_PATH))
        if index is None:
            return Ownership()
        claims = [claim for unique_id in dict.fromkeys(unique_ids) for claim in _claims(index, unique_id)]
    except Exception:
        log.exception("Could not work out the owners of %s; the alert goes without them", ", ".join(unique_ids))
        return Ownership()
    owners = tuple(dict.fromkeys(owner for claim_owners, _ in claims for owner in claim_owners))
    groups = {group for _, group in claims}
    return Ownership(owners, groups.pop() if len(groups) == 1 else None)
