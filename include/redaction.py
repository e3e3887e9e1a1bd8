"""Secrets out of every text the package shows: alerts, their log lines and the dbt run history.

A secret is a value this process was told of (``register_secret``: a connection's password, a webhook URL), the
value of a secret-holding environment variable (``include.settings.SECRET_VARIABLES``), credentials written into
a URL, a Slack webhook's path, or the value of a ``password=...`` pair.
"""

from __future__ import annotations

import logging
import re

from include import settings

_SECRETS: set[str] = set()
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@")
_SLACK_HOOK_PATH = re.compile(r"(?i)(hooks\.slack\.com/(?:services|workflows|triggers)/)[\w/-]+")
_PASSWORD_PAIR = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)")


def register_secret(value: str | None) -> None:
    """Never show ``value`` (a password, a webhook URL) in an alert, a log line of the alerts or a history row."""
    if value and len(value.strip()) >= 4:
        _SECRETS.add(value.strip())


def redact(text: str) -> str:
    """``text`` without the secrets this process knows of, credentials in URLs and ``password=...`` pairs."""
    secrets = _SECRETS | set(settings.secret_values())
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(r"\1:***@", text)
    text = _SLACK_HOOK_PATH.sub(r"\1***", text)
    return _PASSWORD_PAIR.sub(r"\1\2***", text)


class RedactingFilter(logging.Filter):
    """Redacts every record it passes (slack_sdk logs the request URL, which holds the webhook's secret)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
