"""docs_generate's callback: what `dbt docs generate` wrote lands where the Airflow UI serves the docs, a directory or
(GREENERY_DBT_DOCS_URL) a real S3-compatible store on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from include import settings
from include.dbt_tasks import docs
from tests.conftest import ObjectStore


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


def test_with_a_store_url_the_site_goes_to_the_store_and_no_directory_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, object_store: ObjectStore, docs_in_the_store: str
) -> None:
    docs_dir = tmp_path / "served"
    monkeypatch.setattr(settings, "DBT_DOCS_DIR", docs_dir)
    _generated_site(tmp_path / "run1", "first")
    _generated_site(tmp_path / "run2", "second")

    docs.publish_docs(str(tmp_path / "run1"))
    docs.publish_docs(str(tmp_path / "run2"))

    stored = object_store.objects(docs_in_the_store)
    assert stored == {name: f"{name} second".encode() for name in docs.DOCS_FILES}
    assert not docs_dir.exists()


def test_a_store_that_cannot_be_written_fails_the_task_with_what_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, object_store: ObjectStore, docs_in_the_store: str
) -> None:
    monkeypatch.setenv("GREENERY_DBT_DOCS_URL", "s3://no-such-bucket/dbt-docs")
    _generated_site(tmp_path / "run", "first")

    with pytest.raises(docs.DocsStoreError) as raised:
        docs.publish_docs(str(tmp_path / "run"))

    message = str(raised.value)
    assert message.startswith("Publishing the dbt docs failed: the dbt docs store s3://no-such-bucket/dbt-docs failed")
    assert "'greenery_test_store'" in message and "GREENERY_DBT_DOCS_URL" in message
    assert "\n" not in message
