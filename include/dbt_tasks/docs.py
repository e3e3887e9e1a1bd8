"""Publishing ``dbt docs generate`` output where the Airflow UI serves it (Browse > dbt Docs (greenery)).

Two places, one per kind of deployment:

- ``GREENERY_DBT_DOCS_DIR``, a directory the api-server reads: one machine (``make up``), or a volume that the workers
  and the api-server share;
- ``GREENERY_DBT_DOCS_URL``, an object store folder (``s3://bucket/path``, through Airflow's ``ObjectStoragePath``
  and the connection ``GREENERY_DBT_DOCS_CONN_ID``): whichever worker ran ``docs generate``, the api-server reads
  the same copy, with no disk shared between them (``make up EXECUTOR=celery``, docs/deployment.md). When it is set
  the directory is not used.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from include import settings

log = logging.getLogger(__name__)

# What the docs site is made of; dbt docs generate writes all three to target/. In an object store the page is
# written last, so a browser that opens it finds the files it reads already there.
DOCS_FILES = ("index.html", "manifest.json", "catalog.json")
STORE_ORDER = ("manifest.json", "catalog.json", "index.html")


class DocsStoreError(RuntimeError):
    """The object store of the dbt docs cannot be reached or written; the message says what to check."""


def docs_store() -> Any | None:
    """The ``ObjectStoragePath`` of ``GREENERY_DBT_DOCS_URL``, or None when the docs go to a directory."""
    url = settings.DBT_DOCS_URL.value()
    if url is None:
        return None
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url, conn_id=settings.DBT_DOCS_CONN_ID.value())


def describe_store_error(error: BaseException) -> str:
    """One sentence on why the docs store failed, naming the URL and the connection to check."""
    conn_id = settings.DBT_DOCS_CONN_ID.value()
    connection = f"the connection {conn_id!r}" if conn_id else "the store's default connection"
    reason = str(error) or type(error).__name__
    return (
        f"the dbt docs store {settings.DBT_DOCS_URL.value()} failed ({type(error).__name__}: {reason}); check that "
        f"it is reachable, that its bucket exists and that {connection} may read and write there "
        f"({settings.DBT_DOCS_URL.name}, {settings.DBT_DOCS_CONN_ID.name})."
    )


def _publish_to_store(target: Path, store: Any) -> None:
    try:
        for name in STORE_ORDER:
            with open(target / name, "rb") as source, (store / name).open("wb") as handle:
                shutil.copyfileobj(source, handle)
    except Exception as error:  # s3fs, botocore and the provider each raise their own kinds
        raise DocsStoreError(f"Publishing the dbt docs failed: {describe_store_error(error)}") from error
    log.info("dbt docs published to %s", settings.DBT_DOCS_URL.value())


def publish_docs(project_dir: str, **_: Any) -> None:
    """Cosmos callback of ``docs_generate``: copy the generated site to ``GREENERY_DBT_DOCS_URL``'s store, or else
    to ``settings.DBT_DOCS_DIR``. In a directory every file is copied beside its final name first and renamed
    into place only when all are there, so the Airflow UI never serves a half-written file; in a store each
    object is replaced whole by its upload. Either way a failed generation leaves the previous site whole.

    Cosmos runs callbacks before it reports a failed dbt command, so this one does not raise when files are
    missing: the task then fails with dbt's own error instead of a missing-file error. A store that cannot be
    written fails the task (:class:`DocsStoreError`), and its retry publishes again."""
    target = Path(project_dir) / "target"
    missing = [name for name in DOCS_FILES if not (target / name).is_file()]
    if missing:
        log.warning("dbt docs generate wrote no %s; the docs published before stay in place.", ", ".join(missing))
        return
    store = docs_store()
    if store is not None:
        _publish_to_store(target, store)
        return
    docs_dir = settings.DBT_DOCS_DIR
    docs_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name in DOCS_FILES:
            with (
                open(target / name, "rb") as source,
                tempfile.NamedTemporaryFile(dir=docs_dir, prefix=f".{name}.", delete=False) as handle,
            ):
                staged.append((Path(handle.name), docs_dir / name))
                shutil.copyfileobj(source, handle)
        for temporary, final in staged:
            temporary.chmod(0o644)
            os.replace(temporary, final)
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
