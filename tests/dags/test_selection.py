"""The trigger form's select and exclude, resolved by dbt against the real project: what a selection picks, and
one sentence for each selection that cannot be used, before any dbt task runs."""

from __future__ import annotations

import pytest

from include.dbt_tasks.params import InvalidParams, RunWindow, with_selection
from include.dbt_tasks.selection import InvalidSelection, criteria, resolve, skip_unless_selected, task_nodes
from include.dbt_tasks.upstream_gate import RunGraph


def test_a_model_and_its_downstream_come_with_their_tests_and_nothing_upstream(dbt_manifest) -> None:
    chosen = resolve(["fct_orders+"], [], manifest_path=dbt_manifest)
    assert {uid for uid in chosen if uid.startswith("model.")} == {
        "model.greenery.fct_orders",
        "model.greenery.user_order_facts",
    }
    tests = [uid for uid in chosen if uid.startswith("test.")]
    assert any(".unique_fct_orders_order_id." in uid for uid in tests)
    assert not any(uid.startswith(("source.", "snapshot.")) for uid in chosen)


def test_exclude_takes_nodes_out_and_a_source_selection_reaches_the_source_itself(dbt_manifest) -> None:
    chosen = resolve(["source:greenery.orders+"], ["path:models/marts"], manifest_path=dbt_manifest)
    assert "source.greenery.greenery.orders" in chosen
    assert "model.greenery.stg_greenery__orders" in chosen
    assert "snapshot.greenery.orders_snapshot" in chosen
    assert "model.greenery.fct_orders" not in chosen


@pytest.mark.parametrize(
    ("select", "exclude", "message"),
    [
        (["fct_order"], [], "select 'fct_order' names no model, snapshot, test or source. Closest: fct_orders."),
        (["+stg_greenery__order+"], [], "Closest: stg_greenery__orders"),
        (["tagg:product"], [], "select 'tagg:product' uses 'tagg', which is no dbt selector method: did you mean tag?"),
        ([], ["fct_sesions"], "exclude 'fct_sesions' names no model, snapshot, test or source. Closest: fct_sessions"),
        (
            ["fct_orders"],
            ["fct_orders"],
            "The selection --select fct_orders --exclude fct_orders matches no model or snapshot: nothing would run.",
        ),
    ],
    ids=["misspelt-model", "misspelt-with-graph-operators", "unknown-method", "misspelt-exclude", "nothing-left"],
)
def test_a_selection_that_cannot_be_used_is_one_sentence(dbt_manifest, select, exclude, message) -> None:
    with pytest.raises(InvalidSelection) as rejected:
        resolve(select, exclude, manifest_path=dbt_manifest)
    assert message in str(rejected.value)


@pytest.mark.parametrize("text", ["fct_orders; rm -rf /", "$(touch x)", "a|b", "`id`", "a>b"])
def test_shell_syntax_is_refused_before_dbt_sees_it(text: str) -> None:
    with pytest.raises(InvalidSelection, match="is not dbt selection syntax"):
        criteria("select", text)


def test_no_selection_means_the_whole_project_without_running_dbt() -> None:
    window = RunWindow(None, None, False)  # type: ignore[arg-type]
    assert with_selection(window, {"select": None, "exclude": "  "}) is window
    with pytest.raises(InvalidParams, match="select must be text"):
        with_selection(window, {"select": ["fct_orders"]})


class _TaskInstance:
    def __init__(self, chosen):
        self.chosen = chosen

    def xcom_pull(self, task_ids):
        assert task_ids == "validate_params"
        return self.chosen


def test_a_node_task_skips_itself_only_when_the_selection_left_its_node_out(daily) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    orders, stg = daily.get_task("models.fct_orders.run"), daily.get_task("models.stg_greenery__orders.run")
    assert task_nodes(orders) == {"model.greenery.fct_orders"}
    chosen = {"selected": ["model.greenery.fct_orders"], "selection_text": "select fct_orders"}
    skip_unless_selected({"ti": _TaskInstance(chosen), "task": orders})
    with pytest.raises(AirflowSkipException, match=r"Not in this run's selection \(select fct_orders\)"):
        skip_unless_selected({"ti": _TaskInstance(chosen), "task": stg})
    # Without a selection every task runs.
    skip_unless_selected({"ti": _TaskInstance({"selected": None}), "task": stg})
    skip_unless_selected({"ti": _TaskInstance(None), "task": stg})


def test_every_node_task_of_the_daily_dag_can_be_left_out_and_still_runs_after_skipped_nodes(daily, hourly) -> None:
    # The rule each task is gated by: its trigger rule, or in the producer mode the one its trigger keeps.
    rules = RunGraph.of(daily).rules
    node_tasks = [t for t in daily.tasks if t.task_id.startswith(("models.", "snapshots."))]
    assert node_tasks
    for task in node_tasks:
        assert task._pre_execute_hook is skip_unless_selected, task.task_id
        assert rules[task.task_id] in ("none_failed", "all_done_min_one_success"), (task.task_id, rules[task.task_id])
    assert rules["docs_generate"] == "none_failed"
    # The hourly DAG has no form: its snapshots always run.
    assert all(task._pre_execute_hook is None for task in hourly.tasks)
