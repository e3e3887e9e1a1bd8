"""A local HTTP server that plays Slack's incoming webhook for the alert tests (real HTTP, no mock)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    payload: dict
    status: int


class SlackWebhookStub:
    """Records every POST and answers with the replies queued by ``reply_with`` (then 200 "ok", as Slack does).

    ``url`` is the webhook URL to configure; its path holds a random token that must never appear in an alert
    or a log line.
    """

    def __init__(self) -> None:
        self.token = f"T0ALERTS/B0ALERTS/{secrets.token_hex(12)}"
        self.requests: list[Request] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with stub._lock:
                    reply = stub._replies.popleft() if stub._replies else Reply()
                    try:
                        payload = json.loads(raw.decode("utf-8"))
                    except ValueError:
                        payload = {"unparsable": raw.decode("utf-8", "replace")}
                    stub.requests.append(Request(self.path, payload, reply.status))
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/{self.token}"

    def connection_json(self) -> str:
        """The ``slack_alerts`` connection as Airflow reads it from ``AIRFLOW_CONN_SLACK_ALERTS``."""
        return json.dumps({"conn_type": "slackwebhook", "password": self.url})

    def reply_with(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def delivered(self) -> list[str]:
        """Texts of the messages Slack accepted (answered 200)."""
        with self._lock:
            return [request.payload.get("text", "") for request in self.requests if request.status == 200]

    @property
    def attempts(self) -> int:
        with self._lock:
            return len(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
