"""The errors a user of the data tools can cause; each carries one message that says what went wrong and where."""

from __future__ import annotations


class GreeneryDataError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits non-zero."""


class LoadError(GreeneryDataError):
    """A load failed; the raw tables still hold what they held before."""


class WarehouseUnavailable(GreeneryDataError):
    """The warehouse database cannot be reached."""
