"""``rerun_failed_of`` and ``only``, worked out by ``validate_params`` from the run history in a real PostgreSQL
database and real dbt: what each picks, and one sentence for each value that cannot be used. (The DAG runs
that use them are in tests/e2e/test_dag_runs.py.)"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import psycopg2
import pytest

from include import settings
from include.dbt_tasks import project_state
from include.dbt_tasks.params import InvalidParams, RunWindow
from include.dbt_tasks.run_plan import ThisRun, plan
from include.dbt_tasks.selection import resolve
from include.history.artifacts import DbtInvocation, NodeResult
from include.history.store import ensure_tables, write_invocations
from tests.conftest import warehouse_connection_json

DAILY = "greenery_daily"
WINDOW = RunWindow(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, tzinfo=dt.UTC), False)
NO_FORM = {"select": None, "exclude": None, "rerun_failed_of": None, "only": "all"}


class _Airflow:
    """What the task SDK tells validate_params about the DAG's runs: which exist, what their validate_params
    returned, and their task states."""

    def __init__(self, runs=(), validated=None, task_states=None):
        self.runs = set(runs)
        self.validated = validated or {}
        self.task_states = task_states or {}

    def get_dr_count(self, dag_id, run_ids):
        return sum((dag_id, run_id) in self.runs for run_id in run_ids)

    def xcom_pull(self, task_ids, dag_id, run_id):
        assert (task_ids, dag_id) == ("validate_params", DAILY)
        return self.validated.get(run_id)

    def get_task_states(self, dag_id, run_ids):
        return {run_id: self.task_states.get(run_id, {}) for run_id in run_ids}


class _Ti:
    def __init__(self, dag_id, run_id, task_id):
        self.dag_id, self.run_id, self.task_id, self.try_number = dag_id, run_id, task_id, 1


@pytest.fixture
def history(pg_cluster, fresh_database, monkeypatch):
    """An empty run history in a real database, wired as the Airflow connection ``greenery_warehouse``."""
    dbname, env = fresh_database("plan")
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.WAREHOUSE_CONN_ID.upper()}", warehouse_connection_json(env))
    connection = psycopg2.connect(pg_cluster.dsn(dbname))
    ensure_tables(connection)
    yield connection
    connection.close()


def _record(connection, dag_id, run_id, started, results):
    """One dbt command of a run: results as (unique id, status) pairs, all finished at ``started``."""
    invocation = DbtInvocation(
        invocation_id=f"{run_id}-{started.isoformat()}",
        command="build",
        dbt_version="1.11",
        started_at=started,
        generated_at=started,
        elapsed_seconds=1.0,
        selector=None,
        results=tuple(
            NodeResult(uid, uid.split(".")[0], uid.split(".")[2], status, completed_at=started)
            for uid, status in results
        ),
    )
    write_invocations(connection, [invocation], {"ti": _Ti(dag_id, run_id, "some_task")})


def _models(window: RunWindow) -> set[str]:
    return {uid.split(".")[-1] for uid in window.selected if uid.startswith("model.")}


T0 = dt.datetime(2024, 3, 2, 6, tzinfo=dt.UTC)
FAILED_TEST = "test.greenery.accepted_values_fct_orders_status__preparing__shipped__delivered.616a9b191f"


def test_a_rerun_rebuilds_what_failed_last_and_its_downstream_with_the_earlier_runs_window(
    history, daily, dbt_manifest
) -> None:
    earlier = "scheduled__2024-03-02T06:00:00+00:00"
    _record(history, DAILY, earlier, T0, [("model.greenery.dim_products", "error")])
    # dim_products succeeded on its retry: not a failure. A test on fct_orders failed on the data.
    _record(history, DAILY, earlier, T0 + dt.timedelta(minutes=2), [("model.greenery.dim_products", "success")])
    _record(history, DAILY, earlier, T0 + dt.timedelta(minutes=3), [(FAILED_TEST, "fail")])
    # A task Airflow saw fail although dbt never reported on it (killed): its node comes back too.
    states = {earlier: {"models.stg_greenery__promos.run": "failed", "models.fct_orders.run": "success"}}
    validated = {earlier: {"start_date": "2024-02-01T00:00:00+00:00", "end_date": "2024-02-03T00:00:00+00:00",
                           "full_refresh": True}}  # fmt: skip
    airflow = _Airflow({(DAILY, earlier)}, validated, states)
    run = ThisRun(DAILY, "manual__now", airflow, daily)

    window = plan(WINDOW, {**NO_FORM, "rerun_failed_of": earlier}, run)

    # The failed test reruns with the model it tests; the killed staging model with everything downstream.
    assert _models(window) == {"fct_orders", "user_order_facts", "stg_greenery__promos", "int_orders_priced"}
    assert FAILED_TEST in window.selected
    assert (window.start.date(), window.end.date(), window.full_refresh) == (
        dt.date(2024, 2, 1),
        dt.date(2024, 2, 3),
        True,
    )
    assert window.selection_text == f"rerun of what failed in {earlier}: --select fct_orders+ stg_greenery__promos+"
    assert window.state_mode is None  # a partial build is no baseline for only=changed
    # latest is the newest earlier run; dates given in the form win over the earlier run's.
    assert plan(WINDOW, {**NO_FORM, "rerun_failed_of": "latest", "start_date": "2024-03-01"}, run).start == WINDOW.start


def test_a_run_without_failures_has_nothing_to_rerun_and_builds_no_node(history, daily, dbt_manifest) -> None:
    earlier = "manual__green"
    _record(history, DAILY, earlier, T0, [("model.greenery.fct_orders", "success"), (FAILED_TEST, "warn")])
    run = ThisRun(DAILY, "manual__now", _Airflow({(DAILY, earlier)}), daily)
    window = plan(WINDOW, {**NO_FORM, "rerun_failed_of": "latest"}, run)
    assert window.selected == ()
    assert window.selection_text == "nothing to rerun: no dbt node failed in run manual__green"
    assert window.as_xcom()["selected"] == []


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"rerun_failed_of": "latest", "select": "fct_orders+"},
            "rerun_failed_of picks the nodes itself (what failed and its downstream): leave select empty",
        ),
        (
            {"rerun_failed_of": "latest", "only": "changed"},
            "rerun_failed_of reruns what failed; only=changed cannot narrow it: leave only at all.",
        ),
        (
            {"rerun_failed_of": "manual__typo"},
            "rerun_failed_of 'manual__typo' is no run of greenery_daily: copy a run id from greenery_daily's Grid "
            "view, or write latest.",
        ),
        (
            {"rerun_failed_of": "scheduled__hourly"},
            "rerun_failed_of 'scheduled__hourly' is no run of greenery_daily (it is a run of greenery_hourly_snapshot)",
        ),
        ({"rerun_failed_of": "manual__now"}, "rerun_failed_of 'manual__now' is this run"),
        ({"rerun_failed_of": "latest"}, "rerun_failed_of latest: greenery_daily has no earlier run that ran dbt"),
        (
            {"only": "changed"},
            "only=changed compares with the last green run of greenery_daily that built every node, and there is "
            "none yet: run once with only=all (the scheduled run does), then use only=changed.",
        ),
        ({"only": "fresher"}, "then use only=fresher."),
        ({"only": "everything"}, "only 'everything' is not one of all, changed, fresher."),
    ],
    ids=[
        "with-select",
        "with-only",
        "unknown-run",
        "other-dag",
        "this-run",
        "no-earlier-run",
        "no-state",
        "fresher-no-state",
        "bad-only",
    ],
)
def test_a_rerun_or_only_that_cannot_be_used_is_one_sentence(history, daily, form, message) -> None:
    hourly_result = [("snapshot.greenery.orders_snapshot", "error")]
    _record(history, "greenery_hourly_snapshot", "scheduled__hourly", T0, hourly_result)
    run = ThisRun(DAILY, "manual__now", _Airflow({("greenery_hourly_snapshot", "scheduled__hourly")}), daily)
    with pytest.raises(InvalidParams) as rejected:
        plan(WINDOW, {**NO_FORM, **form}, run)
    assert message in str(rejected.value)


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """A copy of the dbt project, parsed: the state a green run keeps is this manifest."""
    copy = tmp_path / "greenery"
    shutil.copytree(settings.DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    from include.dbt_tasks.cosmos_config import _dbt_executable

    parsed = subprocess.run(
        [_dbt_executable(), "parse", "--profiles-dir", ".", "--project-dir", ".", "--target-path", "target/airflow"],
        cwd=copy,
        capture_output=True,
        text=True,
    )
    assert parsed.returncode == 0, parsed.stdout[-3000:]
    return copy


def test_only_changed_rebuilds_the_edited_model_and_its_downstream_against_the_stored_state(
    history, project_copy, tmp_path
) -> None:
    manifest_path = project_copy / "target" / "airflow" / "manifest.json"
    project_state.store_state(history, DAILY, "scheduled__green", "all", manifest_path.read_text())
    state = project_state.latest_state(history, DAILY)
    assert state.run_id == "scheduled__green"
    state_dir = project_state.write_state_dir(state, tmp_path / "state")

    def changed() -> list[str]:
        return resolve(
            ["state:modified+"],
            [],
            project_dir=project_copy,
            manifest_path=manifest_path,
            state_dir=state_dir,
            allow_empty=True,
        )

    assert changed() == []  # nothing edited since that run
    model = project_copy / "models" / "marts" / "core" / "fct_orders.sql"
    model.write_text(model.read_text() + "\n-- an edit: the same rows, new code\n")
    chosen = changed()
    assert {uid for uid in chosen if uid.startswith("model.")} == {
        "model.greenery.fct_orders",
        "model.greenery.user_order_facts",
    }
    assert "test.greenery.unique_fct_orders_order_id.523ddb6ce5" in chosen


def test_only_fresher_picks_the_raw_tables_whose_newest_row_is_newer_than_the_stored_freshness(
    history, dbt_manifest
) -> None:
    manifest = json.loads(Path(dbt_manifest).read_text())
    with history.cursor() as cursor:
        cursor.execute("create schema raw")
        cursor.execute("create table raw.events (created_at timestamp)")
        cursor.execute("create table raw.orders (created_at timestamp)")
        cursor.execute("insert into raw.events values ('2024-03-01 23:00'), ('2024-03-02 05:00')")
        cursor.execute("insert into raw.orders values ('2024-03-01 22:00')")
    history.commit()
    state = project_state.ProjectState(
        "scheduled__green",
        T0,
        "{}",
        {
            "source.greenery.greenery.events": dt.datetime(2024, 3, 2, 4, tzinfo=dt.UTC),
            "source.greenery.greenery.orders": dt.datetime(2024, 3, 1, 22, tzinfo=dt.UTC),
            "source.greenery.greenery.gone": dt.datetime(2024, 3, 1, tzinfo=dt.UTC),  # no longer in the project
        },
    )
    assert project_state.fresher_sources(history, state, manifest) == ["source.greenery.greenery.events"]


def test_only_the_newest_states_are_kept(history) -> None:
    for day in range(1, project_state.KEEP_STATES + 3):
        project_state.store_state(history, DAILY, f"scheduled__2024-03-{day:02d}", "all", "{}")
    with history.cursor() as cursor:
        cursor.execute("select run_id from dbt_meta.project_states order by recorded_at")
        kept = [run_id for (run_id,) in cursor.fetchall()]
    assert kept == [f"scheduled__2024-03-{day:02d}" for day in range(3, project_state.KEEP_STATES + 3)]
    assert project_state.latest_state(history, DAILY).run_id == kept[-1]
