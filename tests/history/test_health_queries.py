"""What the dbt health page reads from dbt_meta, on a real PostgreSQL holding 90 days of generated hourly and daily
history (tests/history/generated_history.py): the runs with what failed in them, one run's timeline and critical path,
and the trends with the planted regression, failing test and stale source."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest

from include.history import health
from include.history import trends as node_trends
from include.history.timeline import TimedNode, critical_path, dependencies
from tests.dags.conftest import parsed_manifest
from tests.history import generated_history as planted

DAILY, HOURLY = "greenery_daily", "greenery_hourly_snapshot"


@pytest.fixture(scope="module")
def connection(generated_history):
    connection = generated_history.connect()
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def waits_for() -> dict[str, frozenset[str]]:
    return dependencies(json.loads(parsed_manifest().read_text()))


@pytest.mark.parametrize("time_of_day", [dt.time(0, 5), dt.time(12, 10), dt.time(18, 40), dt.time(23, 59)])
def test_the_planted_healed_run_is_among_the_runs_the_page_lists_at_any_time_of_day(
    fresh_database, time_of_day: dt.time
) -> None:
    from tests.conftest import connect

    _, env = fresh_database("healed")
    connection = connect(env)
    try:
        now = dt.datetime.combine(dt.date(2026, 12, 5), time_of_day, tzinfo=dt.UTC)
        history = planted.generate(connection, json.loads(parsed_manifest().read_text()), days=2, now=now)
    finally:
        connection.close()
    assert history.healed_run in history.hourly_runs[-30:]


def test_the_generated_history_is_90_days_of_both_dags(generated_history) -> None:
    history = generated_history.history
    assert len(history.daily_runs) in (89, 90, 91)
    # Every hour of the 90 days, plus this hour's run once its half past has gone by.
    assert 24 * 90 <= len(history.hourly_runs) <= 24 * 90 + 1
    assert history.node_results > 25_000, history.node_results  # what the page's queries must stay fast on


def test_recent_runs_are_each_dags_newest_with_what_failed_in_them(connection, generated_history) -> None:
    history = generated_history.history
    runs = health.recent_runs(connection, per_dag=5)

    assert [(run["dag_id"], run["run_id"]) for run in runs if run["dag_id"] == DAILY] == [
        (DAILY, run_id) for run_id in reversed(history.daily_runs[-5:])
    ]
    assert [run["run_id"] for run in runs if run["dag_id"] == HOURLY] == list(reversed(history.hourly_runs[-5:]))
    assert [run["started_at"] for run in runs] == sorted((run["started_at"] for run in runs), reverse=True)

    newest = next(run for run in runs if run["run_id"] == history.newest_daily_run)
    assert newest["status"] == "failed"
    assert [command["command"] for command in newest["invocations"]] == ["source freshness", "build", "build"]
    [failed] = newest["failed"]
    assert (failed["name"], failed["status"], failed["failures"]) == (
        planted.FAILING_TEST,
        "fail",
        planted.FAILING_ROWS,
    )
    # dbt_build ran it; its node task shows the result, and the page links to that task's log (its latest try).
    assert (failed["task_id"], failed["try_number"]) == ("models.fct_orders.test", None)
    assert failed["message"] == f"Got {planted.FAILING_ROWS} results, configured to fail if != 0"
    assert newest["dbt_seconds"] > 10
    assert newest["built"] > 10  # what depends on fct_orders was skipped, the rest built


def test_a_node_that_failed_on_every_try_fails_its_run_and_one_that_passed_its_retry_does_not(
    connection, generated_history
) -> None:
    history = generated_history.history
    runs = {run["run_id"]: run for run in health.recent_runs(connection, per_dag=30)}

    broken = runs[history.broken_run]
    assert broken["status"] == "failed"
    assert [(n["name"], n["task_id"], n["try_number"]) for n in broken["failed"]] == [
        (planted.BROKEN_MODEL, f"models.{planted.BROKEN_MODEL}.run", 3)
    ]
    assert broken["failed"][0]["message"].startswith('relation "analytics_product.fct_page_views" does not exist')

    healed = runs[history.healed_run]
    assert healed["status"] == "success" and healed["failed"] == []
    assert [(i["command"], i["status"], i["task_id"], i["try_number"]) for i in healed["invocations"]] == [
        ("build", "error", "dbt_build", 1),
        ("snapshot", "success", f"snapshots.{planted.HEALED_SNAPSHOT}.snapshot", 2),
    ]


def test_a_stale_source_warns_its_run(connection, generated_history) -> None:
    history = generated_history.history
    runs = {run["run_id"]: run for run in health.recent_runs(connection, per_dag=30)}
    # The events table was stale (warn) every tenth day: the daily run ten days before the newest (when the
    # warning test warned too), and in error the day after.
    stale = runs[history.daily_runs[-11]]
    assert stale["status"] == "warned"
    assert [(n["name"], n["status"], n["task_id"]) for n in stale["warned"]] == [
        (planted.WARNING_TEST, "warn", "models.fct_orders.test"),
        (planted.STALE_SOURCE, "warn", "source_freshness"),
    ]
    outage = runs[history.daily_runs[-12]]
    assert outage["status"] == "failed"
    assert [(n["name"], n["status"], n["message"]) for n in outage["failed"]] == [
        (planted.STALE_SOURCE, "error", "newest row 7 h old")
    ]


def test_the_timeline_is_dbts_own_times_with_the_critical_path_through_dependencies(
    connection, generated_history, waits_for
) -> None:
    history = generated_history.history
    timeline = health.run_timeline(connection, DAILY, history.newest_daily_run, waits_for)

    nodes = timeline["nodes"]
    assert [n["started_at"] for n in nodes] == sorted(n["started_at"] for n in nodes)
    assert nodes[0]["resource_type"] == "source freshness" and nodes[0]["name"] == "source freshness (3 tables)"
    assert all(n["status"] != "skipped" for n in nodes)
    slow = next(n for n in nodes if n["name"] == planted.REGRESSION_MODEL)
    assert slow["execution_seconds"] > 1.5 * planted.REGRESSION_FACTOR * 0.8

    path = [n for n in nodes if n["critical"]]
    assert [n["name"] for n in sorted(path, key=lambda n: n["started_at"])] == timeline["critical_path"]
    assert len(path) >= 3
    # It ends with the node that finished last, and each node on it waited for the one before it.
    assert path[-1]["completed_at"] == max(n["completed_at"] for n in nodes)
    for before, after in itertools.pairwise(path):
        assert before["unique_id"] in waits_for[after["unique_id"]], (before["name"], after["name"])
        assert before["completed_at"] <= after["started_at"]
    # The slow model is where the newest run's time went.
    assert planted.REGRESSION_MODEL in timeline["critical_path"]
    assert timeline["dbt_seconds"] == pytest.approx(
        (timeline["ended_at"] - timeline["started_at"]).total_seconds(), abs=0.01
    )


def test_an_unknown_run_has_no_timeline_and_the_latest_run_is_the_newest(connection, generated_history) -> None:
    assert health.run_timeline(connection, DAILY, "manual__nothing", {}) is None
    assert health.latest_run(connection, DAILY) == generated_history.history.newest_daily_run
    assert health.latest_run(connection, "no_such_dag") is None


def test_model_trends_flag_the_regression_and_only_it(connection, generated_history) -> None:
    trends = node_trends.model_trends(connection, runs=30)

    flagged = [trend["name"] for trend in trends if trend["regression"]]
    assert flagged == [planted.REGRESSION_MODEL]
    assert trends[0]["name"] == planted.REGRESSION_MODEL  # regressions come first
    fct_orders = trends[0]
    assert len(fct_orders["builds"]) == 30
    assert fct_orders["median_seconds"] == pytest.approx(1.5, rel=0.15)
    assert fct_orders["ratio"] > 4
    # Hourly snapshots: their last 30 builds, all of the last day and a half.
    snapshot = next(trend for trend in trends if trend["name"] == "products_snapshot")
    assert len(snapshot["builds"]) == 30
    oldest = dt.datetime.fromisoformat(str(snapshot["builds"][0]["started_at"]))
    assert generated_history.history.now - oldest < dt.timedelta(days=2)


def test_test_trends_show_the_failing_test_first_with_its_failing_rows(connection) -> None:
    trends = node_trends.test_trends(connection, runs=30)

    failing = trends[0]
    assert (failing["name"], failing["last_status"], failing["last_failures"]) == (
        planted.FAILING_TEST,
        "fail",
        planted.FAILING_ROWS,
    )
    assert (failing["failed"], failing["passed"]) == (1, 29)
    warning = next(trend for trend in trends if trend["name"] == planted.WARNING_TEST)
    assert warning["warned"] == 6  # every fifth of 30 days
    assert [r["failures"] for r in warning["results"] if r["status"] == "warn"] == [
        2 + days_ago % 3 for days_ago in range(25, -1, -5)
    ]
    # Tests that never failed or warned come after those that did.
    assert all(t["failed"] or t["warned"] for t in trends[:2])


def test_freshness_trends_hold_each_check_against_its_thresholds(connection) -> None:
    trends = {trend["name"]: trend for trend in node_trends.freshness_trends(connection, runs=30)}

    assert set(trends) == set(planted.FRESHNESS)
    events = trends[planted.STALE_SOURCE]
    assert (events["warn_hours"], events["error_hours"]) == (2, 6)
    assert len(events["checks"]) == 30
    assert events["stale"] == 6  # a warn and an error every ten days
    assert [c["status"] for c in events["checks"] if c["age_hours"] > 6] == ["error"] * 3
    assert trends["greenery.users"]["stale"] == 0


def test_the_critical_path_follows_what_each_node_waited_for() -> None:
    start = dt.datetime(2026, 12, 1, 6, tzinfo=dt.UTC)

    def node(unique_id: str, begin: float, end: float) -> TimedNode:
        return TimedNode(unique_id, start + dt.timedelta(seconds=begin), start + dt.timedelta(seconds=end))

    nodes = [
        node("model.a", 0, 2),
        node("model.b", 0, 5),  # the slower of c's two parents: c waited for it
        node("test.on_b", 5.1, 5.3),
        node("model.c", 5.4, 7),
        node("model.d", 0.5, 9),  # ends last, but waited for nothing
        node("model.c", 7.5, 9.5),  # c's retry, after its first try
    ]
    waits = {"model.c": frozenset({"model.a", "model.b", "test.on_b"}), "test.on_b": frozenset({"model.b"})}

    assert critical_path(nodes, waits) == [1, 2, 3, 5]
    assert critical_path([], waits) == []
    assert critical_path(nodes[:5], {}) == [4]


def test_a_node_waits_for_its_parents_and_their_tests_but_not_a_test_on_itself() -> None:
    def node(*parents: str) -> dict:
        return {"depends_on": {"nodes": [*parents, "macro.greenery.to_money"]}}

    manifest = {
        "nodes": {
            "model.users": node("source.raw.users"),
            "model.orders": node("model.users"),
            "test.unique_users": node("model.users"),
            "test.orders_have_users": node("model.orders", "model.users"),  # a relationships test
        }
    }
    waits = dependencies(manifest)
    assert waits["model.orders"] == {"model.users", "test.unique_users"}
    assert waits["test.orders_have_users"] == {"model.orders", "model.users"}
    assert waits["model.users"] == {"source.raw.users"}


@pytest.mark.parametrize(
    ("period", "expected"), [("12 hours", 12), ("1 hour", 1), ("2 days", 48), ("30 minutes", 0.5), (None, None)]
)
def test_freshness_thresholds_in_hours(period, expected) -> None:
    assert node_trends.hours(period) == expected


def test_a_regression_needs_twice_the_median_and_a_second_more() -> None:
    assert node_trends.regression([1.0, 1.1, 0.9, 3.0]) == (1.0, True)
    assert node_trends.regression([1.0, 1.1, 0.9, 1.9]) == (1.0, False)  # not twice
    assert node_trends.regression([0.1, 0.1, 0.1, 0.5]) == (0.1, False)  # five times, but 0.4 s
    assert node_trends.regression([4.0]) == (None, False)
