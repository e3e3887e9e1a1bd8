"""`make up` hands the Slack connections of `.env` to Airflow: `slack_alerts` and each dbt group's own."""

from __future__ import annotations

import json
from pathlib import Path

from include.local_platform.local_airflow import read_dotenv, slack_connections


def test_the_webhook_and_every_group_connection_of_dotenv_reach_airflow(tmp_path: Path) -> None:
    core = json.dumps({"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/T0/B1/core"})
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/all\n"
        f"AIRFLOW_CONN_SLACK_ALERTS_CORE='{core}'\n"
        "AIRFLOW_CONN_GREENERY_WAREHOUSE=postgres://elsewhere\n"
    )

    connections = slack_connections(read_dotenv(dotenv))

    assert connections == {
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(
            {"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/T0/B0/all"}
        ),
        "AIRFLOW_CONN_SLACK_ALERTS_CORE": core,
    }


def test_a_full_slack_alerts_connection_wins_over_the_webhook_url() -> None:
    full = json.dumps({"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/T0/B2/x"})

    user_settings = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/all"}
    user_settings["AIRFLOW_CONN_SLACK_ALERTS"] = full

    connections = slack_connections(user_settings)

    assert connections == {"AIRFLOW_CONN_SLACK_ALERTS": full}
