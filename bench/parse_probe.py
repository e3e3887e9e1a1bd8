"""Parse one DAG file the way Airflow 3's dag-processor does, and print the timings as one JSON line.

    python -m bench.parse_probe FILE [--warm N]

Run in a fresh process by ``bench.parse_time``. Airflow's own modules are imported before the clock starts
(the dag-processor's parent has them loaded before it forks a parser), so the cold figure is what the DAG file
itself costs: its imports (Cosmos, dbt), rendering the dbt graph and building the tasks, then serialising the
DAGs as the processor does. Warm parses repeat that in the same process, with every module already imported.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def parse_once(path: Path) -> dict:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    start = time.perf_counter()
    bag = DagBag(dag_folder=str(path), bundle_path=path.parent, load_op_links=False, safe_mode=False)
    parsed = time.perf_counter()
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    serialized = time.perf_counter()
    return {
        "parse_seconds": parsed - start,
        "serialize_seconds": serialized - parsed,
        "dags": {dag_id: len(dag.tasks) for dag_id, dag in bag.dags.items()},
        "import_errors": {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--warm", type=int, default=0, help="further parses in this process after the first")
    args = parser.parse_args()

    # What the dag-processor has loaded before it forks a parser.
    import airflow.dag_processing.processor
    import airflow.sdk  # noqa: F401

    cold = parse_once(args.file)
    warm = [parse_once(args.file) for _ in range(args.warm)]
    warm_serialize = [w["serialize_seconds"] for w in warm]
    warm_parse = [w["parse_seconds"] for w in warm]
    print(json.dumps({"cold": cold, "warm_parse_seconds": warm_parse, "warm_serialize_seconds": warm_serialize}))


if __name__ == "__main__":
    main()
