"""Command line of greenery's source system. Connects with the libpq variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE), which `make` takes from .local/warehouse.env.

    python -m include.greenery_data schema                       create the raw tables if missing
    python -m include.greenery_data load --scale 1 [--days 30] [--seed 42] [--end 2024-06-01T12:00:00Z]
    python -m include.greenery_data load --csv ../shared/greenery-course-data
    python -m include.greenery_data deliver [-n 3]               the course's delivery update
    python -m include.greenery_data simulate [--once] [--interval 300] [--price-changes]
    python -m include.greenery_data append --days 1 --end 2024-06-02T12:00:00Z [--scale 1] [--seed 0]
    python -m include.greenery_data export --scale 100 --out /tmp/greenery-csv
    python -m include.greenery_data profile [--database [LABEL=]DBNAME ...] [--out docs/profile.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
from psycopg2 import sql

from include.greenery_data.connection import START_HINT, connect
from include.greenery_data.delivery import deliver
from include.greenery_data.derived import drop_stale_incremental_models
from include.greenery_data.errors import GreeneryDataError
from include.greenery_data.generated import export_csv, load_generated
from include.greenery_data.generator import DEFAULT_DAYS, DEFAULT_SEED, ShopSpec, UsageError, parse_end
from include.greenery_data.loader import load_csv_dir
from include.greenery_data.profile_report import report
from include.greenery_data.profiling import profile
from include.greenery_data.progress import Progress
from include.greenery_data.schema import TABLES, apply_schema, qualified, raw_schema, tables_present
from include.greenery_data.simulator import append_activity, simulate_step

PROG = "python -m include.greenery_data"


# -- argument types: bad values are usage errors, reported before anything connects or writes ---------------------


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def whole_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, 1 or more, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text!r}")
    return value


def timestamp(text: str) -> str:
    try:
        parse_end(text)
    except UsageError:
        raise argparse.ArgumentTypeError(
            f"must be an ISO 8601 timestamp such as 2021-02-12T09:00:00Z, not {text!r}"
        ) from None
    return text


def labelled_database(text: str) -> tuple[str, str]:
    label, _, name = text.rpartition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"must be a database name, optionally LABEL=NAME, not {text!r}")
    return label or name, name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="greenery's source system: raw schema, generated or course data, delivery update, live shop.",
    )
    parser.add_argument("--dsn", default="", help="libpq connection string (default: the PG* environment variables)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("schema", help="create the raw schema and its seven tables if missing")

    load = commands.add_parser("load", help="replace the raw tables' contents (one transaction)")
    source = load.add_mutually_exclusive_group()
    source.add_argument("--scale", type=positive_number, help="generate data: 1 = the course's size (default 1)")
    source.add_argument("--csv", type=Path, metavar="DIR", help="load the seven course-format CSV files in DIR")
    _generation_options(load)
    load.add_argument(
        "--if-empty", action="store_true", help="do nothing when the raw tables already hold orders (for `make up`)"
    )

    deliver_cmd = commands.add_parser("deliver", help="ship preparing orders (the course's snapshot exercise)")
    deliver_cmd.add_argument("-n", type=positive_int, default=3, help="orders to ship when the course's are not there")

    simulate = commands.add_parser("simulate", help="keep the shop moving: new visits, orders and deliveries")
    simulate.add_argument("--once", action="store_true", help="one step, then exit")
    simulate.add_argument(
        "--interval", type=positive_number, default=300.0, metavar="SECONDS", help="seconds between steps (300)"
    )
    simulate.add_argument("--seed", type=int, help="make the steps reproducible")
    simulate.add_argument(
        "--price-changes",
        action="store_true",
        help="let prices change too (older orders then no longer match today's prices)",
    )

    append = commands.add_parser("append", help="add days of traffic on top of the loaded data (nothing replaced)")
    append.add_argument("--days", type=whole_days, default=1, help="days of traffic to add (default 1)")
    append.add_argument("--end", type=timestamp, help="end of the added days, ISO 8601 (default: now)")
    append.add_argument("--scale", type=positive_number, help="volume, as for load (default: from the users table)")
    append.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    export = commands.add_parser("export", help="write generated data as course-format CSV files")
    export.add_argument("--scale", type=positive_number, default=1.0, help="1 = the course's size (default 1)")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory for the seven CSV files")
    _generation_options(export)

    profile_cmd = commands.add_parser(
        "profile", help="profile the raw tables: keys, ranges, dependencies, time order (Markdown)"
    )
    profile_cmd.add_argument(
        "--database",
        action="append",
        type=labelled_database,
        metavar="[LABEL=]DBNAME",
        help="profile this database of the same server (repeat to compare data sets side by side; default: the"
        " connection's own database)",
    )
    profile_cmd.add_argument("--out", type=Path, metavar="FILE", help="write the Markdown here instead of stdout")
    return parser


def _generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--days", type=whole_days, default=DEFAULT_DAYS, help=f"days of history (default {DEFAULT_DAYS})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--end", type=timestamp, help="end of the history, ISO 8601 (default: now)")


# -- commands -----------------------------------------------------------------------------------------------------


def print_counts(counts: dict[str, int], title: str) -> None:
    print(title)
    for table, rows in counts.items():
        print(f"  {table:<12} {rows:>12,}")


def cmd_schema(args: argparse.Namespace) -> int:
    conn = connect(args.dsn)
    try:
        apply_schema(conn)
    finally:
        conn.close()
    print(f"Schema {raw_schema()} is ready: {', '.join(TABLES)}.")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    spec = None
    if args.csv is None:
        # Checked (and the end fixed) before connecting, so a bad argument changes nothing.
        spec = ShopSpec.build(scale=args.scale or 1.0, days=args.days, seed=args.seed, end=args.end)
    conn = connect(args.dsn)
    try:
        if args.if_empty:
            present = _orders_present(conn)
            if present:
                print(f"raw data present ({present:,} orders): not reloading")
                return 0
        started = time.monotonic()
        progress = Progress(1)
        if spec is None:
            counts = load_csv_dir(conn, args.csv, progress=progress)
            what = f"the CSV files in {args.csv}"
        else:
            counts = load_generated(
                conn, scale=spec.scale, days=spec.days, seed=spec.seed, end=spec.end_datetime, progress=progress
            )
            what = (
                f"generated data (scale {spec.scale:g}, {spec.days} days to "
                f"{spec.end_datetime:%Y-%m-%dT%H:%M:%SZ}, seed {spec.seed})"
            )
        print_counts(counts, f"Loaded {what} into schema {raw_schema()} in {time.monotonic() - started:.1f} s:")
        # What was built from the data just replaced must not outlive it (include/greenery_data/derived.py).
        stale = drop_stale_incremental_models(conn)
    finally:
        conn.close()
    if stale is not None:
        print(stale)
    return 0


def _orders_present(conn) -> int:
    if "orders" not in tables_present(conn):
        conn.rollback()
        return 0
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select count(*) from {}").format(qualified("orders")))
        count = cur.fetchone()[0]
    conn.rollback()
    return count


def cmd_deliver(args: argparse.Namespace) -> int:
    conn = connect(args.dsn)
    try:
        shipments = deliver(conn, n=args.n)
    finally:
        conn.close()
    if not shipments:
        print("No order is preparing: nothing to ship.")
        return 0
    course = shipments[0].course_update
    print(
        f"Shipped {len(shipments)} order{'s' if len(shipments) > 1 else ''}"
        + (" (the course's delivery update):" if course else " (the oldest preparing):")
    )
    for shipment in shipments:
        print(f"  {shipment.describe()}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    conn = connect(args.dsn)
    try:
        while True:
            now = datetime.now(UTC).replace(microsecond=0)
            counts = simulate_step(conn, now=now, seed=args.seed, price_changes=args.price_changes)
            happened = ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items() if value)
            print(f"{now:%Y-%m-%dT%H:%M:%SZ} {happened or 'nothing new'}", flush=True)
            if args.once:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        print("Simulator stopped.")
        return 0
    finally:
        conn.close()


def cmd_append(args: argparse.Namespace) -> int:
    conn = connect(args.dsn)
    started = time.monotonic()
    try:
        counts = append_activity(conn, days=args.days, end=args.end, seed=args.seed, scale=args.scale)
    finally:
        conn.close()
    print_counts(
        counts, f"Added {args.days} day{'s' if args.days > 1 else ''} of traffic in {time.monotonic() - started:.1f} s:"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    spec = ShopSpec.build(scale=args.scale, days=args.days, seed=args.seed, end=args.end)
    started = time.monotonic()
    counts = export_csv(
        args.out, scale=spec.scale, days=spec.days, seed=spec.seed, end=spec.end_datetime, progress=Progress(1)
    )
    print_counts(counts, f"Wrote {len(counts)} CSV files to {args.out} in {time.monotonic() - started:.1f} s:")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    profiles = {}
    for label, name in args.database or [("", "")]:
        conn = connect(f"{args.dsn} dbname={name}" if name else args.dsn)
        try:
            if not label:
                with conn.cursor() as cur:
                    cur.execute("select current_database()")
                    label = cur.fetchone()[0]
            missing = set(TABLES) - tables_present(conn)
            if missing:
                raise GreeneryDataError(
                    f"{label}: the raw tables {', '.join(sorted(missing))} are missing from schema {raw_schema()}:"
                    " load data first (`make load`)."
                )
            profiles[label] = profile(conn)
        finally:
            conn.close()
    text = report(profiles)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"Wrote the profile of {', '.join(profiles)} to {args.out}.")
    else:
        sys.stdout.write(text)
    return 0


COMMANDS = {
    "schema": cmd_schema,
    "load": cmd_load,
    "deliver": cmd_deliver,
    "simulate": cmd_simulate,
    "append": cmd_append,
    "export": cmd_export,
    "profile": cmd_profile,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        parser.error(str(error))
    except GreeneryDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except psycopg2.OperationalError as error:
        # The server went away in the middle of a command.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "connection lost"
        print(f"error: lost the warehouse connection ({reason}): {START_HINT}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted: nothing was changed.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
