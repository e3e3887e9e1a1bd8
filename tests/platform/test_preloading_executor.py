"""The executor ``make up`` runs: a LocalExecutor that imports dbt and Cosmos once, before it forks its workers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from include.local_platform.preloading_executor import preload

REPO_ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter, so that nothing is imported yet: start the executor as the scheduler does, then report
# what the scheduler process (and so every worker forked from it) has loaded, and how many workers run.
PROBE = """
import json, multiprocessing, sys
multiprocessing.set_start_method(sys.argv[1], force=True)
from include.local_platform.preloading_executor import PRELOADED_MODULES, PreloadingLocalExecutor
before = [name for name in PRELOADED_MODULES if name in sys.modules]
executor = PreloadingLocalExecutor(parallelism=2)
executor.start()
after = [name for name in PRELOADED_MODULES if name in sys.modules]
workers = [process.is_alive() for process in executor.workers.values()]
executor.end()
print(json.dumps({"before": before, "after": after, "workers": workers, "modules": list(PRELOADED_MODULES)}))
"""


def _probe(start_method: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, start_method],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_scheduler_imports_dbt_and_cosmos_before_it_forks_the_workers() -> None:
    report = _probe("fork")
    assert report["before"] == []
    assert report["after"] == report["modules"]
    assert report["workers"] == [True, True]


def test_with_spawn_there_is_nothing_to_inherit_so_nothing_is_preloaded() -> None:
    report = _probe("spawn")
    assert report["after"] == []


def test_a_module_that_cannot_be_imported_is_reported_and_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="include.local_platform.preloading_executor"):
        missing = preload(("json", "greenery_no_such_module"))
    assert missing == ["greenery_no_such_module"]
    assert "Not preloading greenery_no_such_module for the task processes" in caplog.text
