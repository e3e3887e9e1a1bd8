"""The local Airflow 3 of ``make up``: api-server, scheduler, dag-processor and triggerer in the background,
LocalExecutor on the warehouse cluster's ``airflow`` database, ``AIRFLOW_HOME`` under ``.local/airflow``. With
``GREENERY_EXECUTOR=celery`` (``make up EXECUTOR=celery``) CeleryExecutor instead, with its broker, an object store
for the dbt docs and two workers that stand for two machines (``include.local_platform.celery_platform``).

    python -m include.local_platform.local_airflow up     # idempotent; returns once the UI answers, DAGs parsed
    python -m include.local_platform.local_airflow down   # idempotent; leaves no process of ours running
    python -m include.local_platform.local_airflow status # each component's state and pid [--json]
    python -m include.local_platform.local_airflow stop worker-1   # one component: SIGTERM, SIGKILL if it lingers
    python -m include.local_platform.local_airflow start worker-1  # and back

The warehouse must be running (``python -m include.local_platform.warehouse start``).

The four components run under supervisord (the ``supervisor`` package): one that exits — the scheduler does
when its metadata database restarts — is started again, with a pause that grows by a second at each failed
start, and ``.local/airflow/logs/supervisord.log`` gets a line each time (``include.local_platform.supervision``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from include import settings
from include.local_platform import celery_platform, supervision
from include.local_platform.celery_platform import Program
from include.local_platform.pgcluster import ClusterError, port_is_free
from include.local_platform.supervision import AIRFLOW_HOME, MARKER, SupervisionError
from include.local_platform.warehouse import AIRFLOW_DB, cluster, warehouse_connection_json

STATE_FILE = AIRFLOW_HOME / "platform.json"
ENV_FILE = settings.LOCAL_DIR / "airflow.env"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


class PlatformError(RuntimeError):
    """A problem the user can fix; the message says how."""


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (comments and blank lines ignored, optional quotes removed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _user_settings() -> dict[str, str]:
    """The settings of this platform: ``.env`` beside the repository, overridden by the environment."""
    return {**read_dotenv(settings.REPO_ROOT / ".env"), **os.environ}


def _state() -> dict:
    """Secrets and the port of this instance: generated on first `up`, then kept."""
    if STATE_FILE.exists():
        return json.loads(STATE_FILE.read_text())
    from cryptography.fernet import Fernet

    state = {
        "port": None,
        "jwt_secret": secrets.token_urlsafe(64),
        "secret_key": secrets.token_urlsafe(32),
        "fernet_key": Fernet.generate_key().decode(),
    }
    _save_state(state)
    return state


def _save_state(state: dict) -> None:
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    STATE_FILE.touch(mode=0o600)
    STATE_FILE.write_text(json.dumps(state))


def airflow_env(port: int, state: dict | None = None) -> dict[str, str]:
    """The environment of every Airflow process of the local platform (``state``: the instance's, as ``up`` keeps
    it; its executor decides the rest)."""
    pg = cluster()
    if not pg.is_initialized() or not pg.is_running():
        raise PlatformError("The warehouse is not running: start it with `make warehouse`.")
    state = _state() if state is None else state
    user_settings = _user_settings()
    admin_password = settings.ADMIN_PASSWORD.value(user_settings)
    passwords_file = AIRFLOW_HOME / "passwords.json"
    passwords_file.write_text(json.dumps({"admin": admin_password}))
    passwords_file.chmod(0o600)
    base_url = f"http://127.0.0.1:{port}"
    inherited = dict(os.environ)
    # On here unless .env or the environment says 0.
    simulator = settings.DEV_SIMULATOR.value(user_settings) if settings.DEV_SIMULATOR.is_set(user_settings) else True
    env = {
        **inherited,
        MARKER: str(AIRFLOW_HOME),
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(settings.REPO_ROOT), inherited.get("PYTHONPATH")])),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.REPO_ROOT / "dags"),
        # The Astro layout's plugins/: the dbt docs behind the login (plugins/greenery_docs.py).
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The LocalExecutor, with dbt and Cosmos imported once in the scheduler: every task process forked from
        # it starts with them loaded instead of importing dbt itself (bench/RESULTS.md).
        # GREENERY_PRELOAD_DBT=0 runs Airflow's stock LocalExecutor instead (the benchmark compares the two).
        "AIRFLOW__CORE__EXECUTOR": (
            "include.local_platform.preloading_executor.PreloadingLocalExecutor"
            if settings.PRELOAD_DBT.value(user_settings)
            else "LocalExecutor"
        ),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": state["fernet_key"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.sqlalchemy_url(AIRFLOW_DB),
        "AIRFLOW__API__HOST": "127.0.0.1",
        # Off by default; should someone turn it on, it stays on this machine too. The log servers of the
        # scheduler and triggerer have no such setting: README.md, "Security notes".
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": state["secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": state["jwt_secret"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__COSMOS__CACHE_DIR": str(settings.LOCAL_DIR / "cosmos-cache"),
        # Cosmos would post usage events on every parse and run; keep everything on this machine.
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        # Asset URIs in Airflow 3's form (postgres://host:port/greenery/<schema>/<table>).
        "AIRFLOW__COSMOS__ENABLE_DATASET_AIRFLOW3_URI": "True",
        "DO_NOT_TRACK": "1",
        "AIRFLOW_CONN_GREENERY_WAREHOUSE": warehouse_connection_json(pg),
        # The daily DAG publishes the dbt docs there; plugins/greenery_docs.py serves them behind the login.
        "GREENERY_DBT_DOCS_DIR": str(settings.DBT_DOCS_DIR),
        # Cosmos' own docs plugin serves them to anyone: empty keeps it off (no route, no menu entry), even when
        # the shell that runs `make up` sets it.
        "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS": "",
        # The live shop simulator DAG exists only on this local platform, never in production.
        "GREENERY_DEV_SIMULATOR": "1" if simulator else "0",
        settings.EXECUTOR.name: state.get("executor", "local"),
    }
    if state.get("executor") == "celery":
        env.update(celery_platform.airflow_env(state["celery"], pg.sqlalchemy_url(AIRFLOW_DB)))
    env.update(slack_connections(user_settings))
    return env


def slack_connections(user_settings: dict[str, str]) -> dict[str, str]:
    """The Slack connections of ``.env`` and the environment: ``slack_alerts`` (or its ``SLACK_WEBHOOK_URL``) and
    each dbt group's ``slack_alerts_<group>`` (dbt/greenery/README.md, "Owners and alerts")."""
    connections = {
        key: value
        for key, value in user_settings.items()
        if key == "AIRFLOW_CONN_SLACK_ALERTS" or key.startswith("AIRFLOW_CONN_SLACK_ALERTS_")
        if value
    }
    webhook = settings.SLACK_WEBHOOK_URL.value(user_settings)
    if webhook and "AIRFLOW_CONN_SLACK_ALERTS" not in user_settings:
        connections["AIRFLOW_CONN_SLACK_ALERTS"] = json.dumps({"conn_type": "slackwebhook", "password": webhook})
    return connections


def _airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _choose_port(state: dict) -> int:
    preferred = settings.AIRFLOW_PORT.value()
    if _platform_running() and state.get("port"):
        return state["port"]
    if port_is_free(preferred):
        return preferred
    if state.get("port") and port_is_free(state["port"]):
        port = state["port"]
    else:
        from include.local_platform.pgcluster import free_port

        port = free_port()
    print(f"Port {preferred} is in use by another program, so the Airflow UI listens on {port} instead.")
    return port


def _wait_for_ui(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if not supervision.component_running("api-server"):
            break
        time.sleep(1)
    log = AIRFLOW_HOME / "logs" / "api-server.log"
    raise PlatformError(f"The Airflow UI did not come up on port {port}; see {log}.")


def _wait_for_dags(timeout: float) -> tuple[list[str], list[str]]:
    """Wait until the dag-processor has parsed every file in dags/; returns (dag ids, files with import errors).

    A file counts as parsed when it has DAGs or an import error in the metadata database, or when the processor
    started on it a while ago (a file may define no DAG, like the simulator's outside the local platform).
    """
    import psycopg2

    started = time.time()
    dag_files = sorted(p.name for p in (settings.REPO_ROOT / "dags").glob("*.py") if not p.name.startswith(("_", ".")))
    processor_logs = AIRFLOW_HOME / "logs" / "dag_processor"
    pg = cluster()
    deadline = time.monotonic() + timeout
    while True:
        conn = psycopg2.connect(pg.dsn(AIRFLOW_DB))
        try:
            with conn.cursor() as cur:
                cur.execute("select dag_id, relative_fileloc from dag where not is_stale")
                dags = cur.fetchall()
                cur.execute("select filename from import_error")
                errors = [row[0] for row in cur.fetchall()]
        finally:
            conn.close()
        seen = {Path(fileloc).name for _, fileloc in dags} | {Path(f).name for f in errors}
        for log in processor_logs.glob("*/dags-folder/*.py.log"):
            # Parsing from the manifest takes a second or two; ten seconds after it began the file is done.
            if started <= log.stat().st_ctime < time.time() - 10:
                seen.add(log.name.removesuffix(".log"))
        if set(dag_files) <= seen or time.monotonic() > deadline:
            return sorted(dag_id for dag_id, _ in dags), errors
        time.sleep(2)


def _platform_running() -> bool:
    return any(value in supervision.ALIVE_STATES for value in supervision.component_states().values())


def _programs(state: dict) -> list[Program]:
    """Every supervised process of this instance: Airflow's four components, then the executor's own."""
    python = sys.executable
    programs = [Program(component, [python, "-m", "airflow", component]) for component in COMPONENTS]
    if state.get("executor") == "celery":
        try:
            programs += celery_platform.programs(AIRFLOW_HOME, settings.LOCAL_DIR, state["celery"], _user_settings())
        except FileNotFoundError as error:
            raise PlatformError(str(error)) from None
    return programs


def up(timeout: float = 300) -> int:
    state = _state()
    executor = settings.EXECUTOR.value(_user_settings())
    running = _platform_running()
    if running and state.get("executor", "local") != executor:
        raise PlatformError(
            f"Airflow runs with the {state.get('executor', 'local')} executor here: stop it with `make down`, then "
            f"`make up EXECUTOR={executor}`."
        )
    port = _choose_port(state)
    state["port"] = port
    state["executor"] = executor
    if executor == "celery" and not running:
        state["celery"] = celery_platform.new_state(state)
    _save_state(state)
    env = airflow_env(port, state)
    programs = _programs(state)
    (AIRFLOW_HOME / "logs").mkdir(parents=True, exist_ok=True)
    if not all(supervision.component_running(program.name) for program in programs):
        print("Migrating Airflow's metadata database ...", flush=True)
        result = _airflow(env, "db", "migrate")
        if result.returncode != 0:
            raise PlatformError(f"`airflow db migrate` failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        for name, slots, description in _pools():
            _airflow(env, "pools", "set", name, str(slots), description)
    supervision.start_supervisord(env, programs)
    if executor == "celery":
        _start_celery_services(state["celery"])
    # The api-server first: task processes report to its execution API, so a scheduler that started together with
    # it could queue the first tasks before it listens, and they would fail at once.
    supervision.start_program("api-server")
    _wait_for_ui(port, timeout)
    for program in programs:
        supervision.start_program(program.name)
    dag_ids, import_errors = _wait_for_dags(timeout)
    _write_env_file(env)
    print(f"Airflow is up: http://127.0.0.1:{port}  (log in as admin / {env_password_hint()})")
    print(f"Supervised: a component that exits is started again ({AIRFLOW_HOME / 'logs' / 'supervisord.log'}).")
    if executor == "celery":
        celery = state["celery"]
        workers = [p.name for p in programs if p.name.startswith("worker-") and not p.name.endswith("-logs")]
        print(
            f"CeleryExecutor: {', '.join(f'{w} on {celery_platform.worker_address(w)}' for w in workers)}; broker "
            f"redis on 127.0.0.1:{celery['broker_port']}; dbt docs in {env[settings.DBT_DOCS_URL.name]} (object "
            f"store on {celery_platform.store_endpoint(celery)})."
        )
    print(f"DAGs: {', '.join(dag_ids) if dag_ids else '(none yet)'}")
    if import_errors:
        print(f"DAG files that failed to import: {', '.join(import_errors)} — see the UI's import errors.")
        return 1
    return 0


def _start_celery_services(celery: dict) -> None:
    """The broker and the object store, before any Airflow component; the docs bucket once the store answers."""
    logs = AIRFLOW_HOME / "logs"
    for name, port in (("broker", celery["broker_port"]), ("object-store", celery["store_port"])):
        supervision.start_program(name)
        try:
            celery_platform.wait_for_port(port, name, logs / f"{name}.log")
        except RuntimeError as error:
            raise PlatformError(str(error)) from None
    celery_platform.ensure_docs_bucket(celery)


def env_password_hint() -> str:
    if settings.ADMIN_PASSWORD.is_set(_user_settings()):
        return "the password in AIRFLOW_ADMIN_PASSWORD"
    return "admin"


def _pools() -> list[tuple[str, int, str]]:
    """Pools the DAGs need, declared next to the Cosmos configuration."""
    from include.dbt_tasks.cosmos_config import POOLS

    return list(POOLS)


def _write_env_file(env: dict[str, str]) -> None:
    keep = [k for k in env if k.startswith(("AIRFLOW", "GREENERY_", "PYTHONPATH")) and k != MARKER]
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.write_text(
        "# Written by `make up`: source it to run the airflow CLI against the local instance.\n"
        + "".join(f"export {key}={shlex.quote(env[key])}\n" for key in sorted(keep))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m include.local_platform.local_airflow", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status", "stop", "start"])
    parser.add_argument("component", nargs="?", help="stop, start: the component (as `status` names it)")
    parser.add_argument("--json", action="store_true", help="status: as JSON")
    args = parser.parse_args(argv)
    if args.command in ("stop", "start") and not args.component:
        parser.error(f"{args.command} needs the component to {args.command}, e.g. worker-1 (see `status`)")
    try:
        if args.command == "stop":
            supervision.stop_component(args.component)
            return 0
        if args.command == "start":
            supervision.start_component(args.component)
            return 0
        if args.command == "up":
            return up()
        if args.command == "status":
            components = supervision.status()
            if args.json:
                print(json.dumps(components))
            elif not components:
                print("Airflow is not running: start it with `make up`.")
            else:
                for name, info in components.items():
                    print(f"{name:14} {info['state']:9} pid {info['pid']}")
            return 0 if components and all(info["state"] == "RUNNING" for info in components.values()) else 1
        supervision.down()
        return 0
    except (PlatformError, SupervisionError, ClusterError, settings.ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
