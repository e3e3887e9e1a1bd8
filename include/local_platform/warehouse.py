"""The local warehouse: a private PostgreSQL cluster under ``.local/postgres`` with the databases ``greenery``
(raw source tables and everything dbt builds) and ``airflow`` (Airflow's metadata).

    python -m include.local_platform.warehouse start    # idempotent; writes .local/warehouse.env
    python -m include.local_platform.warehouse stop     # idempotent
    python -m include.local_platform.warehouse status
    python -m include.local_platform.warehouse destroy  # stop and delete its files (make clean)

``source .local/warehouse.env && psql`` then reaches the warehouse database.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from include import settings
from include.local_platform.pgcluster import LOCATION_FILE, ClusterError, PgCluster, port_is_free

WAREHOUSE_DB = "greenery"
AIRFLOW_DB = "airflow"


def cluster() -> PgCluster:
    return PgCluster(settings.LOCAL_DIR / "postgres", port=settings.WAREHOUSE_PORT.value())


def warehouse_connection_json(pg: PgCluster) -> str:
    """The Airflow connection ``greenery_warehouse`` in Airflow's JSON form (for AIRFLOW_CONN_GREENERY_WAREHOUSE)."""
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": pg.port,
            "login": pg.user,
            "password": pg.password,
            "schema": WAREHOUSE_DB,
        }
    )


def write_env_file(pg: PgCluster) -> None:
    values = pg.libpq_env(WAREHOUSE_DB)
    values["AIRFLOW_CONN_GREENERY_WAREHOUSE"] = warehouse_connection_json(pg)
    lines = ["# Written by `make warehouse`: the local warehouse's connection. Holds a password: not for git."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    settings.WAREHOUSE_ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
    settings.WAREHOUSE_ENV_FILE.touch(mode=0o600)
    settings.WAREHOUSE_ENV_FILE.write_text("\n".join(lines) + "\n")


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export KEY=value`` lines of an env file this project writes (``.local/warehouse.env`` here,
    ``.local/airflow.env`` by ``make up``), as a dict."""
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values


def start() -> PgCluster:
    pg = cluster()
    was_running = pg.is_running()
    pg.start()
    for database in (WAREHOUSE_DB, AIRFLOW_DB):
        pg.create_database(database)
    write_env_file(pg)
    state = "already running" if was_running else "started"
    print(f"Warehouse {state}: postgresql://{pg.user}@127.0.0.1:{pg.port}/{WAREHOUSE_DB} (data in {pg.data_dir})")
    if pg.relocated:
        print(
            f"The PostgreSQL server's user cannot enter {pg.base_dir}, so the server's files are in {pg.storage_dir} "
            f"(recorded in {pg.base_dir / LOCATION_FILE}); `make clean` deletes them."
        )
    if pg.port != pg.preferred_port and not port_is_free(pg.preferred_port):
        print(
            f"Port {pg.preferred_port} is in use by another program, so the warehouse listens on {pg.port}; "
            f"the port is recorded in {settings.WAREHOUSE_ENV_FILE}."
        )
    env_file = settings.WAREHOUSE_ENV_FILE
    if env_file.is_relative_to(settings.REPO_ROOT):
        env_file = env_file.relative_to(settings.REPO_ROOT)
    print(f"Connect with: source {env_file} && psql")
    return pg


def stop() -> None:
    pg = cluster()
    if not pg.is_initialized():
        print("Warehouse: nothing to stop.")
        return
    print("Warehouse stopped." if pg.stop() else "Warehouse was not running.")


def destroy() -> None:
    """Stop the warehouse and delete its files, wherever they are (``make clean``)."""
    pg = cluster()
    if not pg.base_dir.exists():
        print("Warehouse: nothing to delete.")
        return
    where = f"{pg.base_dir} and {pg.storage_dir}" if pg.relocated else str(pg.base_dir)
    pg.destroy()
    print(f"Warehouse deleted: {where}.")


def status() -> int:
    pg = cluster()
    if pg.is_initialized() and pg.is_running():
        print(f"Warehouse running on 127.0.0.1:{pg.port} (pid {pg.server_pid()}).")
        return 0
    print("Warehouse not running: start it with `make warehouse`.")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m include.local_platform.warehouse", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["start", "stop", "status", "destroy"])
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            start()
        elif args.command == "stop":
            stop()
        elif args.command == "destroy":
            destroy()
        else:
            return status()
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
