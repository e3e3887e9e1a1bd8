"""Publishing ``dbt docs generate`` output where the Airflow UI serves it (Browse > dbt Docs)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from include import settings

log = logging.getLogger(__name__)

# What the docs site is made of; dbt docs generate writes all three to target/.
DOCS_FILES = ("index.html", "manifest.json", "catalog.json")


def publish_docs(project_dir: str, **_: Any) -> None:
    """Cosmos callback of ``docs_generate``: copy the generated site to ``settings.DBT_DOCS_DIR``. Every file is
    copied beside its final name first and renamed into place only when all are there, so the Airflow UI never
    serves a half-written file, and a failed generation leaves the previous site whole.

    Cosmos runs callbacks before it reports a failed dbt command, so this one does not raise when files are
    missing: the task then fails with dbt's own error instead of a missing-file error."""
    target = Path(project_dir) / "target"
    missing = [name for name in DOCS_FILES if not (target / name).is_file()]
    if missing:
        log.warning("dbt docs generate wrote no %s; the docs published before stay in place.", ", ".join(missing))
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
