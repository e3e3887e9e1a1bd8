"""The DAGs run end to end with ``dag.test()`` against a real PostgreSQL warehouse holding generated shop data:
bad trigger parameters stop the run before dbt, a two-day backfill run twice leaves the marts identical, a full
refresh rebuilds the incremental models, and the hourly DAG records the new versions of shipped orders.

The full daily run (every task, through the real scheduler) is in ``test_platform.py``. Here runs are limited
to the tasks each test is about, with the others marked successful: one task at a time in one process, a full
run of the 70-odd dbt tasks would cost minutes per run.
"""

from __future__ import annotations

import datetime as dt
import json

import psycopg2
import pytest

from tests.e2e.conftest import Warehouse, run_dag

# Each test makes one to four dag.test() runs; on a busy 2-core machine one run can take minutes.
pytestmark = pytest.mark.timeout(30 * 60)

DAILY = "greenery_daily"
HOURLY = "greenery_hourly_snapshot"


def _window_dependent_tasks(manifest_path) -> set[str]:
    """validate_params and the run tasks of the models whose contents depend on the window: the incremental
    models and every model built on them (the other models are rebuilt from all the raw data every run)."""
    manifest = json.loads(manifest_path.read_text())
    nodes = manifest["nodes"]
    todo = [
        uid
        for uid, node in nodes.items()
        if node["resource_type"] == "model" and node["config"]["materialized"] == "incremental"
    ]
    assert todo, "the dbt project has no incremental model"
    seen: set[str] = set()
    while todo:
        uid = todo.pop()
        if uid in seen:
            continue
        seen.add(uid)
        todo.extend(child for child in manifest["child_map"].get(uid, []) if child.startswith("model."))
    return {"validate_params"} | {f"models.{nodes[uid]['name']}.run" for uid in seen}


def _six_utc(days_ago: int) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=days_ago)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"start_date": "2024-03-05", "end_date": "2024-03-01"},
            "Invalid trigger parameters: start_date 2024-03-05 is after end_date 2024-03-01",
        ),
        (
            {"full_refrsh": True},
            "Invalid trigger parameters: Unknown trigger parameter 'full_refrsh' (did you mean 'full_refresh'?)",
        ),
        (
            {"select": "fct_order+"},
            "Invalid trigger parameters: select 'fct_order+' names no model, snapshot, test or source. "
            "Closest: fct_orders.",
        ),
    ],
    ids=["start-after-end", "unknown-parameter", "misspelt-selection"],
)
def test_bad_parameters_fail_the_first_task_and_no_dbt_command_runs(
    warehouse: Warehouse, capfd: pytest.CaptureFixture, conf: dict, message: str
) -> None:
    result = run_dag(DAILY, conf=conf)
    output = "".join(capfd.readouterr())
    assert result.state == "failed"
    assert result.ran() == {"validate_params"}
    assert result.tasks["validate_params"] == "failed"
    assert set(result.tasks.values()) == {"failed", "upstream_failed"}
    assert message in output


def test_a_selection_builds_the_selected_models_and_their_tests_and_skips_every_other_node_task(
    warehouse: Warehouse,
) -> None:
    result = run_dag(DAILY, conf={"select": "fct_orders+"})
    assert result.state == "success", result.tasks
    selected = {"fct_orders", "user_order_facts"}
    node_tasks = {task: state for task, state in result.tasks.items() if task.startswith(("models.", "snapshots."))}
    ran = {task for task, state in node_tasks.items() if state == "success"}
    assert {f"models.{model}.{kind}" for model in selected for kind in ("run", "test")} <= ran
    # The tests between a selected model and another (relationships) need the selected model: they run too.
    assert "models.relationships_fct_orders_user_id__user_id__ref_dim_users__test" in ran
    assert all(any(model in task for model in selected) for task in ran), sorted(ran)
    # Everything else was skipped, never failed: the Grid shows what ran.
    assert {state for task, state in node_tasks.items() if task not in ran} == {"skipped"}
    assert result.tasks["models.stg_greenery__orders.run"] == "skipped"
    assert result.tasks["snapshots.orders_snapshot.snapshot"] == "skipped"
    assert result.tasks["docs_generate"] == "success"


def test_a_malformed_date_is_rejected_before_the_run_is_created(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match="Invalid input for param start_date: '2024-02-30' is not a 'date'"):
        run_dag(DAILY, conf={"start_date": "2024-02-30", "end_date": "2024-03-01"})


def test_a_two_day_backfill_run_twice_leaves_the_marts_identical(warehouse: Warehouse, dbt_manifest) -> None:
    only = _window_dependent_tasks(dbt_manifest)
    days = [_six_utc(2), _six_utc(1)]  # each run's data interval is the day before its logical date

    for day in days:
        result = run_dag(DAILY, logical_date=day, only=only)
        assert result.state == "success", result.tasks
        assert result.ran() == only
    first = warehouse.fingerprint()
    assert first["analytics_product.fct_page_views"][0] > 0
    assert first["analytics_product.product_funnel"][0] > 0

    for day in days:
        assert run_dag(DAILY, logical_date=day, only=only).state == "success"
    assert warehouse.fingerprint() == first


def test_full_refresh_rebuilds_the_incremental_models(warehouse: Warehouse, dbt_manifest) -> None:
    only = _window_dependent_tasks(dbt_manifest)
    before = warehouse.fingerprint()
    # A row no incremental window reaches: only a rebuild from scratch removes it.
    warehouse.execute(
        "insert into analytics_product.fct_page_views select (jsonb_populate_record("
        "null::analytics_product.fct_page_views, to_jsonb(t) || jsonb_build_object("
        "'event_id', 'stale-e2e-row', 'viewed_at', '2001-01-01T00:00:00Z', 'viewed_date', '2001-01-01'))).* "
        "from analytics_product.fct_page_views t limit 1"
    )
    stale = "select count(*) from analytics_product.fct_page_views where event_id = 'stale-e2e-row'"
    assert warehouse.query(stale) == [(1,)]

    result = run_dag(DAILY, conf={"full_refresh": True}, only=only)

    assert result.state == "success", result.tasks
    assert warehouse.query(stale) == [(0,)]
    assert warehouse.fingerprint() == before  # a rebuild from scratch equals what the incremental runs kept


def test_hourly_snapshot_records_the_new_version_of_each_shipped_order(warehouse: Warehouse) -> None:
    from include.greenery_data import deliver

    assert run_dag(HOURLY).state == "success"
    conn = psycopg2.connect(warehouse.dsn)
    try:
        shipped = deliver(conn, n=3)
    finally:
        conn.close()
    assert shipped, "the generated data has no order left to ship"

    result = run_dag(HOURLY)

    assert result.state == "success", result.tasks
    for shipment in shipped:
        versions = warehouse.query(
            "select status, tracking_id, dbt_valid_to is null from analytics_snapshots.orders_snapshot"
            " where order_id = %s order by dbt_valid_from",
            shipment.order_id,
        )
        assert [(status, current) for status, _, current in versions] == [("preparing", False), ("shipped", True)]
        assert versions[-1][1] == shipment.tracking_id


def test_the_dev_simulator_adds_shop_activity_to_the_raw_tables(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENERY_DEV_SIMULATOR", "1")
    count = "select count(*) from raw.events"
    before = warehouse.query(count)[0][0]

    assert run_dag("greenery_dev_shop_simulator").state == "success"

    assert warehouse.query(count)[0][0] > before


def _node_tasks(result) -> dict[str, str]:
    return {task: state for task, state in result.tasks.items() if task.startswith(("models.", "snapshots."))}


def _recorded_nodes(warehouse: Warehouse, run_id: str) -> set[str]:
    rows = warehouse.query(
        "select r.unique_id from dbt_meta.node_results r join dbt_meta.invocations i using (invocation_id)"
        " where i.dag_id = %s and i.run_id = %s and r.resource_type <> 'operation'",  # on-run-end hooks
        DAILY,
        run_id,
    )
    return {unique_id.split(".")[2] for (unique_id,) in rows}


def test_rerun_failed_of_latest_rebuilds_only_the_failed_node_and_its_downstream_once_the_data_is_fixed(
    warehouse: Warehouse,
) -> None:
    [(order_id, status)] = warehouse.query("select order_id, status from raw.orders where status = 'delivered' limit 1")
    warehouse.execute("update raw.orders set status = 'lost' where order_id = %s", order_id)
    try:
        failed = run_dag(DAILY, conf={"select": "fct_orders+"})
    finally:
        warehouse.execute("update raw.orders set status = %s where order_id = %s", status, order_id)
    assert failed.state == "failed"
    assert failed.tasks["models.fct_orders.test"] == "failed"  # accepted_values on the status
    assert failed.tasks["models.user_order_facts.run"] == "upstream_failed"

    rerun = run_dag(DAILY, conf={"rerun_failed_of": "latest"})

    assert rerun.state == "success", rerun.tasks
    ran = {task for task, state in _node_tasks(rerun).items() if state == "success"}
    assert {"models.fct_orders.run", "models.fct_orders.test", "models.user_order_facts.run"} <= ran
    assert all("fct_orders" in task or "user_order_facts" in task for task in ran), sorted(ran)
    assert {state for task, state in _node_tasks(rerun).items() if task not in ran} == {"skipped"}
    recorded = _recorded_nodes(warehouse, rerun.run_id)
    assert {"fct_orders", "user_order_facts"} <= recorded
    assert all("fct_orders" in name or "user_order_facts" in name for name in recorded), sorted(recorded)
    assert warehouse.query("select count(*) from analytics_core.fct_orders where status = 'lost'") == [(0,)]


def test_only_changed_builds_nothing_when_nothing_changed_and_only_fresher_what_reads_the_table_that_grew(
    warehouse: Warehouse,
) -> None:
    warehouse.execute("create schema if not exists dbt_meta")
    warehouse.execute("drop table if exists dbt_meta.project_states")
    # A full run keeps its state at docs_generate (the models stand as the fixture built them).
    baseline = run_dag(DAILY, only={"validate_params", "source_freshness", "docs_generate"})
    assert baseline.tasks["docs_generate"] == "success", baseline.tasks
    assert warehouse.query("select run_id, mode from dbt_meta.project_states") == [(baseline.run_id, "all")]

    unchanged = run_dag(DAILY, conf={"only": "changed"})

    assert unchanged.state == "success", unchanged.tasks
    assert {state for task, state in unchanged.tasks.items() if task != "validate_params"} == {"skipped"}
    assert _recorded_nodes(warehouse, unchanged.run_id) == set()  # no dbt command at all

    warehouse.execute(
        "insert into raw.events select (jsonb_populate_record(null::raw.events, to_jsonb(e)"
        " || jsonb_build_object('event_id', 'fresher-e2e-event', 'created_at', now()))).* from raw.events e limit 1"
    )
    fresher = run_dag(DAILY, conf={"only": "fresher", "select": "path:models/staging"})

    assert fresher.state == "success", fresher.tasks
    ran = {task for task, state in _node_tasks(fresher).items() if state == "success"}
    assert {"models.stg_greenery__events.run", "models.greenery_events_source_test"} <= ran
    # Within staging only the events model was built; the other tasks that ran are tests that read events.
    assert {task for task in ran if task.endswith(".run")} == {"models.stg_greenery__events.run"}, sorted(ran)
    assert fresher.tasks["models.stg_greenery__orders.run"] == "skipped"
    assert fresher.tasks["models.greenery_orders_source_test"] == "skipped"
