"""The local platform's supervisord: one process that starts Airflow's components (and the Celery platform's
broker, object store and workers), starts again whichever exits, and stops them all together.

A kept supervisor rather than a loop of our own: it already handles back-off, process groups, log files and a
clean shutdown, and ``supervisorctl -c .local/airflow/supervisord.conf status`` shows the state. Every process it
starts carries ``MARKER`` in its environment, so ``down`` finds and stops all of them, task processes included.
``include.local_platform.local_airflow`` decides what runs; this module runs it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

from include import settings
from include.local_platform import celery_platform
from include.local_platform.celery_platform import Program

AIRFLOW_HOME = settings.LOCAL_DIR / "airflow"
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
ALIVE_STATES = {"STARTING", "RUNNING", "BACKOFF"}


class SupervisionError(RuntimeError):
    """supervisord could not do what was asked; the message says what and where to look."""


def session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[3])  # state, ppid, pgrp, session


def supervisord_pid() -> int | None:
    """The pid of our supervisord, if it runs (it leads a session of its own)."""
    try:
        pid = int(SUPERVISOR_PID.read_text())
    except (OSError, ValueError):
        return None
    return pid if session_of(pid) == pid else None


def _leading_sessions() -> set[int]:
    """Sessions led by a process whose pid file is in AIRFLOW_HOME: supervisord's, and those of components
    that a `make up` from before supervision started one by one."""
    sessions = set()
    for pid_file in AIRFLOW_HOME.glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if session_of(pid) == pid:
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


def component_states() -> dict[str, str]:
    """Each component's supervisor state (RUNNING, BACKOFF, FATAL, ...); empty when supervisord is not running."""
    return {name: str(info["state"]) for name, info in status().items()}


def component_running(component: str) -> bool:
    return component_states().get(component) in ALIVE_STATES


def our_processes(sessions: set[int] | None = None) -> list[int]:
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
        session = session_of(pid)
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


def start_supervisord(env: dict[str, str], programs: list[Program], timeout: float = 30) -> None:
    """Start supervisord with the platform's environment (every component inherits it), unless it runs."""
    if supervisord_pid() is not None:
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
    while not component_states():
        if time.monotonic() > deadline:
            raise SupervisionError(f"supervisord did not start; see {AIRFLOW_HOME / 'logs' / 'supervisord.out'}.")
        time.sleep(0.3)


def start_program(component: str) -> None:
    """Start a component (again, after it was given up): supervisord then keeps it running."""
    if component_running(component):
        return
    try:
        _supervisor().supervisor.startProcess(component, False)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" not in fault.faultString:
            raise SupervisionError(f"supervisord could not start the {component}: {fault.faultString}") from None


def down(timeout: float = 30) -> None:
    supervised = bool(component_states())
    # Kept for after supervisord has gone: whatever outlived it is still in its session.
    sessions = _leading_sessions()
    if supervised:
        # supervisord stops every component (SIGTERM to its process group, SIGKILL after STOPWAITSECS), then itself.
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            _supervisor().supervisor.shutdown()
        deadline = time.monotonic() + STOPWAITSECS + timeout
        while supervisord_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.5)
    pids = our_processes(sessions)
    if not pids and not supervised:
        print("Airflow: nothing to stop.")
        return
    for pid in pids:  # task processes that started a session of their own, or whatever outlived supervisord
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while our_processes(sessions) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in our_processes(sessions):  # whatever ignored SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print("Airflow stopped.")


def status() -> dict[str, dict[str, object]]:
    """Each component's supervisor state and pid (0 when it is not running); empty when Airflow is not up."""
    if supervisord_pid() is None:
        return {}
    try:
        infos = _supervisor().supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return {}
    return {info["name"]: {"state": info["statename"], "pid": info["pid"]} for info in infos}


def stop_component(name: str) -> None:
    """Stop one component and leave it stopped (supervisord sends SIGTERM to its process group, SIGKILL after its
    stop wait). A worker is a machine going away: whatever of it outlived that (the task processes, which lead
    process groups of their own) is killed too, and its tasks are retried on the workers that remain."""
    states = component_states()
    if name not in states:
        raise SupervisionError(f"No component named {name!r}; this platform runs: {', '.join(states) or 'nothing'}.")
    try:
        _supervisor().supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as fault:
        if "NOT_RUNNING" not in fault.faultString:
            raise SupervisionError(f"supervisord could not stop the {name}: {fault.faultString}") from None
    if name.startswith("worker-") and not name.endswith("-logs"):
        # Its log server (worker-N-logs) shares the marker and stays, so the logs of the killed tries can be read.
        others = {info["pid"] for other, info in status().items() if other != name}
        needle = f"{settings.WORKER_HOST.name}={celery_platform.worker_address(name)}".encode()
        for pid in set(our_processes()) - others:
            with contextlib.suppress(OSError):
                if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    os.kill(pid, signal.SIGKILL)


def start_component(name: str) -> None:
    """Start a component that was stopped (or given up after too many failed starts)."""
    states = component_states()
    if name not in states:
        raise SupervisionError(f"No component named {name!r}; this platform runs: {', '.join(states) or 'nothing'}.")
    start_program(name)
