"""Airflow's trigger rules, evaluated by a node task's trigger over the states of its run.

In the producer execution mode every node task has ``trigger_rule=always`` and waits in the triggerer from the
start of its run (``include.dbt_tasks.producer_mode``): the scheduler no longer holds it back until its upstream
tasks end, because dbt already orders the nodes. The trigger still needs the rule the task was rendered with when
it has no result of the producer to take (a retry, a clear, a node dbt did not run): it waits for its upstream
tasks and runs only when that rule lets it, as the scheduler would have.

A node task cannot end ``upstream_failed`` from the triggerer (Airflow ends a task there only as success, failed or
skipped), so one that its trigger skipped because of an upstream failure counts here as ``upstream_failed`` again
(``effective_states``): what is below it stays stopped, and its log can name the failure.

Kept free of dbt, Cosmos and Airflow imports: the triggerer imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUCCESS, FAILED, SKIPPED, UPSTREAM_FAILED, REMOVED = "success", "failed", "skipped", "upstream_failed", "removed"
FINISHED = frozenset({SUCCESS, FAILED, SKIPPED, UPSTREAM_FAILED, REMOVED})
FAILURES = frozenset({FAILED, UPSTREAM_FAILED})
# The kwarg of a node task's start trigger that keeps the trigger rule the task was rendered with.
RULE_KWARG = "rule"
# What a rule says about a task once its upstream states are known.
WAIT, RUN = "wait", "run"


def state_name(state: Any) -> str | None:
    """A task state as plain text (Airflow hands out enums, the API strings)."""
    if state is None:
        return None
    text = str(getattr(state, "value", state))
    return None if text in ("None", "none", "") else text


def rule_outcome(rule: str, upstream: list[str | None]) -> str:
    """What Airflow's trigger rule ``rule`` does with a task whose upstream tasks are in ``upstream``: ``WAIT``,
    ``RUN``, ``SKIPPED`` or ``UPSTREAM_FAILED`` (``airflow/ti_deps/deps/trigger_rule_dep.py``, for the rules the
    greenery DAGs use; any other waits for every upstream task and then runs)."""
    if not upstream or rule in ("always",):
        return RUN
    failed = sum(1 for state in upstream if state in FAILURES)
    success = sum(1 for state in upstream if state == SUCCESS)
    skipped = sum(1 for state in upstream if state == SKIPPED)
    done = all(state in FINISHED for state in upstream)
    if rule == "all_success":
        if failed:
            return UPSTREAM_FAILED
        if skipped:
            return SKIPPED
    elif rule in ("none_failed", "none_failed_min_one_success"):
        if failed:
            return UPSTREAM_FAILED
        if rule == "none_failed_min_one_success" and done and not success:
            return SKIPPED if skipped == len(upstream) else UPSTREAM_FAILED
    elif rule == "all_done_min_one_success":
        if skipped:
            return SKIPPED
        if done and not success:
            return UPSTREAM_FAILED
    return RUN if done else WAIT


def _kwargs(start_trigger_args: Any) -> Mapping[str, Any]:
    """A start trigger's kwargs; a serialised DAG keeps them in Airflow's encoding (``{"__var": {...}}``)."""
    kwargs = getattr(start_trigger_args, "trigger_kwargs", None) or {}
    encoded = {str(getattr(key, "value", key)): value for key, value in kwargs.items()}
    return encoded["__var"] if isinstance(encoded.get("__var"), Mapping) else kwargs


@dataclass(frozen=True)
class RunGraph:
    """A DAG's tasks as the trigger rules see them: each task's upstream task ids and its rule."""

    upstream: Mapping[str, tuple[str, ...]]
    rules: Mapping[str, str]

    @classmethod
    def of(cls, dag: Any) -> RunGraph:
        """The graph of an Airflow DAG (the DAG file's or its serialised form in the triggerer). A task that starts
        in the triggerer counts with the rule its start trigger keeps (``RULE_KWARG``)."""
        upstream, rules = {}, {}
        for task in dag.tasks:
            upstream[task.task_id] = tuple(sorted(task.upstream_task_ids))
            rule = str(getattr(task.trigger_rule, "value", task.trigger_rule))
            start = getattr(task, "start_trigger_args", None) if getattr(task, "start_from_trigger", False) else None
            rules[task.task_id] = str(_kwargs(start).get(RULE_KWARG) or rule)
        return cls(upstream, rules)

    def effective_states(self, states: Mapping[str, Any]) -> dict[str, str | None]:
        """``states`` with every skipped task whose own rule would have made it ``upstream_failed`` counted so, and
        every task that has not ended yet but that rule already stops too (a failed task stays failed until it is
        cleared): what is below a failure is skipped at once, not one level after the other."""
        found: dict[str, str | None] = {}

        def effective(task_id: str) -> str | None:
            if task_id not in found:
                found[task_id] = None  # a cycle cannot happen in a DAG; this only guards the recursion
                state = state_name(states.get(task_id))
                if state == SKIPPED or state not in FINISHED:
                    above = [effective(up) for up in self.upstream.get(task_id, ())]
                    if rule_outcome(self.rules.get(task_id, "all_success"), above) == UPSTREAM_FAILED:
                        state = UPSTREAM_FAILED
                found[task_id] = state
            return found[task_id]

        for task_id in self.upstream:
            effective(task_id)
        return found

    def outcome(self, task_id: str, effective: Mapping[str, str | None]) -> str:
        """What ``task_id``'s rule does with its upstream tasks' effective states now."""
        above = [effective.get(up) for up in self.upstream.get(task_id, ())]
        return rule_outcome(self.rules.get(task_id, "all_success"), above)

    def failed_above(self, task_id: str, effective: Mapping[str, str | None]) -> list[str]:
        """The failed tasks whose failure stops ``task_id``: up through the tasks stopped by them."""
        failed, seen, todo = set(), set(), list(self.upstream.get(task_id, ()))
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if effective.get(current) == FAILED:
                failed.add(current)
            elif effective.get(current) == UPSTREAM_FAILED:
                todo.extend(self.upstream.get(current, ()))
        return sorted(failed)
