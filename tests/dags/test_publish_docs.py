"""docs_generate's callback: what `dbt docs generate` wrote lands where the Airflow UI serves the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from include import settings
from include.dbt_tasks import docs


def _generated_site(project: Path, version: str) -> None:
    (project / "target").mkdir(parents=True, exist_ok=True)
    for name in docs.DOCS_FILES:
        (project / "target" / name).write_text(f"{name} {version}")


def test_publishing_replaces_the_served_site_and_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs_dir = tmp_path / "served"
    monkeypatch.setattr(settings, "DBT_DOCS_DIR", docs_dir)
    _generated_site(tmp_path / "run1", "first")
    _generated_site(tmp_path / "run2", "second")

    docs.publish_docs(str(tmp_path / "run1"), context={})
    docs.publish_docs(str(tmp_path / "run2"), context={})

    assert sorted(p.name for p in docs_dir.iterdir()) == sorted(docs.DOCS_FILES)
    assert (docs_dir / "index.html").read_text() == "index.html second"
    assert oct((docs_dir / "catalog.json").stat().st_mode & 0o777) == "0o644"


def test_an_incomplete_generation_leaves_the_served_site_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    docs_dir = tmp_path / "served"
    monkeypatch.setattr(settings, "DBT_DOCS_DIR", docs_dir)
    _generated_site(tmp_path / "good", "good")
    docs.publish_docs(str(tmp_path / "good"))
    _generated_site(tmp_path / "broken", "broken")
    (tmp_path / "broken" / "target" / "catalog.json").unlink()

    docs.publish_docs(str(tmp_path / "broken"))  # the task then fails with dbt's error, not this one's

    assert "dbt docs generate wrote no catalog.json" in caplog.text
    assert {p.name: p.read_text() for p in docs_dir.iterdir()} == {name: f"{name} good" for name in docs.DOCS_FILES}
