"""A private PostgreSQL cluster run from the machine's server binaries.

Used twice: the local warehouse under ``.local/`` (``make warehouse``) and the throwaway cluster of each test
session. The cluster listens on 127.0.0.1 only, authenticates with a password (scram-sha-256) and, because
PostgreSQL refuses to run as root, runs as an unprivileged user when we are root (the ``postgres`` system user
of the Debian package, or a system user created for it).

That user must be able to reach the server's files. When we are root and the cluster's folder lies where it
cannot (a clone under ``/root`` or in a ``mktemp -d`` folder), the server's files (data, socket, log) go under
``/var/lib/greenery-postgres/`` instead; the folder keeps ``cluster.json`` and a ``storage-location`` file that
says where they are, and ``destroy()`` removes both.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_PACKAGE_HINT = "Install the PostgreSQL server package: `sudo apt-get install postgresql`."
FALLBACK_SYSTEM_USER = "greenery-pg"
# Where the server's files go when the service user cannot reach the cluster's own folder (root only).
RELOCATED_ROOT = Path("/var/lib/greenery-postgres")
LOCATION_FILE = "storage-location"


class ClusterError(RuntimeError):
    """A problem the user can fix; the message says how."""


def find_server_bin_dir() -> Path:
    """The directory holding ``pg_ctl``, ``initdb`` and ``postgres``: PATH first, then the Debian layout."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise ClusterError(f"No PostgreSQL server binaries (pg_ctl, initdb) found on this machine. {SERVER_PACKAGE_HINT}")


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if it is free, else any free port the kernel hands out."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged user that runs the server when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pass
    try:
        return pwd.getpwnam(FALLBACK_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_SYSTEM_USER],
            check=True,
        )
        return pwd.getpwnam(FALLBACK_SYSTEM_USER)


@dataclass
class ClusterSettings:
    port: int
    user: str
    password: str


class PgCluster:
    """One PostgreSQL cluster in ``base_dir`` (``data/``, ``run/`` for the socket, ``postgres.log``, ``cluster.json``).

    ``port`` is the port to prefer on first start; once chosen it is recorded in ``cluster.json`` and reused.
    ``durable=False`` turns off fsync for throwaway test clusters.
    """

    def __init__(self, base_dir: Path, port: int | None = None, user: str = "greenery", durable: bool = True):
        self.base_dir = Path(base_dir).resolve()
        self.settings_file = self.base_dir / "cluster.json"
        self._use_storage(self._recorded_storage() or self.base_dir)
        self.preferred_port = port
        self.default_user = user
        self.durable = durable
        self._settings: ClusterSettings | None = None
        if self.settings_file.exists():
            self._settings = ClusterSettings(**json.loads(self.settings_file.read_text()))

    # -- facts -----------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._require_settings().port

    @property
    def user(self) -> str:
        return self._require_settings().user

    @property
    def password(self) -> str:
        return self._require_settings().password

    def libpq_env(self, dbname: str = "postgres") -> dict[str, str]:
        """libpq environment variables that reach ``dbname`` on this cluster."""
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": dbname,
        }

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} password={self.password} dbname={dbname}"

    def sqlalchemy_url(self, dbname: str) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and self._settings is not None

    def server_pid(self) -> int | None:
        """The postmaster's pid when our server runs; None otherwise (a stale pid file does not count)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        if comm not in ("postgres", "postmaster") or str(self.data_dir) not in cmdline:
            return None
        return pid

    def is_running(self) -> bool:
        return self.server_pid() is not None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Initialise on first use, then start; a running cluster is reused, a stale pid file recovered from."""
        bin_dir = find_server_bin_dir()  # before creating anything, so a missing package leaves nothing behind
        if not self.is_initialized():
            self._init(bin_dir)
        if self.is_running():
            return
        # Left by a crash: the pids in these files are not our server (it is not running), so they are stale.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        if self.run_dir.exists():
            for lock in self.run_dir.glob(".s.PGSQL.*"):
                lock.unlink(missing_ok=True)
        settings = self._require_settings()
        if not port_is_free(settings.port):
            chosen = free_port()
            settings.port = chosen
            self._write_settings(settings)
        self.run_dir.mkdir(exist_ok=True)
        self._chown(self.run_dir)
        options = [
            f"-c port={settings.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.run_dir}",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        result = self._run_as_service_user(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join(options),
            ]
        )
        if result.returncode != 0:
            tail = self._log_tail()
            raise ClusterError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}). Its log, {self.log_file}, ends with:\n"
                f"{tail}"
            )
        self._wait_ready()

    def stop(self) -> bool:
        """Stop the server if it runs. Returns whether it was running."""
        if not self.is_running():
            return False
        bin_dir = find_server_bin_dir()
        self._run_as_service_user([str(bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"])
        return True

    def destroy(self) -> None:
        """Stop and delete everything under ``base_dir``."""
        try:
            self.stop()
        finally:
            if self.relocated:
                shutil.rmtree(self.storage_dir, ignore_errors=True)
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- databases -------------------------------------------------------------------------------------------
    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        import psycopg2

        conn = psycopg2.connect(self.dsn(dbname))
        conn.autocommit = autocommit
        return conn

    def create_database(self, name: str) -> bool:
        """Create ``name`` unless it exists. Returns whether it was created."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone():
                    return False
                cur.execute(f'create database "{name}"')
        finally:
            conn.close()
        return True

    def drop_database(self, name: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'drop database if exists "{name}" with (force)')
        finally:
            conn.close()

    @property
    def relocated(self) -> bool:
        """Whether the server's files live outside ``base_dir`` (see the module docstring)."""
        return self.storage_dir != self.base_dir

    # -- internals -------------------------------------------------------------------------------------------
    def _use_storage(self, storage_dir: Path) -> None:
        self.storage_dir = storage_dir
        self.data_dir = storage_dir / "data"
        self.run_dir = storage_dir / "run"
        self.log_file = storage_dir / "postgres.log"

    def _recorded_storage(self) -> Path | None:
        location = self.base_dir / LOCATION_FILE
        return Path(location.read_text().strip()) if location.is_file() else None

    def _relocate(self) -> None:
        """Keep the server's files where the service user can reach them, and record where (root only)."""
        digest = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:12]
        storage = RELOCATED_ROOT / f"{self.base_dir.parent.name or 'cluster'}-{digest}"
        RELOCATED_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        storage.mkdir(mode=0o700, exist_ok=True)
        self._chown(storage)
        (self.base_dir / LOCATION_FILE).write_text(f"{storage}\n")
        self._use_storage(storage)

    def _require_settings(self) -> ClusterSettings:
        if self._settings is None:
            raise ClusterError(f"The PostgreSQL cluster in {self.base_dir} is not initialised: start it first.")
        return self._settings

    def _write_settings(self, settings: ClusterSettings) -> None:
        self._settings = settings
        self.settings_file.write_text(json.dumps(settings.__dict__))
        self.settings_file.chmod(0o600)

    def _init(self, bin_dir: Path) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.relocated:
            if self._blocking_parent() is not None:
                self._relocate()
            else:
                self.base_dir.chmod(0o755)
                self._chown(self.base_dir)  # the server writes its log here
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made data dir from an interrupted initdb
        self.data_dir.mkdir(mode=0o700)
        self._chown(self.data_dir)
        settings = ClusterSettings(
            port=free_port(self.preferred_port), user=self.default_user, password=secrets.token_urlsafe(18)
        )
        pwfile = self.storage_dir / ".initdb-password"
        pwfile.write_text(settings.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            result = self._run_as_service_user(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    settings.user,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise ClusterError(f"initdb failed:\n{result.stdout}{result.stderr}")
        self._write_settings(settings)

    def _blocking_parent(self) -> Path | None:
        """The first folder above ``base_dir`` that the service user cannot enter; None when it can reach it all
        (or when we are not root and the server runs as us)."""
        user = _service_user()
        if user is None:
            return None
        for parent in self.base_dir.parents:
            stat = parent.stat()
            if not stat.st_mode & 0o001 and stat.st_uid != user.pw_uid:
                return parent
        return None

    def _chown(self, path: Path) -> None:
        user = _service_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run_as_service_user(self, argv: list[str]) -> subprocess.CompletedProcess:
        user = _service_user()
        if user is not None:
            argv = ["runuser", "-u", user.pw_name, "--", *argv]
        # The server must not inherit our stdout/stderr pipes, or callers reading them would wait for it forever.
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg2.OperationalError as error:
                if time.monotonic() > deadline:
                    message = f"PostgreSQL started but does not accept connections:\n{self._log_tail()}"
                    raise ClusterError(message) from error
                time.sleep(0.2)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
