"""The Helm values in deploy/ (docs/deployment.md) are checked statically, as the Dockerfile is: they parse,
point at the paths the image has, set only settings the package reads (with values it accepts), give every
connection the DAGs need from a secret, never inline, put the dbt docs and the task logs in an object store
instead of a shared volume, and make the Celery workers serve the queue of the dbt tasks."""

from __future__ import annotations

import ast
import datetime as dt
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from include import settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy"
IMAGE_ROOT = "/usr/local/airflow"
# Environment variables the values may set that are neither the package's settings nor Airflow's configuration.
NOT_SETTINGS = {"PYTHONPATH"}


def _values(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def _merged(*names: str) -> dict:
    """The values as Helm merges several -f files: maps key by key, anything else (lists too) replaced whole."""

    def merge(base: Any, override: Any) -> Any:
        if isinstance(base, dict) and isinstance(override, dict):
            return {key: merge(base[key], value) if key in base else value for key, value in override.items()} | {
                key: value for key, value in base.items() if key not in override
            }
        return override

    merged: dict = {}
    for name in names:
        merged = merge(merged, _values(name))
    return merged


def _env(values: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in values.get("env", [])}


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, value) of a values tree, maps and lists alike, the keys' paths included."""
    yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _walk(child, f"{path}.{key}" if path else str(key))


def _worker_queues(values: dict) -> list[str]:
    """The queues of the Celery workers' command in ``workers.args`` (``bash -c "exec airflow celery worker ..."``)."""
    args = values["workers"]["args"]
    command = shlex.split(args[-1]) if args[:2] == ["bash", "-c"] else list(args)
    command = command[1:] if command[:1] == ["exec"] else command
    assert command[:3] == ["airflow", "celery", "worker"], f"workers.args does not start a Celery worker: {args}"
    for flag in ("--queues", "-q"):
        if flag in command[:-1]:
            return command[command.index(flag) + 1].split(",")
    return []


def _longest_dagrun_timeout() -> dt.timedelta:
    """The longest ``dagrun_timeout=dt.timedelta(...)`` among the DAG files, read without importing them."""
    found = []
    for path in (REPO_ROOT / "dags").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "dagrun_timeout" and isinstance(node.value, ast.Call):
                assert ast.unparse(node.value.func).endswith("timedelta"), f"{path.name}: {ast.unparse(node)}"
                found.append(dt.timedelta(**{k.arg: ast.literal_eval(k.value) for k in node.value.keywords}))
    assert found, "no DAG file sets dagrun_timeout: the search is broken"
    return max(found)


def test_the_celery_values_run_the_image_with_two_workers_and_no_dag_volume() -> None:
    values = _values("values.yaml")
    assert values["executor"] == "CeleryExecutor"
    assert values["workers"]["replicas"] >= 2
    assert values["dags"]["persistence"]["enabled"] is False and values["dags"]["gitSync"]["enabled"] is False
    pinned = re.search(r"^apache-airflow==([\d.]+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    assert values["airflowVersion"] == pinned.group(1)
    assert values["images"]["airflow"]["repository"] and values["images"]["airflow"]["tag"]
    assert values["redis"]["enabled"] is True


def test_the_kubernetes_values_only_change_the_executor_and_the_task_pods() -> None:
    values = _values("values-kubernetes.yaml")
    assert values["executor"] == "KubernetesExecutor"
    assert values["redis"]["enabled"] is False
    # No env, secret or volume of its own: the docs URL, the connections and the logging of values.yaml apply.
    assert set(values) <= {"executor", "redis", "config", "workers"}
    merged = _merged("values.yaml", "values-kubernetes.yaml")
    assert _env(merged) == _env(_values("values.yaml"))
    assert merged["secret"] == _values("values.yaml")["secret"]
    assert merged["config"]["logging"] == _values("values.yaml")["config"]["logging"]


@pytest.mark.parametrize("name", ["values.yaml", "values-kubernetes.yaml"])
def test_every_variable_the_values_set_is_a_setting_the_package_reads_with_a_value_it_accepts(name: str) -> None:
    env = _env(_merged("values.yaml", name))
    unknown = {key for key in env if key not in settings.SETTINGS and not key.startswith("AIRFLOW__")} - NOT_SETTINGS
    assert not unknown, f"{name} sets variables that include/settings.py does not declare: {sorted(unknown)}"
    for key in env.keys() & settings.SETTINGS.keys():
        settings.SETTINGS[key].value(env)  # raises ConfigurationError for a value the package refuses


def test_the_paths_are_the_images_and_match_the_dockerfile() -> None:
    env = _env(_values("values.yaml"))
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    # The Dockerfile's ENV lines (`NAME=value`): where the values set the same variable, they agree.
    image_env = dict(re.findall(r"^\s*(?:ENV\s+)?([A-Z][A-Z0-9_]*)=(\S+?)\s*\\?$", dockerfile, re.M))
    assert {"PYTHONPATH", "GREENERY_DBT_PROJECT_DIR"} <= set(image_env)
    for key in env.keys() & image_env.keys():
        assert env[key] == image_env[key], f"{key}: values {env[key]!r}, Dockerfile {image_env[key]!r}"
    # The image is the repository under IMAGE_ROOT: every path the values name is one the repository has.
    paths = {key: value for key, value in env.items() if value.startswith("/")}
    assert paths, "the values name no path at all: the check is broken"
    for key, value in paths.items():
        assert value == IMAGE_ROOT or value.startswith(f"{IMAGE_ROOT}/"), f"{key}={value} is outside the image"
        assert (REPO_ROOT / Path(value).relative_to(IMAGE_ROOT)).exists(), f"{key}={value} is not in the image"
    assert env["PYTHONPATH"] == IMAGE_ROOT
    project = REPO_ROOT / Path(env["GREENERY_DBT_PROJECT_DIR"]).relative_to(IMAGE_ROOT)
    assert (project / "dbt_project.yml").is_file()


def test_the_docs_go_to_an_object_store_and_no_volume_is_shared() -> None:
    values = _values("values.yaml")
    env = _env(values)
    url = settings.DBT_DOCS_URL.value(env)
    assert url and urlsplit(url).scheme == "s3" and urlsplit(url).netloc, f"GREENERY_DBT_DOCS_URL={url!r}"
    # The directory is unused when the URL is set; setting it would suggest a volume that is not there.
    assert settings.DBT_DOCS_DIR_SETTING.name not in env
    conn_id = settings.DBT_DOCS_CONN_ID.value(env)
    assert conn_id, "GREENERY_DBT_DOCS_CONN_ID is not set: the store would need the pods' default credentials"
    from_secrets = {item["envName"] for item in values["secret"]}
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in from_secrets
    for name in ("values.yaml", "values-kubernetes.yaml"):
        merged = _merged("values.yaml", name)
        assert not merged.get("volumes") and not merged.get("volumeMounts"), f"{name} mounts a volume in every pod"
        assert not merged["workers"].get("extraVolumes") and not merged["workers"].get("extraVolumeMounts")
        assert merged["workers"]["persistence"]["enabled"] is False, f"{name}: the workers have a volume"
        claims = [
            path for path, node in _walk(merged) if path.endswith("persistentVolumeClaim") or node == "ReadWriteMany"
        ]
        assert not claims, f"{name} claims a volume: {claims}"


def test_task_logs_go_to_the_docs_bucket_through_the_same_connection() -> None:
    values = _values("values.yaml")
    env = _env(values)
    logging = values["config"]["logging"]
    assert str(logging["remote_logging"]).lower() == "true"
    folder, docs = urlsplit(logging["remote_base_log_folder"]), urlsplit(settings.DBT_DOCS_URL.value(env))
    assert (folder.scheme, folder.netloc) == (docs.scheme, docs.netloc)
    assert folder.path.strip("/") and folder.path.strip("/") != docs.path.strip("/"), "logs and docs share a folder"
    assert logging["remote_log_conn_id"] == settings.DBT_DOCS_CONN_ID.value(env)


def test_the_celery_workers_serve_the_default_queue_and_the_dbt_queue() -> None:
    values = _values("values.yaml")
    env = _env(values)
    assert "GREENERY_DBT_QUEUE" in env, "the dbt queue is named in the env, not left to the default"
    default_queue = values["config"].get("operators", {}).get("default_queue", "default")
    assert sorted(_worker_queues(values)) == sorted({default_queue, settings.DBT_QUEUE.value(env)})


def test_the_broker_gives_a_task_to_another_worker_only_after_the_longest_run() -> None:
    config = _values("values.yaml")["config"]
    timeout = int(config["celery_broker_transport_options"]["visibility_timeout"])
    assert timeout > _longest_dagrun_timeout().total_seconds()
    assert int(config["celery"]["worker_concurrency"]) >= 1


def test_connections_come_from_secrets_and_none_is_written_inline() -> None:
    values = _values("values.yaml")
    from_secrets = {item["envName"] for item in values["secret"]}
    for conn_id in (settings.WAREHOUSE_CONN_ID, settings.SLACK_CONN_ID):
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in from_secrets
    assert not [key for key in _env(values) if key.startswith("AIRFLOW_CONN_") or "PASSWORD" in key]
    assert values["postgresql"]["enabled"] is False and values["data"]["metadataSecretName"]


def test_the_guide_names_the_files_the_store_and_the_snapshot_pool() -> None:
    guide = (REPO_ROOT / "docs" / "deployment.md").read_text()
    env = _env(_values("values.yaml"))
    needed = [
        "deploy/values.yaml",
        "deploy/values-kubernetes.yaml",
        "airflow pools set dbt_snapshots 1",
        "make up EXECUTOR=celery",
        env["GREENERY_DBT_DOCS_URL"],
        env["GREENERY_DBT_DOCS_CONN_ID"],
        "endpoint_url",
    ]
    assert [text for text in needed if text not in guide] == []
    assert "ReadWriteMany claim named" not in guide and "issue #15" not in guide
    from include.dbt_tasks.cosmos_config import POOLS

    assert [(name, slots) for name, slots, _ in POOLS] == [("dbt_snapshots", 1)]
