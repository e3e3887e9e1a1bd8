"""Clocks, summaries and a memory sampler shared by every benchmark section."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

MB = 1024 * 1024


def log(message: str) -> None:
    """Progress on stderr, so a half-hour run shows where it is."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def summary(samples: Iterable[float]) -> dict[str, Any]:
    """Median, min, max and the raw samples (seconds), rounded for the JSON file."""
    values = [float(v) for v in samples]
    if not values:
        raise ValueError("no samples to summarise")
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
        "samples": [round(v, 4) for v in values],
    }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator > 0 else float("nan")


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    peak_rss_mb: float
    peak_tree_rss_mb: float

    def check(self, what: str) -> CommandResult:
        """Raise with the end of the command's output when it failed."""
        if self.returncode != 0:
            tail = (self.stdout[-3000:] + "\n" + self.stderr[-3000:]).strip()
            raise BenchError(f"{what} failed (exit {self.returncode}): {' '.join(self.argv)}\n{tail}")
        return self


class BenchError(RuntimeError):
    """A benchmark step could not run; the message says which and why."""


def run_timed(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path | str | None = None,
    timeout: float = 3600,
    stdin_path: Path | None = None,
) -> CommandResult:
    """Run a command, timing it from start to exit and sampling the peak RSS of its process tree."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, text=True
        )
        with MemorySampler(lambda: _tree(process.pid)) as memory:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
                raise BenchError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from None
        seconds = time.perf_counter() - start
    finally:
        if stdin_path:
            stdin.close()
    return CommandResult(
        argv=argv,
        returncode=process.returncode,
        seconds=seconds,
        stdout=stdout,
        stderr=stderr,
        peak_rss_mb=memory.peak_process_mb,
        peak_tree_rss_mb=memory.peak_total_mb,
    )


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class ProcessPeak:
    pid: int
    name: str
    rss_mb: float


@dataclass
class MemorySampler:
    """Samples the resident memory of a changing set of processes in a background thread.

    ``select`` returns the processes to measure at each sample. Records the peak of their summed RSS (what the
    machine must hold; shared pages of forked workers count once per process, so this is an upper bound) and
    the peak RSS of every single process, keyed by pid with its title (``classify`` turns a process into a
    label such as "task" or "scheduler"; processes it maps to None are summed but not kept).
    """

    select: Callable[[], list[psutil.Process]]
    interval: float = 0.2
    classify: Callable[[psutil.Process], str | None] = lambda p: p.name()
    peak_total_mb: float = 0.0
    peak_label_totals_mb: dict[str, float] = field(default_factory=dict)
    peaks: dict[int, ProcessPeak] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def peak_process_mb(self) -> float:
        return max((p.rss_mb for p in self.peaks.values()), default=0.0)

    def _loop(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                self._sample()
                return

    def _sample(self) -> None:
        total = 0.0
        by_label: dict[str, float] = {}
        for process in self.select():
            try:
                rss = process.memory_info().rss / MB
                label = self.classify(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += rss
            if label is None:
                continue
            by_label[label] = by_label.get(label, 0.0) + rss
            known = self.peaks.get(process.pid)
            if known is None or rss > known.rss_mb:
                self.peaks[process.pid] = ProcessPeak(process.pid, label, rss)
        self.samples += 1
        self.peak_total_mb = max(self.peak_total_mb, total)
        for label, value in by_label.items():
            self.peak_label_totals_mb[label] = max(self.peak_label_totals_mb.get(label, 0.0), value)


def wait_for(condition: Callable[[], Any], timeout: float, interval: float, failure: str) -> Any:
    """Call ``condition`` every ``interval`` seconds until it returns something true, and return that; raise
    with ``failure`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise BenchError(failure)
        time.sleep(interval)
    return result


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without anything that would point a tool at the developer's warehouse or Airflow."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PG", "GREENERY_", "DBT_")) and key != "PYTHONPATH"
    }
    env.update(extra)
    return env
