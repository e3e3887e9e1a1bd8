"""Slack alerts for the greenery DAGs: what broke, why, and where its log is.

``messages`` builds the texts (pure functions), ``owners`` finds who owns the failed dbt nodes (from the
manifest), ``slack`` delivers the texts (to a dbt group's own connection when it has one), ``callbacks`` are
what Airflow and Cosmos call. Secrets are kept out of every text by ``include.redaction``.
"""
