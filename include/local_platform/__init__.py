"""The laptop and CI platform behind ``make up`` and ``make test``: a private PostgreSQL cluster, the local
Airflow, the preloading executor. The DAGs never import this package (tests/dags/test_dag_integrity.py)."""
