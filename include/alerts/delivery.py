"""The task of ``greenery_alert_delivery``: deliver the recorded alerts that Slack did not take at once.

It starts in the triggerer and ends there (``start_from_trigger``): the delivery never takes a worker slot from
the dbt tasks, and no task process is killed mid-send, because the triggerer's budget is the trigger's own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, StartTriggerArgs, TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from include.alerts import outbox

TRIGGER_PATH = f"{__name__}.AlertDeliveryTrigger"


class AlertDeliveryTrigger(BaseTrigger):
    """Runs ``outbox.deliver_pending`` once, in a thread of the triggerer, and ends the task."""

    def __init__(self, budget_seconds: float = outbox.DELIVERY_BUDGET_SECONDS) -> None:
        super().__init__()
        self.budget_seconds = budget_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return TRIGGER_PATH, {"budget_seconds": self.budget_seconds}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            counts = await asyncio.to_thread(outbox.deliver_pending, self.budget_seconds)
        except Exception:
            self.log.exception("Could not deliver the recorded alerts (is the warehouse reachable?)")
            yield TaskFailedEvent()
            return
        self.log.info("Recorded alerts: %s", ", ".join(f"{n} {state}" for state, n in counts.items()))
        yield TaskSuccessEvent(xcoms={"return_value": counts})


class DeliverAlertsOperator(BaseOperator):
    """Delivers the alerts waiting in ``dbt_meta.alert_outbox``, without a worker."""

    start_from_trigger = True
    start_trigger_args = StartTriggerArgs(
        trigger_cls=TRIGGER_PATH,
        trigger_kwargs={},
        next_method="execute_complete",
        timeout=dt.timedelta(seconds=outbox.DELIVERY_BUDGET_SECONDS * 2),
    )

    def execute(self, context: Any) -> None:
        # Only reached where the task cannot start in the triggerer (e.g. `dag.test()`): deliver in the worker.
        return outbox.deliver_pending()

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        return event
