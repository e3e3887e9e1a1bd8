"""Section 4: the loader against ``psql \\copy`` of the same rows.

The generator exports one data set as CSV files; then, alternating, three ways put those rows into the raw
tables, each replacing the previous contents in one transaction:

- ``load --scale N``: what ``make load`` runs (generate the rows and COPY them while generating),
- ``load --csv DIR``: the loader reading the exported files (what ``make load CSV=DIR`` runs),
- ``psql``: ``begin; truncate; \\copy`` of each file, parents first, foreign keys in place; ``commit``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

from bench.measure import ratio, run_timed, summary
from bench.sizes import Size
from bench.stack import Stack
from include import settings
from include.greenery_data.schema import TABLES


def _psql_script(directory: Path, schema: str) -> str:
    lines = ["\\set ON_ERROR_STOP on", "begin;", f"truncate {', '.join(f'{schema}.{t}' for t in TABLES)};"]
    for table in TABLES:
        path = directory / f"{table}.csv"
        with path.open(newline="") as handle:
            header = next(csv.reader(handle))
        lines.append(f"\\copy {schema}.{table} ({', '.join(header)}) from '{path}' with (format csv, header true)")
    lines.append("commit;")
    return "\n".join(lines) + "\n"


def _rows(directory: Path) -> int:
    total = 0
    for table in TABLES:
        with (directory / f"{table}.csv").open("rb") as handle:
            total += sum(1 for _ in handle) - 1
    return total


def run(stack: Stack, size: Size, load_args: list[str]) -> dict[str, Any]:
    export_dir = stack.base / "export"
    shutil.rmtree(export_dir, ignore_errors=True)
    export = stack.greenery_data("export", "--scale", str(size.load_scale), "--out", str(export_dir), *load_args)
    export.check("exporting generated data as CSV")
    rows = _rows(export_dir)
    # The raw tables must exist for psql; the first generated load creates them.
    stack.greenery_data("load", "--scale", str(size.load_scale), *load_args).check("loading generated data")
    script = stack.base / "psql-copy.sql"
    script.write_text(_psql_script(export_dir, settings.RAW_SCHEMA))
    psql = shutil.which("psql") or str(Path("/usr/lib/postgresql/15/bin/psql"))

    samples: dict[str, list[float]] = {"loader_generate": [], "loader_csv": [], "psql_copy": []}
    peaks: dict[str, float] = {name: 0.0 for name in samples}
    for i in range(size.load_repeats):
        steps = [
            ("loader_generate", lambda: stack.greenery_data("load", "--scale", str(size.load_scale), *load_args)),
            ("loader_csv", lambda: stack.greenery_data("load", "--csv", str(export_dir))),
            ("psql_copy", lambda: run_timed([psql, "-q", "-X", "-f", str(script)], env=stack.warehouse_env)),
        ]
        # Rotate the order each round, so no method always runs on the warmest cache.
        steps = steps[i % 3 :] + steps[: i % 3]
        for name, step in steps:
            result = step().check(name.replace("_", " "))
            samples[name].append(result.seconds)
            peaks[name] = max(peaks[name], result.peak_tree_rss_mb)
    medians = {name: summary(values) for name, values in samples.items()}
    psql_median = medians["psql_copy"]["median"]
    return {
        "scale": size.load_scale,
        "rows": rows,
        "csv_megabytes": round(sum(p.stat().st_size for p in export_dir.glob("*.csv")) / 1024**2, 1),
        "seconds": medians,
        "rows_per_second": {name: round(rows / m["median"]) for name, m in medians.items()},
        "ratio_to_psql": {
            name: ratio(medians[name]["median"], psql_median) for name in ("loader_generate", "loader_csv")
        },
        "peak_rss_mb": {name: round(value, 1) for name, value in peaks.items()},
    }
