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
start (``STARTRETRIES`` of them, a few minutes in all), and ``.local/airflow/logs/supervisord.log`` gets a line
each time. A kept supervisor rather than a loop of our own: it already handles back-off, process groups, log
files and a clean shutdown, and ``supervisorctl -c .local/airflow/supervisord.conf status`` shows the state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

from include import settings
from include.local_platform import celery_platform
from include.local_platform.celery_platform import Program
from include.local_platform.pgcluster import ClusterError, port_is_free
from include.local_platform.warehouse import AIRFLOW_DB, cluster, warehouse_connection_json

AIRFLOW_HOME = settings.LOCAL_DIR / "airflow"
STATE_FILE = AIRFLOW_HOME / "platform.json"
ENV_FILE = settings.LOCAL_DIR / "airflow.env"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Every process we start carries this variable, so `down` can find and stop all of them, task processes included.
MARKER = "GREENERY_LOCAL_AIRFLOW"
SUPERVISOR_CONF = AIRFLOW_HOME / "supervisord.conf"
SUPERVISOR_PID = AIRFLOW_HOME / "supervisord.pid"
# A component counts as started once it has run this long; one that exits sooner is started again after 1, 2,
# 3, ... seconds, STARTRETRIES times (about 5 minutes of waiting), then given up until the next `make up`.
STARTSECS = 10
STARTRETRIES = 24
# Stopping: SIGTERM to the component's process group, SIGKILL after this many seconds.
STOPWAITSECS = 30
_ALIVE_STATES = {"STARTING", "RUNNING", "BACKOFF"}


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


def _session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[3])  # state, ppid, pgrp, session


def _supervisord_pid() -> int | None:
    """The pid of our supervisord, if it runs (it leads a session of its own)."""
    try:
        pid = int(SUPERVISOR_PID.read_text())
    except (OSError, ValueError):
        return None
    return pid if _session_of(pid) == pid else None


def _leading_sessions() -> set[int]:
    """Sessions led by a process whose pid file is in AIRFLOW_HOME: supervisord's, and those of components
    that a `make up` from before supervision started one by one."""
    sessions = set()
    for pid_file in AIRFLOW_HOME.glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if _session_of(pid) == pid:
            sessions.add(pid)
    return sessions


def _socket_path() -> Path:
    """supervisord's control socket, private to us; in the temporary directory when the clone's path is too long
    for a Unix socket (108 bytes)."""
    path = AIRFLOW_HOME / "supervisor.sock"
    if len(str(path).encode()) < 100:
        return path
    import hashlib
    import tempfile

    return Path(tempfile.gettempdir()) / f"greenery-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}.sock"


def _supervisor() -> xmlrpc.client.ServerProxy:
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(serverurl=f"unix://{_socket_path()}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def _component_states() -> dict[str, str]:
    """Each component's supervisor state (RUNNING, BACKOFF, FATAL, ...); empty when supervisord is not running."""
    return {name: str(info["state"]) for name, info in status().items()}


def _component_running(component: str) -> bool:
    return _component_states().get(component) in _ALIVE_STATES


def _our_processes(sessions: set[int] | None = None) -> list[int]:
    """Pids of every live process started by this platform (``sessions``: the session ids of our supervisord,
    by default the one that runs now).

    supervisord leads a session of its own, so the components and their children share its session id;
    processes that start a new session of their own still carry the marker variable. (The api-server rewrites
    its process title, which hides its environment, hence both checks.)
    """
    needle = f"{MARKER}={AIRFLOW_HOME}".encode()
    if sessions is None:
        sessions = _leading_sessions()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        session = _session_of(pid)
        if session is None:
            continue
        if session in sessions:
            pids.append(pid)
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(pid)
    return pids


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
        if not _component_running("api-server"):
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
    return any(value in _ALIVE_STATES for value in _component_states().values())


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
    if not all(_component_running(program.name) for program in programs):
        print("Migrating Airflow's metadata database ...", flush=True)
        result = _airflow(env, "db", "migrate")
        if result.returncode != 0:
            raise PlatformError(f"`airflow db migrate` failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        for name, slots, description in _pools():
            _airflow(env, "pools", "set", name, str(slots), description)
    _start_supervisord(env, programs)
    if executor == "celery":
        _start_celery_services(state["celery"])
    # The api-server first: task processes report to its execution API, so a scheduler that started together with
    # it could queue the first tasks before it listens, and they would fail at once.
    _start_component("api-server")
    _wait_for_ui(port, timeout)
    for program in programs:
        _start_component(program.name)
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
        _start_component(name)
        try:
            celery_platform.wait_for_port(port, name, logs / f"{name}.log")
        except RuntimeError as error:
            raise PlatformError(str(error)) from None
    celery_platform.ensure_docs_bucket(celery)


def _supervisor_conf(programs: list[Program]) -> str:
    """supervisord's configuration: every program of ``programs``, none started by supervisord itself (``up``
    starts the api-server first and the others once it answers), each restarted whenever it exits."""

    def value(text: object) -> str:
        return str(text).replace("%", "%%")  # supervisord expands %(name)s in values

    def environment(variables: dict[str, str]) -> list[str]:
        if not variables:
            return []
        pairs = ",".join(f'{key}="{value(val)}"' for key, val in variables.items())
        return [f"environment={pairs}"]

    logs = AIRFLOW_HOME / "logs"
    sections = [
        "[unix_http_server]",
        f"file={value(_socket_path())}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={value(logs / 'supervisord.log')}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={value(SUPERVISOR_PID)}",
        f"childlogdir={value(logs)}",
        "nodaemon=true",
        "silent=true",
        # Components run as whoever runs `make up` (saying so keeps supervisord from warning when that is root).
        f"user={value(pwd.getpwuid(os.geteuid()).pw_name)}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{value(_socket_path())}",
    ]
    for program in programs:
        sections += [
            "",
            f"[program:{program.name}]",
            f"command={value(shlex.join(program.command))}",
            *environment(program.environment),
            f"directory={value(settings.REPO_ROOT)}",
            "autostart=false",
            "autorestart=true",
            f"startsecs={STARTSECS}",
            f"startretries={STARTRETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={program.stopwaitsecs or STOPWAITSECS}",
            # The component and every process it started (task processes, gunicorn workers) stop together.
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={value(logs / f'{program.name}.log')}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
        ]
    return "\n".join(sections) + "\n"


def _start_supervisord(env: dict[str, str], programs: list[Program], timeout: float = 30) -> None:
    """Start supervisord with the platform's environment (every component inherits it), unless it runs."""
    if _supervisord_pid() is not None:
        return
    SUPERVISOR_CONF.write_text(_supervisor_conf(programs))
    SUPERVISOR_CONF.chmod(0o600)
    _socket_path().unlink(missing_ok=True)
    with open(AIRFLOW_HOME / "logs" / "supervisord.out", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "--configuration", str(SUPERVISOR_CONF)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=settings.REPO_ROOT,
        )
    deadline = time.monotonic() + timeout
    while not _component_states():
        if time.monotonic() > deadline:
            raise PlatformError(f"supervisord did not start; see {AIRFLOW_HOME / 'logs' / 'supervisord.out'}.")
        time.sleep(0.3)


def _start_component(component: str) -> None:
    """Start a component (again, after it was given up): supervisord then keeps it running."""
    if _component_running(component):
        return
    try:
        _supervisor().supervisor.startProcess(component, False)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" not in fault.faultString:
            raise PlatformError(f"supervisord could not start the {component}: {fault.faultString}") from None


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


def down(timeout: float = 30) -> None:
    supervised = bool(_component_states())
    # Kept for after supervisord has gone: whatever outlived it is still in its session.
    sessions = _leading_sessions()
    if supervised:
        # supervisord stops every component (SIGTERM to its process group, SIGKILL after STOPWAITSECS), then itself.
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            _supervisor().supervisor.shutdown()
        deadline = time.monotonic() + STOPWAITSECS + timeout
        while _supervisord_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.5)
    pids = _our_processes(sessions)
    if not pids and not supervised:
        print("Airflow: nothing to stop.")
        return
    for pid in pids:  # task processes that started a session of their own, or whatever outlived supervisord
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _our_processes(sessions) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _our_processes(sessions):  # whatever ignored SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print("Airflow stopped.")


def stop_component(name: str) -> None:
    """Stop one component and leave it stopped (supervisord sends SIGTERM to its process group, SIGKILL after its
    stop wait). A worker is a machine going away: whatever of it outlived that (the task processes, which lead
    process groups of their own) is killed too, and its tasks are retried on the workers that remain."""
    states = _component_states()
    if name not in states:
        raise PlatformError(f"No component named {name!r}; this platform runs: {', '.join(states) or 'nothing'}.")
    try:
        _supervisor().supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as fault:
        if "NOT_RUNNING" not in fault.faultString:
            raise PlatformError(f"supervisord could not stop the {name}: {fault.faultString}") from None
    if name.startswith("worker-") and not name.endswith("-logs"):
        # Its log server (worker-N-logs) shares the marker and stays, so the logs of the killed tries can be read.
        others = {info["pid"] for other, info in status().items() if other != name}
        needle = f"{settings.WORKER_HOST.name}={celery_platform.worker_address(name)}".encode()
        for pid in set(_our_processes()) - others:
            with contextlib.suppress(OSError):
                if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    os.kill(pid, signal.SIGKILL)


def start_component(name: str) -> None:
    """Start a component that was stopped (or given up after too many failed starts)."""
    states = _component_states()
    if name not in states:
        raise PlatformError(f"No component named {name!r}; this platform runs: {', '.join(states) or 'nothing'}.")
    _start_component(name)


def status() -> dict[str, dict[str, object]]:
    """Each component's supervisor state and pid (0 when it is not running); empty when Airflow is not up."""
    if _supervisord_pid() is None:
        return {}
    try:
        infos = _supervisor().supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return {}
    return {info["name"]: {"state": info["statename"], "pid": info["pid"]} for info in infos}


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
            stop_component(args.component)
            return 0
        if args.command == "start":
            start_component(args.component)
            return 0
        if args.command == "up":
            return up()
        if args.command == "status":
            components = status()
            if args.json:
                print(json.dumps(components))
            elif not components:
                print("Airflow is not running: start it with `make up`.")
            else:
                for name, info in components.items():
                    print(f"{name:14} {info['state']:9} pid {info['pid']}")
            return 0 if components and all(info["state"] == "RUNNING" for info in components.values()) else 1
        down()
        return 0
    except (PlatformError, ClusterError, settings.ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
