"""What the DAG files assemble: the Cosmos configuration, the dbt steps, the trigger form, docs publishing."""
