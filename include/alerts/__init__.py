"""Slack alerts for the greenery DAGs: what broke, why, and where its log is.

``messages`` builds the texts (pure functions), ``slack`` delivers them, ``callbacks`` are what Airflow and
Cosmos call. Secrets are kept out of every text by ``include.redaction``.
"""
