"""``make up EXECUTOR=celery``: the local platform on Airflow's CeleryExecutor, laid out as a small cluster would be.

What it adds to the four Airflow components (``include.local_platform.local_airflow`` runs all of it under one
supervisord, so ``make down`` stops all of it):

- **broker**: Debian's ``redis-server`` (``make redis`` installs it), private to this platform: its files in
  ``.local/redis``, on 127.0.0.1 on a free port, with a password, its queue kept on disk (append-only file) so that a
  restart of the broker loses no queued task. Celery's results go to the ``airflow`` database.
- **object-store**: an S3-compatible server on 127.0.0.1 (``moto``'s server from PyPI: the one S3 implementation
  that installs with pip alone, no Docker and no download; it keeps objects in memory, so after ``make down`` the
  dbt docs come back with the next daily run). ``docs_generate`` publishes the dbt docs to its bucket and the
  api-server's docs page reads them from there (``GREENERY_DBT_DOCS_URL``), through the Airflow connection
  ``greenery_object_store``.
- **worker-1 .. worker-N** (``GREENERY_CELERY_WORKERS``, default 2): Celery workers that stand for machines. Each has
  a loopback address of its own (127.0.0.2, 127.0.0.3, ...) as its host name, which the UI shows in a task's
  details; its own task-log folder, served by its own log server (**worker-N-logs**) on that address; its own Cosmos
  cache and temporary directory. Nothing but the broker, the metadata database, the warehouse and the object store
  joins them, as on separate machines. Each takes ``GREENERY_CELERY_CONCURRENCY`` tasks at a time from both queues:
  ``GREENERY_DBT_QUEUE`` (every task that runs dbt) and Airflow's ``[operators] default_queue`` (the rest).

Airflow's log servers bind every address on one port (``[logging] worker_log_server_port``), so two on one host
would collide; the api-server asks ``http://<task's host name>:<that port>``, so each worker's log server listens
on its own address only, on the shared port.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

from include import settings
from include.local_platform.pgcluster import port_is_free

REDIS_SERVER = Path("/usr/bin/redis-server")
OBJECT_STORE_CONN_ID = "greenery_object_store"
DOCS_BUCKET = "greenery"
DOCS_PREFIX = "dbt-docs"
VISIBILITY_TIMEOUT_SECONDS = 6 * 60 * 60
# A stopped worker gets this long to finish its tasks (Celery's warm shutdown) before it is killed.
WORKER_STOPWAITSECS = 10


@dataclass(frozen=True)
class Program:
    """One supervised process: its command, the environment it adds to the platform's, and its log file's name."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    stopwaitsecs: int | None = None


def worker_hostname() -> str:
    """``[core] hostname_callable`` of a local Celery worker and its tasks: the worker's own loopback address."""
    return settings.WORKER_HOST.value() or socket.getfqdn()


def worker_names(count: int | None = None) -> list[str]:
    count = settings.CELERY_WORKERS.value() if count is None else count
    return [f"worker-{number}" for number in range(1, count + 1)]


def worker_address(name: str) -> str:
    return f"127.0.0.{int(name.rsplit('-', 1)[1]) + 1}"


def worker_dir(airflow_home: Path, name: str) -> Path:
    return airflow_home / "workers" / name


def new_state(state: dict) -> dict:
    """Secrets and ports of the Celery platform, generated on the first ``up`` with it, then kept."""
    from include.local_platform.pgcluster import free_port

    celery = dict(state.get("celery") or {})
    celery.setdefault("broker_password", secrets.token_urlsafe(24))
    celery.setdefault("store_key", "greenery")
    celery.setdefault("store_secret", secrets.token_urlsafe(24))
    for key in ("broker_port", "store_port"):
        if not celery.get(key) or not port_is_free(celery[key]):
            celery[key] = free_port()
    addresses = [worker_address(name) for name in worker_names()]
    port = celery.get("worker_log_port")
    if not port or not all(_free_on(address, port) for address in ("127.0.0.1", *addresses)):
        port = _free_port_on(addresses)
    celery["worker_log_port"] = port
    return celery


def _free_on(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _free_port_on(addresses: list[str]) -> int:
    from include.local_platform.pgcluster import free_port

    for _ in range(50):
        port = free_port()
        if all(_free_on(address, port) for address in addresses):
            return port
    raise RuntimeError(f"no port is free on every worker address ({', '.join(addresses)})")


def broker_url(celery: dict) -> str:
    return f"redis://:{celery['broker_password']}@127.0.0.1:{celery['broker_port']}/0"


def store_endpoint(celery: dict) -> str:
    return f"http://127.0.0.1:{celery['store_port']}"


def store_connection_json(celery: dict) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": celery["store_key"],
            "password": celery["store_secret"],
            "extra": {"endpoint_url": store_endpoint(celery), "region_name": "us-east-1"},
        }
    )


def queues(user_settings: dict[str, str]) -> list[str]:
    """The queues every local worker serves: Airflow's default queue, then the dbt queue."""
    default_queue = user_settings.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE") or "default"
    return list(dict.fromkeys([default_queue, settings.DBT_QUEUE.value(user_settings)]))


def airflow_env(celery: dict, sqlalchemy_url: str) -> dict[str, str]:
    """What every process of the Celery platform adds to the LocalExecutor platform's environment."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url(celery),
        # The provider's default too, said here so the UI's config page shows it: results in the metadata database.
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(celery["worker_log_port"]),
        # A task whose worker died (its heartbeat stopped) fails this long after its last heartbeat, and its retry
        # goes to a worker that is still there; Airflow's default is five minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(settings.TASK_HEARTBEAT_TIMEOUT_SECONDS.value()),
        # Longer than the longest run may last (greenery_daily's dagrun_timeout is 3 hours): Redis hands a task no
        # worker acknowledged to another worker after this long.
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_SECONDS),
        f"AIRFLOW_CONN_{OBJECT_STORE_CONN_ID.upper()}": store_connection_json(celery),
        settings.DBT_DOCS_URL.name: f"s3://{DOCS_BUCKET}/{DOCS_PREFIX}",
        settings.DBT_DOCS_CONN_ID.name: OBJECT_STORE_CONN_ID,
    }


def write_broker_config(local_dir: Path, celery: dict) -> Path:
    """redis.conf of the broker: loopback only, a password, the queue on disk. Readable by us alone."""
    data = local_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    conf = data / "redis.conf"
    lines = [
        "bind 127.0.0.1",
        "protected-mode yes",
        f"port {celery['broker_port']}",
        f'requirepass "{celery["broker_password"]}"',
        f'dir "{data}"',
        "daemonize no",
        'logfile ""',
        # Every queued task is written to disk within a second: a restarted broker still has them.
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
    ]
    conf.touch(mode=0o600)
    conf.write_text("\n".join(lines) + "\n")
    return conf


def programs(airflow_home: Path, local_dir: Path, celery: dict, user_settings: dict[str, str]) -> list[Program]:
    """The broker, the object store, and each worker with its log server."""
    if not REDIS_SERVER.exists():
        raise FileNotFoundError(f"{REDIS_SERVER} is not installed: run `make redis` (Debian's redis-server).")
    python = sys.executable
    found = [
        Program("broker", [str(REDIS_SERVER), str(write_broker_config(local_dir, celery))]),
        Program(
            "object-store",
            [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(celery["store_port"])],
        ),
    ]
    served = ",".join(queues(user_settings))
    concurrency = settings.CELERY_CONCURRENCY.value(user_settings)
    for name in worker_names(settings.CELERY_WORKERS.value(user_settings)):
        address = worker_address(name)
        home = worker_dir(airflow_home, name)
        for sub in ("logs", "cosmos-cache", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        environment = {
            settings.WORKER_HOST.name: address,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos-cache"),
            "TMPDIR": str(home / "tmp"),
        }
        found.append(
            Program(
                name,
                [
                    *(python, "-m", "airflow", "celery", "worker"),
                    *("--celery-hostname", f"{name}@{address}", "--queues", served),
                    *("--concurrency", str(concurrency), "--skip-serve-logs"),
                ],
                environment,
                stopwaitsecs=WORKER_STOPWAITSECS,
            )
        )
        found.append(
            Program(
                f"{name}-logs",
                [
                    *(python, "-m", "uvicorn", "--factory", "airflow.utils.serve_logs.log_server:get_app"),
                    *("--host", address, "--port", str(celery["worker_log_port"]), "--no-access-log"),
                ],
                environment,
            )
        )
    return found


def wait_for_port(port: int, name: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"The {name} did not start listening on 127.0.0.1:{port}; see {log}.")


def ensure_docs_bucket(celery: dict, timeout: float = 60) -> None:
    """Create the docs bucket in the local object store (once the store answers); a bucket already there is kept."""
    import boto3
    from botocore.exceptions import ClientError, EndpointConnectionError

    client = boto3.client(
        "s3",
        endpoint_url=store_endpoint(celery),
        aws_access_key_id=celery["store_key"],
        aws_secret_access_key=celery["store_secret"],
        region_name="us-east-1",
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_bucket(Bucket=DOCS_BUCKET)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            raise
        except (EndpointConnectionError, urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
