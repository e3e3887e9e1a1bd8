"""The dbt run history: ``artifacts`` reads what a dbt command left in ``target/``, ``store`` keeps it in the
warehouse's ``dbt_meta`` schema. ``python -m include.history upload`` records a plain dbt run."""
