"""The Helm values in deploy/ (docs/deployment.md) are checked statically, as the Dockerfile is: they parse,
point at the paths the image has, set only settings the package reads, and give every connection the DAGs
need from a secret, never inline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from include import settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy"
IMAGE_ROOT = "/usr/local/airflow"


def _values(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def _env(values: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in values.get("env", [])}


def test_the_celery_values_run_the_image_with_two_workers_and_no_dag_volume() -> None:
    values = _values("values.yaml")
    assert values["executor"] == "CeleryExecutor"
    assert values["workers"]["replicas"] >= 2
    assert values["dags"]["persistence"]["enabled"] is False and values["dags"]["gitSync"]["enabled"] is False
    pinned = re.search(r"^apache-airflow==([\d.]+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    assert values["airflowVersion"] == pinned.group(1)
    assert values["images"]["airflow"]["repository"] and values["images"]["airflow"]["tag"]


def test_the_kubernetes_values_only_change_the_executor_and_the_task_pods() -> None:
    values = _values("values-kubernetes.yaml")
    assert values["executor"] == "KubernetesExecutor"
    assert values["redis"]["enabled"] is False
    assert set(values) <= {"executor", "redis", "config", "workers"}


@pytest.mark.parametrize("name", ["values.yaml", "values-kubernetes.yaml"])
def test_every_setting_the_values_set_is_one_the_package_reads(name: str) -> None:
    env = _env(_values(name))
    ours = {key for key in env if key.startswith("GREENERY_")}
    unknown = ours - set(settings.SETTINGS)
    assert not unknown, f"{name} sets settings that include/settings.py does not read: {sorted(unknown)}"


def test_the_paths_are_the_images_and_match_the_dockerfile() -> None:
    env = _env(_values("values.yaml"))
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    project = env["GREENERY_DBT_PROJECT_DIR"]
    assert f"GREENERY_DBT_PROJECT_DIR={project}" in dockerfile
    assert (REPO_ROOT / Path(project).relative_to(IMAGE_ROOT) / "dbt_project.yml").is_file()
    assert env["PYTHONPATH"] == IMAGE_ROOT
    # The docs directory the api-server serves is a volume every airflow container mounts.
    docs_dir = env["GREENERY_DBT_DOCS_DIR"]
    assert f"GREENERY_DBT_DOCS_DIR={docs_dir}" in dockerfile
    values = _values("values.yaml")
    mounted = {mount["name"]: mount["mountPath"] for mount in values["volumeMounts"]}
    volumes = {volume["name"] for volume in values["volumes"]}
    assert docs_dir in mounted.values() and set(mounted) <= volumes


def test_connections_come_from_secrets_and_none_is_written_inline() -> None:
    values = _values("values.yaml")
    from_secrets = {item["envName"] for item in values["secret"]}
    for conn_id in (settings.WAREHOUSE_CONN_ID, settings.SLACK_CONN_ID):
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in from_secrets
    assert not [key for key in _env(values) if key.startswith("AIRFLOW_CONN_") or "PASSWORD" in key]
    assert values["postgresql"]["enabled"] is False and values["data"]["metadataSecretName"]


def test_the_guide_names_the_files_and_the_snapshot_pool() -> None:
    guide = (REPO_ROOT / "docs" / "deployment.md").read_text()
    for needed in ("deploy/values.yaml", "deploy/values-kubernetes.yaml", "airflow pools set dbt_snapshots 1"):
        assert needed in guide
    from include.dbt_tasks.cosmos_config import POOLS

    assert [(name, slots) for name, slots, _ in POOLS] == [("dbt_snapshots", 1)]
