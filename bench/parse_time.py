"""Section 1: how long each DAG file takes to parse, against a trivial DAG file parsed the same way.

Airflow 3 parses a DAG file far more often than Airflow 2 did: the dag-processor re-parses every file in a fresh
process every ``min_file_process_interval``, and every task parses its DAG file again before it runs. What a
file costs cold (fresh process, Airflow already imported) is therefore paid once per task of every run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import profiles
from bench.measure import BenchError, clean_env, ratio, run_timed, summary
from bench.sizes import Size, cosmos_mode
from include import settings

TRIVIAL_DAG = Path(__file__).parent / "fixtures" / "trivial_dag.py"
DAILY_DAG_FILE = "greenery_daily.py"


def dag_files() -> list[Path]:
    return sorted(p for p in (settings.REPO_ROOT / "dags").glob("*.py") if not p.name.startswith(("_", ".")))


def _probe_env(work: Path, mode: str | None) -> dict[str, str]:
    env = clean_env(
        AIRFLOW_HOME=str(work / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__COSMOS__CACHE_DIR=str(work / "cosmos-cache"),
        AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",
        DO_NOT_TRACK="1",
        PYTHONPATH=str(settings.REPO_ROOT),
        GREENERY_LOCAL_DIR=str(work / "local"),
    )
    if mode:
        env["GREENERY_COSMOS_EXECUTION_MODE"] = mode
    return env


def _probe(path: Path, env: dict[str, str], warm: int) -> dict[str, Any]:
    result = run_timed(
        [sys.executable, "-m", "bench.parse_probe", str(path), "--warm", str(warm)],
        env=env,
        cwd=settings.REPO_ROOT,
        timeout=600,
    ).check(f"parsing {path.name}")
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as error:
        raise BenchError(f"parsing {path.name} printed no result:\n{result.stdout[-2000:]}") from error
    if data["cold"]["import_errors"]:
        raise BenchError(f"{path.name} does not import: {data['cold']['import_errors']}")
    data["process_seconds"] = result.seconds
    data["peak_rss_mb"] = result.peak_rss_mb
    return data


def measure_file(path: Path, size: Size, work: Path, mode: str | None) -> dict[str, Any]:
    """Cold parses in fresh processes (the first also does the warm parses), summarised."""
    env = _probe_env(work, mode)
    probes = [_probe(path, env, size.parse_warm_runs if i == 0 else 0) for i in range(size.parse_cold_runs)]
    first = probes[0]
    return {
        "file": str(path.relative_to(settings.REPO_ROOT)),
        "execution_mode": mode,
        "dags": first["cold"]["dags"],
        "cold_parse_seconds": summary(p["cold"]["parse_seconds"] for p in probes),
        "cold_serialize_seconds": summary(p["cold"]["serialize_seconds"] for p in probes),
        "warm_parse_seconds": summary(first["warm_parse_seconds"] or [first["cold"]["parse_seconds"]]),
        "process_seconds": summary(p["process_seconds"] for p in probes),
        "peak_rss_mb": round(max(p["peak_rss_mb"] for p in probes), 1),
    }


def run(size: Size, modes: tuple[str, ...]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="greenery-bench-parse-") as tmp:
        work = Path(tmp)
        trivial = measure_file(TRIVIAL_DAG, size, work, None)
        files = []
        # Only the Cosmos execution mode changes what a parse renders (the executor does not parse DAG files).
        modes = tuple(dict.fromkeys(cosmos_mode(mode) for mode in modes))
        for index, mode in enumerate(modes):
            # The execution mode changes only how the daily DAG renders its models; the other files are the same
            # in every mode, so they are measured once.
            for path in dag_files() if index == 0 else [p for p in dag_files() if p.name == DAILY_DAG_FILE]:
                entry = measure_file(path, size, work, mode)
                for kind in ("cold", "warm"):
                    entry[f"{kind}_ratio_to_trivial"] = ratio(
                        entry[f"{kind}_parse_seconds"]["median"], trivial[f"{kind}_parse_seconds"]["median"]
                    )
                entry["cold_total_ratio_to_trivial"] = ratio(
                    entry["cold_parse_seconds"]["median"] + entry["cold_serialize_seconds"]["median"],
                    trivial["cold_parse_seconds"]["median"] + trivial["cold_serialize_seconds"]["median"],
                )
                files.append(entry)
        profile = None
        if size.profile:
            try:
                daily = next(p for p in dag_files() if p.name == DAILY_DAG_FILE)
                profile = profiles.profile_parse(daily, _probe_env(work, modes[0]), work, runs=size.parse_cold_runs)
            except (BenchError, StopIteration) as error:
                profile = {"error": str(error) or f"no {DAILY_DAG_FILE}"}
    return {
        "profile": profile,
        "render_method": "dbt_manifest" if settings.DBT_MANIFEST_PATH.is_file() else "dbt_ls",
        "method": (
            "python -m bench.parse_probe: fresh process with Airflow imported, then DagBag(file) and "
            "DagSerialization.to_dict as the dag-processor does; warm = repeated in the same process"
        ),
        "trivial": trivial,
        "files": files,
    }
