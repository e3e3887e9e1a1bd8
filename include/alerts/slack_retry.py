"""How alerts retry Slack: imported only when an alert is sent, so that parsing a DAG file never loads slack_sdk
(its import was a large share of a cold parse of greenery_daily: bench/RESULTS.md)."""

from __future__ import annotations

import http.client
import random
import time
from urllib.error import URLError

from slack_sdk.http_retry import BackoffRetryIntervalCalculator, Jitter, RetryHandler

# The longest Retry-After (seconds) a rate-limited alert waits before its next try.
MAX_RETRY_AFTER_SECONDS = 30.0


class ProportionalJitter(Jitter):
    """Up to a quarter more than the computed pause, so that many workers do not retry in step."""

    def recalculate(self, duration: float) -> float:
        return duration * (1 + random.random() / 4)


class TransientSlackErrors(RetryHandler):
    """Retry what may pass: 429 (rate limited), 5xx, a timeout or a dropped connection. A 4xx does not heal."""

    def __init__(self, retries: int, backoff_seconds: float):
        super().__init__(
            max_retry_count=retries,
            interval_calculator=BackoffRetryIntervalCalculator(backoff_seconds, jitter=ProportionalJitter()),
        )

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:  # type: ignore[no-untyped-def]
        if response is not None:
            return response.status_code == 429 or response.status_code >= 500
        return isinstance(error, URLError | TimeoutError | ConnectionError | http.client.HTTPException)

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:  # type: ignore[no-untyped-def]
        retry_after = None
        if response is not None and response.status_code == 429:
            for name, values in response.headers.items():
                if name.lower() == "retry-after" and values:
                    try:
                        retry_after = float(values[0])
                    except ValueError:
                        retry_after = None
        if retry_after is None:
            super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)
            return
        state.next_attempt_requested = True
        time.sleep(min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECONDS))
        state.increment_current_attempt()
