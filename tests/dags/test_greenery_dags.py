"""The shape of the two dbt DAGs: schedules, ownership, retries, the order of the steps, one task per dbt node,
the snapshot pool, and that parsing reads the manifest instead of running dbt."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from include import settings
from include.dbt_tasks.retries import CALLBACK as FAIL_UNLESS_CONNECTION_DROPPED
from include.dbt_tasks.steps import RECORD_DBT_RESULTS

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"


@pytest.fixture(scope="module")
def manifest(dbt_manifest: Path) -> dict:
    return json.loads(dbt_manifest.read_text())


def _names(manifest: dict, resource_type: str) -> set[str]:
    return {node["name"] for node in manifest["nodes"].values() if node["resource_type"] == resource_type}


def _is_test(task) -> bool:
    return type(task).__name__.startswith("DbtTest")


def test_daily_runs_once_a_day_at_the_configured_hour_one_run_at_a_time(daily) -> None:
    assert daily.timetable.expression == "0 6 * * *"
    assert str(daily.timetable.timezone) == "UTC"
    assert daily.max_active_runs == 1
    assert daily.catchup is False
    assert daily.dagrun_timeout == dt.timedelta(hours=3)
    assert {"greenery", "dbt", "daily"} <= set(daily.tags)
    assert daily.default_args["owner"] == "analytics"
    assert daily.default_args["retries"] >= 2
    assert daily.doc_md.strip().startswith("### greenery_daily")


def test_hourly_runs_every_hour_one_run_at_a_time(hourly) -> None:
    assert hourly.timetable.expression == "30 * * * *"
    assert hourly.max_active_runs == 1
    assert hourly.catchup is False
    assert {"greenery", "dbt", "hourly"} <= set(hourly.tags)
    assert hourly.default_args["owner"] == "analytics"
    assert hourly.default_args["retries"] >= 2


def test_the_daily_hour_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from include.dbt_tasks import steps
    from include.settings import ConfigurationError

    monkeypatch.setenv("GREENERY_DAILY_HOUR", "22")
    assert steps.daily_schedule().expression == "0 22 * * *"
    monkeypatch.setenv("GREENERY_DAILY_HOUR", "25")
    with pytest.raises(ConfigurationError, match="GREENERY_DAILY_HOUR='25' must be a whole number from 0 to 23"):
        steps.daily_schedule()


def test_the_trigger_form_offers_full_refresh_and_a_date_window(daily) -> None:
    params = daily.params
    assert params["full_refresh"] is False
    assert params["start_date"] is None and params["end_date"] is None
    schema = {name: params.get_param(name).schema for name in ("full_refresh", "start_date", "end_date")}
    assert schema["full_refresh"]["type"] == "boolean"
    assert schema["start_date"]["format"] == schema["end_date"]["format"] == "date"
    assert "__cosmos_telemetry_metadata__" not in params


def test_airflow_rejects_a_malformed_date_before_it_creates_the_run(daily) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    # What the scheduler side does with a trigger's conf (UI form, REST API, CLI, dag.test) before any task runs.
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(daily))
    with pytest.raises(ValueError, match="Invalid input for param start_date: '2024-02-30' is not a 'date'"):
        scheduler_dag.params.deep_merge({"start_date": "2024-02-30"}).validate()


def test_daily_order_is_validate_freshness_snapshots_models_docs(daily) -> None:
    tasks = {task.task_id: task for task in daily.tasks}
    snapshot_ids = {t for t in tasks if t.startswith("snapshots.")}
    model_ids = {t for t in tasks if t.startswith("models.")}
    assert tasks["validate_params"].upstream_task_ids == set()
    assert tasks["source_freshness"].upstream_task_ids == {"validate_params"}
    for task_id in snapshot_ids:
        ancestors = tasks[task_id].get_flat_relative_ids(upstream=True)
        assert {"validate_params", "source_freshness"} <= ancestors, task_id
    for task_id in model_ids:
        ancestors = tasks[task_id].get_flat_relative_ids(upstream=True)
        assert snapshot_ids <= ancestors, f"{task_id} does not wait for the snapshots"
    # Every task but the producer mode's dbt_build, which runs beside the node tasks, not before them, and its
    # fail_run, which only gives the run its state.
    producer_mode = {"dbt_build", "fail_run"}
    assert tasks["docs_generate"].get_flat_relative_ids(upstream=True) == set(tasks) - {"docs_generate", *producer_mode}
    assert tasks["docs_generate"].downstream_task_ids <= {"fail_run"}


def test_every_model_of_the_dbt_project_has_its_own_task_followed_by_its_tests(daily, manifest) -> None:
    task_ids = {task.task_id for task in daily.tasks}
    models = _names(manifest, "model")
    assert models, "the manifest has no models"
    missing = {m for m in models if f"models.{m}.run" not in task_ids and f"models.{m}" not in task_ids}
    assert not missing, f"models without a task: {sorted(missing)}"
    tested = {name for name in models if f"models.{name}.test" in task_ids}
    for name in tested:
        assert daily.get_task(f"models.{name}.test").upstream_task_ids == {f"models.{name}.run"}


def test_source_tests_run_before_the_staging_models_that_read_the_source(daily, manifest) -> None:
    sources_with_tests = {
        node["depends_on"]["nodes"][0]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and len(node["depends_on"]["nodes"]) == 1
        and node["depends_on"]["nodes"][0].startswith("source.")
    }
    assert sources_with_tests
    for unique_id in sources_with_tests:
        table = unique_id.split(".")[-1]
        task = daily.get_task(f"models.greenery_{table}_source_test")
        readers = {t for t in task.downstream_task_ids if t.endswith(".run")}
        assert readers, f"nothing reads source {table} after its tests"


def test_dbt_tasks_retry_with_back_off_and_tests_only_when_their_connection_dropped(daily, hourly) -> None:
    model_runs = [t for t in daily.tasks if t.task_id.startswith("models.") and t.task_id.endswith(".run")]
    assert model_runs
    for task in model_runs:
        assert task.retries >= 2, task.task_id
        assert task.retry_exponential_backoff > 1, task.task_id
    # Tests and the freshness check keep the retries, and a callback after dbt that fails them for good unless
    # the connection dropped (tests/dags/test_retries.py), after the one that keeps the run history.
    checks = [t for dag in (daily, hourly) for t in dag.tasks if _is_test(t)] + [daily.get_task("source_freshness")]
    assert len(checks) > 1
    for task in checks:
        assert task.retries >= 2, task.task_id
        callbacks = task.callback if isinstance(task.callback, list) else [task.callback]
        assert callbacks[0] == RECORD_DBT_RESULTS and callbacks[-1] == FAIL_UNLESS_CONNECTION_DROPPED, task.task_id
    assert daily.get_task("validate_params").retries == 0


def test_hourly_dag_runs_only_the_snapshots(hourly, manifest) -> None:
    snapshots = _names(manifest, "snapshot")
    assert snapshots
    # Besides them, in the producer mode, the dbt_build task that runs them all in one dbt process, and fail_run.
    nodes = [t for t in hourly.tasks if t.task_id not in ("dbt_build", "fail_run")]
    assert all(t.task_id.startswith("snapshots.") for t in nodes)
    assert {type(t).__name__ for t in nodes if not _is_test(t)} == {"DbtSnapshotLocalOperator"}
    assert {t.task_id.split(".")[1] for t in nodes if not _is_test(t)} == snapshots


def test_every_snapshot_task_of_both_dags_shares_the_one_slot_pool(daily, hourly) -> None:
    from include.dbt_tasks.cosmos_config import POOLS, SNAPSHOT_POOL

    assert (SNAPSHOT_POOL, 1) in [(name, slots) for name, slots, _ in POOLS]
    snapshot_tasks = [t for dag in (daily, hourly) for t in dag.tasks if type(t).__name__ == "DbtSnapshotLocalOperator"]
    assert len(snapshot_tasks) >= 2
    assert {t.pool for t in snapshot_tasks} == {SNAPSHOT_POOL}
    # Besides them only the producer mode's dbt_build, which runs the snapshots of its run.
    other = [t.task_id for t in daily.tasks if not t.task_id.startswith("snapshots.") and t.pool == SNAPSHOT_POOL]
    assert other in ([], ["dbt_build"])


def test_freshness_does_not_block_the_build_unless_configured(daily, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from include.dbt_tasks.upstream_gate import RunGraph

    # The rule each task is gated by: its trigger rule, or in the producer mode the one its trigger keeps.
    rules = RunGraph.of(daily).rules
    roots = [daily.get_task(t) for t in daily.task_ids if t.startswith("snapshots.")]
    roots = [t for t in roots if "source_freshness" in t.upstream_task_ids]
    assert roots
    for task in roots:
        assert rules[task.task_id] == "all_done_min_one_success"
        assert task.upstream_task_ids >= {"validate_params", "source_freshness"}

    monkeypatch.setenv("GREENERY_FRESHNESS_BLOCKS", "1")
    blocking = DagBag(dag_folder=str(DAGS_DIR / "greenery_daily.py")).dags["greenery_daily"]
    blocking_rules = RunGraph.of(blocking).rules
    for task in (blocking.get_task(t.task_id) for t in roots):
        assert blocking_rules[task.task_id] == "all_success"
        assert task.upstream_task_ids == {"source_freshness"}
    # In the producer mode a stale source fails the run only when it stops the build.
    if "fail_run" in daily.task_ids:
        assert "source_freshness" not in daily.get_task("fail_run").upstream_task_ids
        assert "source_freshness" in blocking.get_task("fail_run").upstream_task_ids


def test_dbt_tasks_receive_the_validated_window_and_full_refresh(daily) -> None:
    run = next(t for t in daily.tasks if t.task_id.endswith(".run"))
    assert "xcom_pull(task_ids='validate_params')['start_date']" in run.vars["start_date"]
    assert "xcom_pull(task_ids='validate_params')['end_date']" in run.vars["end_date"]
    assert "['full_refresh']" in run.full_refresh
    assert "vars" in run.template_fields and "full_refresh" in run.template_fields


def test_mart_tasks_emit_assets(daily) -> None:
    assert daily.get_task("models.product_funnel.run").emit_datasets is True


def test_parsing_reads_the_manifest_and_runs_no_dbt(daily) -> None:
    from cosmos.constants import LoadMode

    groups = daily.task_group_dict
    for group_id in ("snapshots", "models"):
        assert groups[group_id].dbt_graph.load_method == LoadMode.DBT_MANIFEST


def test_every_parse_reads_the_warehouse_connection_again(monkeypatch: pytest.MonkeyPatch, dbt_manifest: Path) -> None:
    # Cosmos' profile mapping keeps the first connection it looked up; an edited connection must reach the next
    # parse in the same process (airflow dags test, one test session running several DAG runs).
    from airflow.dag_processing.dagbag import DagBag

    for database in ("warehouse_before_the_edit", "warehouse_after_the_edit"):
        connection = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "dbt", "schema": database}
        monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", json.dumps(connection))
        bag = DagBag(dag_folder=str(DAGS_DIR / "greenery_daily.py"))
        task = bag.dags["greenery_daily"].get_task("models.fct_orders.run")
        assert task.profile_config.profile_mapping.profile["dbname"] == database


def test_execution_mode_is_one_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmos.constants import ExecutionMode

    from include import settings
    from include.dbt_tasks import cosmos_config

    monkeypatch.setenv(settings.COSMOS_EXECUTION_MODE.name, "WATCHER")
    assert cosmos_config.execution_mode() == ExecutionMode.WATCHER
    monkeypatch.delenv(settings.COSMOS_EXECUTION_MODE.name)
    # The default, the producer mode, renders Cosmos' LOCAL tasks and runs dbt beside them in one process.
    assert settings.COSMOS_EXECUTION_MODE.default == "producer"
    assert cosmos_config.execution_mode() == ExecutionMode.LOCAL and cosmos_config.uses_producer()
    monkeypatch.setenv(settings.COSMOS_EXECUTION_MODE.name, "kubernetes")
    with pytest.raises(settings.ConfigurationError, match="use one of local, watcher"):
        cosmos_config.execution_mode()


def _parse_in_subprocess(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        timeout=300,
    )


def test_watcher_mode_renders_a_producer_and_keeps_its_test_sensors_without_retries(dbt_manifest: Path) -> None:
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_DIR / 'greenery_daily.py')!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "dag = bag.dags['greenery_daily']\n"
        "print(sorted({type(t).__name__ for t in dag.tasks}))\n"
        # The sources' test tasks run dbt themselves (LOCAL operators) and follow the connection rule.
        "print(sorted(t.task_id for t in dag.tasks if type(t).__name__.startswith('DbtTest')"
        " and type(t).__name__ != 'DbtTestLocalOperator' and t.retries))\n"
    )
    result = _parse_in_subprocess(code, GREENERY_COSMOS_EXECUTION_MODE="watcher")
    assert result.returncode == 0, result.stderr[-3000:]
    classes, retried_tests = result.stdout.strip().splitlines()[-2:]
    assert "DbtProducerWatcherOperator" in classes and "DbtRunWatcherOperator" in classes
    assert "DbtSnapshotLocalOperator" in classes  # snapshots stay LOCAL so the pool holds the writing process
    assert retried_tests == "[]"


def test_parsing_the_dag_files_does_not_import_the_slack_sdk(dbt_manifest: Path) -> None:
    # The dag-processor parses every file again and again; slack_sdk is needed only when an alert is sent.
    code = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_DIR)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print(len(bag.dags), sorted(name for name in sys.modules if name.split('.')[0] == 'slack_sdk'))\n"
    )
    result = _parse_in_subprocess(code)
    assert result.returncode == 0, result.stderr[-3000:]
    dags, slack_modules = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(dags) >= 2
    assert slack_modules == "[]"


def test_without_a_manifest_the_dags_fall_back_to_dbt_ls(tmp_path: Path, airflow_db: str) -> None:
    import shutil

    project = tmp_path / "greenery"
    shutil.copytree(settings.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_DIR / 'greenery_hourly_snapshot.py')!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "dag = bag.dags['greenery_hourly_snapshot']\n"
        "print(dag.task_group_dict['snapshots'].dbt_graph.load_method.value, len(dag.tasks))\n"
    )
    result = _parse_in_subprocess(code, GREENERY_DBT_PROJECT_DIR=str(project))
    assert result.returncode == 0, result.stderr[-3000:]
    method, tasks = result.stdout.strip().splitlines()[-1].split()
    assert method in ("dbt_ls", "dbt_ls_cache")
    assert int(tasks) >= 2


def test_alerts_and_run_history_are_wired_into_every_dbt_task(daily, hourly) -> None:
    from include.alerts.callbacks import on_dag_success, on_task_failure
    from include.dbt_tasks.docs import publish_docs
    from include.dbt_tasks.steps import RECORD_DBT_RESULTS

    for dag in (daily, hourly):
        assert dag.default_args["on_failure_callback"] is on_task_failure
        assert dag.on_success_callback is on_dag_success or on_dag_success in dag.on_success_callback
        dbt_tasks = [t for t in dag.tasks if type(t).__module__.startswith("cosmos.")]
        assert dbt_tasks
        for task in dbt_tasks:
            callbacks = task.callback if isinstance(task.callback, list) else [task.callback]
            assert RECORD_DBT_RESULTS in callbacks, task.task_id
    assert publish_docs in daily.get_task("docs_generate").callback
    assert daily.deadline, "greenery_daily has no deadline alert"


_STRUCTURE = (
    "import json\n"
    "from airflow.dag_processing.dagbag import DagBag\n"
    f"bag = DagBag(dag_folder={str(DAGS_DIR)!r})\n"
    "assert not bag.import_errors, bag.import_errors\n"
    "out = {}\n"
    "for dag_id in ('greenery_daily', 'greenery_hourly_snapshot'):\n"
    "    dag = bag.dags[dag_id]\n"
    "    out[dag_id] = {t.task_id: {'up': sorted(t.upstream_task_ids),\n"
    "        'rule': str(getattr(t.trigger_rule, 'value', t.trigger_rule)),\n"
    "        'pool': t.pool, 'assets': t.emit_datasets if hasattr(t, 'emit_datasets') else None,\n"
    "        'from_trigger': bool(t.start_from_trigger),\n"
    "        'trigger': (t.start_trigger_args.trigger_kwargs if t.start_trigger_args else None)} for t in dag.tasks}\n"
    "print(json.dumps(out))\n"
)


def test_producer_mode_keeps_every_node_task_and_starts_them_all_in_the_triggerer_at_once(dbt_manifest: Path) -> None:
    from include.dbt_tasks.task_ids import FAIL_RUN_TASK_ID, PRODUCER_TASK_ID

    rendered = {}
    for mode in ("local", "producer"):
        result = _parse_in_subprocess(_STRUCTURE, GREENERY_COSMOS_EXECUTION_MODE=mode)
        assert result.returncode == 0, result.stderr[-3000:]
        rendered[mode] = json.loads(result.stdout.strip().splitlines()[-1])
    for dag_id, local in rendered["local"].items():
        producer = dict(rendered["producer"][dag_id])
        built = producer.pop(PRODUCER_TASK_ID)
        fail_run = producer.pop(FAIL_RUN_TASK_ID)
        # The same tasks with the same dependencies, pools and assets: only the producer and fail_run are new.
        assert set(producer) == set(local)
        for task_id, task in local.items():
            same = {key: task[key] for key in ("up", "pool", "assets")}
            assert {key: producer[task_id][key] for key in same} == same, task_id
        assert built["pool"] == "dbt_snapshots"  # it runs the snapshots: they never overlap another DAG's
        node_tasks = {task_id for task_id, task in producer.items() if task_id != "validate_params"}
        assert {task_id for task_id, task in producer.items() if task["from_trigger"]} == node_tasks
        assert not any(task["from_trigger"] for task in local.values())
        # The scheduler defers every node task at the run's start; the rule it had stays with its trigger.
        for task_id in node_tasks:
            assert producer[task_id]["rule"] == "always", task_id
            assert producer[task_id]["trigger"]["rule"] == local[task_id]["rule"], task_id
        # A failure that stops the run fails it: the last task fails when one task failed, and is skipped
        # otherwise. A stale source alone leaves the run green, as in the local mode (the build goes on).
        assert fail_run["rule"] == "one_failed" and not fail_run["from_trigger"]
        assert set(fail_run["up"]) == (set(producer) | {PRODUCER_TASK_ID}) - {"source_freshness"}
    daily = rendered["producer"]["greenery_daily"]
    assert daily[PRODUCER_TASK_ID]["up"] == ["validate_params"]
    assert daily["validate_params"]["rule"] == "all_success"
    # A model's test task waits for exactly the tests on that model; a two-model test has its own task.
    tests = daily["models.fct_orders.test"]["trigger"]["nodes"]
    assert tests and all(node.startswith("test.greenery.") and "fct_orders" in node for node in tests)
    assert not any("relationships_fct_sessions_order_id" in node for node in tests)
    assert daily["models.fct_orders.run"]["trigger"]["nodes"] == ["model.greenery.fct_orders"]
    assert daily["source_freshness"]["trigger"]["nodes"] == []  # skipped only when the run builds nothing


def test_fail_run_alerts_nobody_and_never_retries(daily, hourly) -> None:
    for dag in (daily, hourly):
        fail_run = dag.get_task("fail_run")
        assert fail_run.retries == 0 and not fail_run.on_failure_callback
        assert fail_run.queue != "dbt"


def _runs_dbt(task) -> bool:
    return (
        type(task).__module__.startswith("cosmos.")
        or type(task).__name__ == "DbtProducerOperator"
        or task.task_id == "validate_params"  # `dbt ls` for a selection
    )


def test_tasks_that_run_dbt_are_on_the_dbt_queue_and_the_others_on_the_default_one(dags) -> None:
    from airflow.configuration import conf

    default_queue = conf.get("operators", "default_queue")
    queues = {(dag_id, task.task_id): task.queue for dag_id, dag in dags.items() for task in dag.tasks}
    expected = {
        (dag_id, task.task_id): "dbt" if _runs_dbt(task) else default_queue
        for dag_id, dag in dags.items()
        for task in dag.tasks
    }
    assert queues == expected
    assert {"dbt", default_queue} <= set(queues.values())  # both kinds exist: the check above compares something
    assert queues[("greenery_daily", "dbt_build")] == "dbt"
    assert queues[("greenery_daily", "docs_generate")] == "dbt"


def test_the_dbt_queue_is_a_setting(dbt_manifest: Path) -> None:
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder='dags/greenery_daily.py')\n"
        "print(sorted({t.queue for t in bag.dags['greenery_daily'].tasks if t.task_id != 'fail_run'}))\n"
    )
    parsed = _parse_in_subprocess(code, GREENERY_DBT_QUEUE="dbt-large")
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    assert parsed.stdout.strip().splitlines()[-1] == "['dbt-large']"
