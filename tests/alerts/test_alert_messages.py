"""What the alerts say, built from the real artifacts of dbt runs that fail, warn and find stale sources."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest

from include import redaction
from include.alerts import messages
from include.history.artifacts import DbtInvocation, read_invocations

FACTS = messages.TaskFacts(
    dag_id="greenery_daily",
    task_id="models.orders_clean_test",
    run_id="scheduled__2024-01-02T06:00:00+00:00",
    try_number=1,
    max_tries=0,
    logical_date=dt.datetime(2024, 1, 2, 6, tzinfo=dt.UTC),
)


@pytest.fixture(scope="module")
def build(fixture_artifacts) -> DbtInvocation:
    [invocation] = read_invocations(fixture_artifacts.build_target)
    return invocation


@pytest.fixture(scope="module")
def freshness(fixture_artifacts) -> DbtInvocation:
    [invocation] = read_invocations(fixture_artifacts.freshness_target)
    return invocation


@pytest.fixture(autouse=True)
def base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENERY_AIRFLOW_BASE_URL", "http://airflow.test:8080/")


def test_the_artifacts_say_what_dbt_said(build: DbtInvocation, freshness: DbtInvocation) -> None:
    statuses = {result.name: result.status for result in build.results}
    assert statuses == {
        "orders_clean": "success",
        "users_clean": "success",
        "broken_model": "error",
        "order_summary": "skipped",
        "not_null_orders_clean_order_total": "fail",
        "unique_orders_clean_order_id": "pass",
        "accepted_values_orders_clean_status__placed__shipped": "warn",
    }
    assert build.command == "build" and build.status == "error"
    assert {(result.name, result.status) for result in freshness.results} == {
        ("shop.orders", "warn"),
        ("shop.users", "error"),
    }


def test_a_failing_test_is_named_with_its_failing_rows_and_the_log_link(build: DbtInvocation) -> None:
    text = messages.failure_message(FACTS, [build])

    assert text.startswith(":red_circle: *Failed:* `greenery_daily` › `models.orders_clean_test`")
    assert "• test `not_null_orders_clean_order_total` on `orders_clean.order_total`: *3 rows failed the test*" in text
    assert "Got 3 results, configured to fail if != 0" in text
    assert "Logical date 2024-01-02 06:00 UTC · try 1 of 1" in text
    assert (
        "<http://airflow.test:8080/dags/greenery_daily/runs/scheduled__2024-01-02T06%3A00%3A00%2B00%3A00"
        "/tasks/models.orders_clean_test?try_number=1|Open the task log>"
    ) in text
    # The warning of the same command rides along instead of coming as a second message.
    assert "Also 1 warning:" in text
    assert "`accepted_values_orders_clean_status__placed__shipped` on `orders_clean.status`: 2 rows (warn)" in text


def test_the_try_says_when_no_retry_follows_although_tries_are_left() -> None:
    three_tries = dataclasses.replace(FACTS, max_tries=2)
    assert three_tries.try_text() == "try 1 of 3"
    assert dataclasses.replace(three_tries, not_retried=True).try_text() == "try 1, not retried"
    # The last try says so anyway.
    assert dataclasses.replace(three_tries, try_number=3, not_retried=True).try_text() == "try 3 of 3"


def test_owners_are_mentioned_under_the_header_as_slack_renders_them(build: DbtInvocation) -> None:
    owners = ["U0GREENCORE", "W0GREENDATA", "S0GREENPROD", "Reports & dashboards", "<!channel>", "u0greencore"]

    text = messages.failure_message(FACTS, [build], owners=owners)

    header, owners_line, *_ = text.splitlines()
    assert header == ":red_circle: *Failed:* `greenery_daily` › `models.orders_clean_test`"
    # A member id is an @-mention, a user-group id the group's mention, anything else plain text: markup
    # written into an owner (a channel-wide ping) is shown, not obeyed.
    assert owners_line == (
        "Owners: <@U0GREENCORE>, <@W0GREENDATA>, <!subteam^S0GREENPROD>, Reports &amp; dashboards, "
        "&lt;!channel&gt;, u0greencore"
    )
    assert "Owners:" not in messages.failure_message(FACTS, [build])


def test_many_owners_are_counted_and_a_long_message_keeps_them(build: DbtInvocation) -> None:
    owners = [f"U0OWNER{number:04d}" for number in range(messages.MAX_OWNERS_LISTED + 3)]
    huge = [dataclasses.replace(result, message="x" * 5000) for result in build.results if result.is_failed] * 20

    text = messages.failure_message(FACTS, [dataclasses.replace(build, results=tuple(huge))], owners=owners)

    assert len(text) <= messages.MAX_MESSAGE_CHARS
    assert text.splitlines()[1].endswith("<@U0OWNER0009>, and 3 more")


def test_a_failed_model_shows_the_first_lines_of_its_error_escaped_for_slack(build: DbtInvocation) -> None:
    text = messages.failure_message(FACTS, [build])

    assert "• model `broken_model`: *error*" in text
    # dbt's error holds <, > and & and non-ASCII: escaped, and the German is intact.
    assert 'invalid input syntax for type integer: "&lt;b&gt;Grüße &amp; 100%&lt;/b&gt;"' in text
    assert "<b>" not in text
    # The path into Cosmos' temporary project copy is gone by the time anyone reads the alert.
    assert "compiled code at" not in text
    assert text.count("```") % 2 == 0


def test_stale_sources_say_how_old_their_newest_row_is(freshness: DbtInvocation) -> None:
    text = messages.failure_message(FACTS, [freshness])

    assert "dbt source freshness reported 1 failed node:" in text
    assert "• source `shop.users`: *error*, newest row " in text
    assert "*2 d 0 h old* (warn after 1 hour, error after 1 day)" in text
    assert "• source `shop.orders`: *warn*" in text and "*3 h 0 min old*" in text


def test_warnings_of_a_successful_command_make_their_own_message(freshness: DbtInvocation) -> None:
    warned_only = dataclasses.replace(freshness, results=tuple(r for r in freshness.results if r.is_warned))

    text = messages.warning_message(FACTS, [warned_only])

    assert text.startswith(":warning: *Stale sources:* `greenery_daily` › `models.orders_clean_test`")
    assert "• source `shop.orders`: *warn*" in text and "shop.users" not in text
    assert "Open the task log>" in text


def test_without_dbt_results_the_exception_is_shown(build: DbtInvocation) -> None:
    text = messages.failure_message(FACTS, [], ValueError("start_date 2024-02-01 is after end_date <2024-01-01>"))

    assert "```ValueError: start_date 2024-02-01 is after end_date &lt;2024-01-01&gt;```" in text


def test_long_errors_are_cut_and_the_message_stays_whole(build: DbtInvocation) -> None:
    huge = "x" * 5000 + "\n" + "\n".join(f"line {number} ```" for number in range(200))
    broken = [dataclasses.replace(result, message=huge) for result in build.results if result.is_failed] * 20
    long_run = dataclasses.replace(build, results=tuple(broken))

    text = messages.failure_message(FACTS, [long_run])

    assert len(text) <= messages.MAX_MESSAGE_CHARS
    assert text.count("```") % 2 == 0
    # Every failed node is either listed or counted.
    more = re.search(r"… and (\d+) more", text)
    assert more and text.count("\n• ") + int(more.group(1)) == len(broken)
    assert text.endswith("|Open the task log>")


def test_no_alert_contains_a_webhook_url_or_a_password(build: DbtInvocation, monkeypatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cret-warehouse-pw")
    redaction.register_secret("https://hooks.slack.com/services/T1/B2/abcdef123456")
    leaky = (
        "could not connect: postgresql://greenery:s3cret-warehouse-pw@db:5432/greenery "
        "after posting to https://hooks.slack.com/services/T1/B2/abcdef123456 with password=hunter22"
    )
    broken = [dataclasses.replace(result, message=leaky) for result in build.results if result.is_failed]

    texts = [
        messages.failure_message(FACTS, [dataclasses.replace(build, results=tuple(broken))]),
        messages.failure_message(FACTS, [], RuntimeError(leaky)),
    ]

    for text in texts:
        assert "s3cret-warehouse-pw" not in text
        assert "abcdef123456" not in text
        assert "hunter22" not in text
        assert "postgresql://greenery:***@db:5432/greenery" in text


def test_recovery_run_failure_and_lateness_messages_link_to_the_run() -> None:
    recovered = messages.recovery_message("greenery_daily", "scheduled__2024-01-03T06:00:00+00:00", "scheduled__x")
    timed_out = messages.run_failure_message("greenery_daily", "manual__1", "timed_out")
    late = messages.deadline_message(
        "greenery_daily", "scheduled__1", "running", "2024-01-03T06:00:05+00:00", dt.datetime(2024, 1, 3, 8, 0)
    )

    assert recovered.startswith(":large_green_circle: *Recovered:* `greenery_daily` run")
    assert "the run before it, `scheduled__x`, had failed." in recovered
    assert "http://airflow.test:8080/dags/greenery_daily/runs/scheduled__2024-01-03T06%3A00%3A00%2B00%3A00|" in (
        recovered
    )
    assert "ran longer than its dagrun_timeout" in timed_out
    assert "has not succeeded by 2024-01-03 08:00 UTC (queued 2024-01-03 06:00 UTC, now running)" in late


def test_a_malformed_base_url_setting_still_gives_a_link(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("GREENERY_AIRFLOW_BASE_URL", "airflow.local:8080")
    text = messages.recovery_message("greenery_daily", "manual__1", "manual__0")
    assert "<http" in text and "/dags/greenery_daily/runs/manual__1|Open the run>" in text
    assert "GREENERY_AIRFLOW_BASE_URL='airflow.local:8080' must be an http(s) URL" in caplog.text
