"""A one-line progress bar for loads, drawn only on a terminal (logs and pipes get the final counts only)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work done towards an estimated ``total`` and redraws at most ten times a second."""

    def __init__(self, total: int, unit: str = "rows", stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = max(total, 1)
        self.unit = unit
        self.done = 0
        self.label = ""
        self.started = time.monotonic()
        self._drawn_at = 0.0

    def describe(self, label: str) -> None:
        self.label = label
        self._draw(force=True)

    def update(self, amount: int) -> None:
        self.done += amount
        self._draw()

    def close(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        fraction = min(self.done / self.total, 1.0)
        width = 30
        filled = int(fraction * width)
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"\r{self.label:<12.12} [{bar}] {fraction:4.0%}  {_short(self.done)}/{_short(self.total)} {self.unit}"
            f"  {now - self.started:5.1f}s\x1b[K"  # erase what a longer previous line left
        )
        self.stream.write(line)
        self.stream.flush()


def _short(number: int) -> str:
    if number >= 1_000_000:
        return f"{number / 1_000_000:.1f}M"
    if number >= 10_000:
        return f"{number / 1_000:.0f}k"
    return str(number)
