"""A failure alert mentions the owners of the dbt nodes that failed and goes to their group's Slack connection
(``slack_alerts_<group>``) when it exists, else to ``slack_alerts``.

The failures are real dbt results of the fixture project (tests/alerts/dbt_fixture: group ``orders`` owned by a
Slack user group, group ``reports`` owned by a name only, ``broken_model`` with its own ``meta.owner``, sources
owned through ``meta.owner``), read with that run's own manifest in place of greenery's. They go through the
callbacks as Cosmos and Airflow call them (``notify_dbt_results`` after dbt, ``on_task_failure`` after the
task), into a real PostgreSQL outbox and over real HTTP to local servers that play one Slack webhook each. The
task context is built here: a real Cosmos operator, and the task instance Airflow's task runner would hand over,
built without a running API server. The last tests read greenery's own manifest (owners of the marts).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slack_stub import Reply, SlackWebhookStub

from include import settings
from include.alerts import callbacks, outbox, owners
from include.history.artifacts import DbtInvocation, read_invocations
from tests.conftest import FIXTURE_PROJECT, query_rows, warehouse_connection_json
from tests.dags.conftest import dbt_manifest  # noqa: F401  (shared session fixture)

ORDERS_TEAM = "<!subteam^S0SHOPORDRS>"  # group orders: orders_clean and its tests
BROKEN_MODEL_OWNER = "<@U0SHOPDEVEL>"  # broken_model's own meta.owner, in group reports
SOURCE_OWNER = "<@W0SHOPLOADR>"  # meta.owner of the source shop


@pytest.fixture
def warehouse(fresh_database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    _, env = fresh_database("owners")
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", warehouse_connection_json(env))
    return env


@pytest.fixture
def fixture_manifest(fixture_artifacts, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture run's manifest as the one the alerts read (the DAGs' is greenery's)."""
    path = fixture_artifacts.build_target / "manifest.json"
    monkeypatch.setattr(settings, "DBT_MANIFEST_PATH", path)
    return path


@pytest.fixture
def build(fixture_artifacts) -> DbtInvocation:
    [invocation] = read_invocations(fixture_artifacts.build_target)
    return invocation


@pytest.fixture
def freshness(fixture_artifacts) -> DbtInvocation:
    [invocation] = read_invocations(fixture_artifacts.freshness_target)
    return invocation


@pytest.fixture
def group_slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], SlackWebhookStub]]:
    """``group_slack("orders")``: a Slack webhook of the group's own, as connection ``slack_alerts_orders``."""
    stubs: dict[str, SlackWebhookStub] = {}

    def add(group: str) -> SlackWebhookStub:
        stubs[group] = SlackWebhookStub()
        monkeypatch.setenv(f"AIRFLOW_CONN_SLACK_ALERTS_{group.upper()}", stubs[group].connection_json())
        return stubs[group]

    yield add
    for stub in stubs.values():
        stub.close()


def _context(unique_id: str | None = None, exception: BaseException | None = None) -> dict:
    """What Airflow hands a failure callback: the task (a Cosmos operator carrying its dbt node, when it is a
    node's task), its task instance (a fresh run id per call: one alert per task try) and the exception."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from cosmos.config import ProfileConfig
    from cosmos.operators.local import DbtBuildLocalOperator

    task = DbtBuildLocalOperator(
        task_id="dbt_build",
        project_dir=str(FIXTURE_PROJECT),
        profile_config=ProfileConfig(
            profile_name="alerts_fixture", target_name="dev", profiles_yml_filepath=FIXTURE_PROJECT / "profiles.yml"
        ),
        extra_context={"dbt_node_config": {"unique_id": unique_id}} if unique_id else {},
    )
    ti = RuntimeTaskInstance.model_construct(
        task=task,
        dag_id="alerts_fixture",
        run_id=f"manual__{secrets.token_hex(4)}",
        task_id=task.task_id,
        try_number=1,
        max_tries=0,
        map_index=-1,
    )
    return {"ti": ti, "task": task, "exception": exception}


def _fail(invocations: list[DbtInvocation], unique_id: str | None = None, exception: BaseException | None = None):
    """A task's dbt command ended with ``invocations`` and the task failed: the callbacks run as Cosmos and
    Airflow call them."""
    context = _context(unique_id, exception or RuntimeError("dbt build failed"))
    callbacks.notify_dbt_results(context, invocations)
    callbacks.on_task_failure(context)


def _only(invocation: DbtInvocation, *failed_names: str) -> DbtInvocation:
    """The invocation with only ``failed_names`` among its failed nodes."""
    results = tuple(r for r in invocation.results if not r.is_failed or r.name in failed_names)
    return dataclasses.replace(invocation, results=results)


def _outbox(env: dict[str, str]) -> list[tuple]:
    return query_rows(env, "select conn_id, state from dbt_meta.alert_outbox order by created_at")


def test_a_failed_test_mentions_its_models_group_in_the_groups_own_channel(
    warehouse, fixture_manifest, build, slack, group_slack
) -> None:
    orders = group_slack("orders")

    _fail([_only(build, "not_null_orders_clean_order_total")])

    [text] = orders.delivered
    header, owners_line, *_ = text.splitlines()
    assert header == ":red_circle: *Failed:* `alerts_fixture` › `dbt_build`"
    assert owners_line == f"Owners: {ORDERS_TEAM}"
    assert "• test `not_null_orders_clean_order_total` on `orders_clean.order_total`" in text
    assert slack.delivered == []
    assert _outbox(warehouse) == [("slack_alerts_orders", "sent")]


def test_a_models_own_owner_replaces_its_groups_and_without_a_group_channel_it_goes_to_slack_alerts(
    warehouse, fixture_manifest, build, slack, group_slack
) -> None:
    orders = group_slack("orders")  # another group's channel: not this failure's

    _fail([_only(build, "broken_model")])

    [text] = slack.delivered
    assert text.splitlines()[1] == f"Owners: {BROKEN_MODEL_OWNER}"
    assert "Reports" not in text and "• model `broken_model`: *error*" in text
    assert orders.delivered == []
    assert _outbox(warehouse) == [("slack_alerts", "sent")]


def test_a_failure_across_groups_is_one_message_to_slack_alerts_mentioning_every_owner(
    warehouse, fixture_manifest, build, slack, group_slack
) -> None:
    orders, reports = group_slack("orders"), group_slack("reports")

    _fail([build])

    [text] = slack.delivered
    # In the order of the failed nodes below them.
    assert text.splitlines()[1] == f"Owners: {BROKEN_MODEL_OWNER}, {ORDERS_TEAM}"
    assert text.index("• model `broken_model`") < text.index("• test `not_null_orders_clean_order_total`")
    assert orders.delivered == [] and reports.delivered == []


def test_without_dbt_results_the_tasks_own_node_names_its_owner(
    warehouse, fixture_manifest, slack, group_slack
) -> None:
    reports = group_slack("reports")

    # dbt never ran (Cosmos could not build the profile): the task's node, users_clean, is what failed.
    _fail([], "model.alerts_fixture.users_clean", RuntimeError("could not render profiles.yml"))

    [text] = reports.delivered
    # The group's owner has a name only: plain text, escaped for Slack.
    assert text.splitlines()[1] == "Owners: Reports &amp; dashboards"
    assert "RuntimeError: could not render profiles.yml" in text
    assert slack.delivered == []


def test_stale_sources_mention_the_sources_owner(warehouse, fixture_manifest, freshness, slack) -> None:
    _fail([freshness])

    [text] = slack.delivered
    assert text.splitlines()[1] == f"Owners: {SOURCE_OWNER}"
    assert "• source `shop.users`: *error*" in text


def test_an_alert_slack_did_not_take_is_delivered_later_to_the_same_group_connection(
    warehouse, fixture_manifest, build, slack, group_slack
) -> None:
    orders = group_slack("orders")
    orders.reply_with(*[Reply(503, "service_unavailable")] * 4)  # the first try and its 3 retries

    _fail([_only(build, "not_null_orders_clean_order_total")])
    assert orders.delivered == [] and _outbox(warehouse) == [("slack_alerts_orders", "pending")]

    query_rows(
        warehouse, "update dbt_meta.alert_outbox set next_attempt_at = now()"
    )  # time passes: the next try is due
    assert outbox.deliver_pending() == {"sent": 1, "pending": 0, "failed": 0}

    [text] = orders.delivered
    assert text.splitlines()[1] == f"Owners: {ORDERS_TEAM}"
    assert slack.attempts == 0


def test_without_a_warehouse_the_direct_send_goes_to_the_group_connection(
    fixture_manifest, build, slack, group_slack, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = group_slack("orders")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GREENERY_WAREHOUSE",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "login": "x", "schema": "x"}),
    )

    _fail([_only(build, "not_null_orders_clean_order_total")])

    assert [text.splitlines()[1] for text in orders.delivered] == [f"Owners: {ORDERS_TEAM}"]
    assert slack.attempts == 0


def test_without_a_manifest_alerts_go_to_slack_alerts_without_owners_and_it_is_logged_once(
    warehouse, build, slack, group_slack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    group_slack("orders")
    missing = tmp_path / "target" / "airflow" / "manifest.json"
    monkeypatch.setattr(settings, "DBT_MANIFEST_PATH", missing)
    caplog.set_level(logging.INFO)

    _fail([_only(build, "not_null_orders_clean_order_total")])
    _fail([build])

    assert len(slack.delivered) == 2
    for text in slack.delivered:
        assert "Owners:" not in text and "• test `not_null_orders_clean_order_total`" in text
    said = [record.getMessage() for record in caplog.records if "Alerts name no owners" in record.getMessage()]
    assert len(said) == 1 and str(missing) in said[0] and "make manifest" in said[0]


def test_an_unreadable_manifest_costs_no_alert(warehouse, build, slack, tmp_path, monkeypatch) -> None:
    broken = tmp_path / "manifest.json"
    broken.write_text('{"nodes": {"model.alerts_fixture.orders_clean": ', encoding="utf-8")  # cut mid-write
    monkeypatch.setattr(settings, "DBT_MANIFEST_PATH", broken)

    _fail([_only(build, "not_null_orders_clean_order_total")])

    [text] = slack.delivered
    assert text.startswith(":red_circle: *Failed:*") and "Owners:" not in text


def test_an_outbox_from_before_routing_gets_its_connection_column_and_old_alerts_still_reach_slack_alerts(
    warehouse, slack
) -> None:
    # The table as the release before per-group routing created it, with an alert Slack had not taken yet.
    query_rows(
        warehouse,
        """
        create schema dbt_meta;
        create table dbt_meta.alert_outbox (
            alert_id text not null, kind text not null, message text not null, state text not null,
            attempts integer not null, created_at timestamptz not null, next_attempt_at timestamptz not null,
            sent_at timestamptz, last_error text, recorded_at timestamptz not null default now(),
            primary key (alert_id)
        );
        insert into dbt_meta.alert_outbox values
            ('late:greenery_daily:old', 'late', 'recorded before the upgrade', 'pending', 1, now(), now(),
             null, 'HTTP 503', now());
        """,
    )

    assert outbox.deliver_pending() == {"sent": 1, "pending": 0, "failed": 0}

    assert slack.delivered == ["recorded before the upgrade"]
    assert _outbox(warehouse) == [("slack_alerts", "sent")]


# -- greenery's own owners --------------------------------------------------------------------------------------


def _node_id(manifest: Path, prefix: str) -> str:
    """The one unique id starting with ``prefix`` (a generic test's id ends in a hash)."""
    [unique_id] = [u for u in json.loads(manifest.read_text(encoding="utf-8"))["nodes"] if u.startswith(prefix)]
    return unique_id


def test_every_greenery_mart_has_an_owner_slack_mentions_and_its_areas_group(dbt_manifest) -> None:  # noqa: F811
    from include.alerts.messages import mention

    manifest = json.loads(dbt_manifest.read_text(encoding="utf-8"))
    marts = {
        unique_id: node["original_file_path"].split("/")[2]
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["original_file_path"].startswith("models/marts/")
    }
    assert set(marts.values()) == {"core", "marketing", "product"}
    for unique_id, area in marts.items():
        owned = owners.ownership([unique_id], dbt_manifest)
        assert owned.group == area, unique_id
        assert owned.owners and all(mention(owner).startswith(("<@U", "<!subteam^S")) for owner in owned.owners)


def test_greenery_overrides_and_source_owners(dbt_manifest) -> None:  # noqa: F811
    # The incremental event models have their own maintainer; the product group still gets the alert.
    assert owners.ownership(["model.greenery.fct_page_views"], dbt_manifest) == owners.Ownership(
        ("U0GREENEVTS",), "product"
    )
    assert owners.ownership(["model.greenery.fct_orders"], dbt_manifest) == owners.Ownership(("S0GREENCORE",), "core")
    # A test on a mart is owned as the mart; a source test by the raw data's owner, and sources have no group.
    promos_test = _node_id(dbt_manifest, "test.greenery.source_not_negative_greenery_promos_discount.")
    assert owners.ownership([promos_test], dbt_manifest) == owners.Ownership(("U0GREENDATA",), None)
    key_test = _node_id(dbt_manifest, "test.greenery.unique_fct_page_views_event_id.")
    assert owners.ownership([key_test], dbt_manifest) == owners.Ownership(("U0GREENEVTS",), "product")
    # A staging model has no owner yet: the alert goes without one, to slack_alerts.
    assert owners.ownership(["model.greenery.stg_greenery__orders"], dbt_manifest) == owners.Ownership((), None)
