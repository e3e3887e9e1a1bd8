"""Record the results of a plain dbt run in the warehouse's ``dbt_meta`` schema.

source .local/warehouse.env && python -m include.history upload [dbt/greenery/target]
"""

from __future__ import annotations

import argparse
import logging
import sys

from include import settings
from include.history.artifacts import read_invocations
from include.history.store import RECORDED_COMMANDS, upload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.history", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    upload_parser = commands.add_parser("upload", help="record the dbt artifacts of a target directory")
    upload_parser.add_argument(
        "target_dir", nargs="?", default=str(settings.DBT_PROJECT_DIR / "target"), help="default: %(default)s"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    invocations = read_invocations(args.target_dir)
    recorded = [invocation for invocation in invocations if invocation.command in RECORDED_COMMANDS]
    if not recorded:
        print(f"No dbt results to record in {args.target_dir} (run_results.json or sources.json).")
        return 1 if not invocations else 0
    return 0 if upload(recorded, dsn="") else 1


if __name__ == "__main__":
    sys.exit(main())
