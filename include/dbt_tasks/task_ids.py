"""The ids of the tasks a dbt DAG has beside its node tasks, which the node tasks and their triggers look up."""

from __future__ import annotations

# greenery_daily's first task: checks the trigger form and works out the run's nodes (include.dbt_tasks.run_plan).
VALIDATE_TASK_ID = "validate_params"
# The producer execution mode's one dbt process per run (include.dbt_tasks.producer).
PRODUCER_TASK_ID = "dbt_build"
# The producer mode's last task: fails the run when any task of it failed (include.dbt_tasks.producer_mode).
FAIL_RUN_TASK_ID = "fail_run"
