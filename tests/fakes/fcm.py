"""A loopback fake of FCM HTTP v1 and Google's OAuth token endpoint, for the real firebase-admin.

- POST /token                                   → {"access_token", "expires_in", "token_type"}
- POST /v1/projects/{project}/messages:send     → {"name": "projects/{project}/messages/<n>"}

Failures are programmable per registration token (`fail(token, kind, times=...)`); every
request is recorded, and `shown(token)` is what a phone would display: notifications with
the same tag (android tag / apns-collapse-id / webpush tag) replace each other.
`hold_after(n)` answers the first n messages and then keeps later ones waiting (accepted, as
FCM would deliver them, but unanswered) until `release()`: sends caught in flight.
"""

import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
FAILURES: dict[str, tuple[int, str, str | None, str]] = {
    # kind: (HTTP status, google status, FCM errorCode, message)
    "UNREGISTERED": (404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"),
    "INVALID_ARGUMENT": (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded."),
    "INTERNAL": (500, "INTERNAL", "INTERNAL", "Internal error encountered."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
}


@dataclass
class Failure:
    kind: str
    times: int | None  # None: always
    retry_after: int | None = None


@dataclass
class Request:
    at: float
    token: str | None
    tag: str | None
    title: str | None
    data: dict[str, Any]
    status: int


@dataclass
class FakeFCM:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    token_requests: int = 0
    _failures: dict[str, Failure] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _server: ThreadingHTTPServer | None = None
    _hold_after: int | None = None
    _released: threading.Event = field(default_factory=threading.Event)
    _held: list[Request] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeFCM":
        fake = self

        class Handler(_Handler):
            owner = fake

        server = _Server((self.host, self.port), Handler, bind_and_activate=False)
        server.request_queue_size = 2048
        server.daemon_threads = True
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fail(
        self, token: str, kind: str, *, times: int | None = None, retry_after: int | None = None
    ) -> None:
        """Answer messages to `token` with `kind` (a key of FAILURES), `times` times or always."""
        assert kind in FAILURES, kind
        self._failures[token] = Failure(kind, times, retry_after)

    def reset(self) -> None:
        self.release()
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._held.clear()
            self._hold_after = None
            self._released = threading.Event()

    def hold_after(self, n: int) -> None:
        """Answer `n` more messages, then leave the following ones unanswered until release()."""
        with self._lock:
            self._hold_after = len(self.requests) + n
            self._released = threading.Event()

    def release(self) -> None:
        with self._lock:
            self._hold_after = None
            self._released.set()

    @property
    def held(self) -> list[Request]:
        """Messages accepted but not answered yet (in flight for the sender)."""
        with self._lock:
            return list(self._held)

    def _wait_if_held(self, request: Request) -> None:
        with self._lock:
            if self._hold_after is None or len(self.requests) <= self._hold_after:
                return
            self._held.append(request)
            released = self._released
        released.wait(120)
        with self._lock:
            if request in self._held:
                self._held.remove(request)

    def accepted(self, token: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.status == 200 and token in (None, r.token)]

    def sent_to(self, token: str) -> list[Request]:
        return [r for r in self.requests if r.token == token]

    def shown(self, token: str) -> set[str | None]:
        """What the phone displays: accepted notifications, one per tag."""
        return {r.tag for r in self.accepted(token)}

    def _answer(self, token: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            failure = self._failures.get(token or "")
            if failure is not None and failure.times is not None:
                if failure.times <= 0:
                    failure = None
                else:
                    failure.times -= 1
        if failure is None:
            return 200, {"name": f"projects/p/messages/{next(self._ids)}"}, {}
        status, google_status, code, message = FAILURES[failure.kind]
        details = [{"@type": FCM_ERROR_TYPE, "errorCode": code}] if code else []
        body = {
            "error": {
                "code": status,
                "message": message,
                "status": google_status,
                "details": details,
            }
        }
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
        return status, body, headers

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def log_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.__dict__ for r in self.requests]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed worker's sockets
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeFCM
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/token"):
            self.owner.token_requests += 1
            self._reply(
                200,
                {"access_token": "fake-access-token", "expires_in": 3600, "token_type": "Bearer"},
            )
            return
        if not (self.path.startswith("/v1/projects/") and self.path.endswith("/messages:send")):
            self._reply(
                404, {"error": {"code": 404, "message": "no such path", "status": "NOT_FOUND"}}
            )
            return
        if self.headers.get("Authorization") != "Bearer fake-access-token":
            self._reply(
                401, {"error": {"code": 401, "message": "no token", "status": "UNAUTHENTICATED"}}
            )
            return
        message = json.loads(raw or b"{}").get("message", {})
        token = message.get("token")
        tag = (message.get("android") or {}).get("notification", {}).get("tag")
        status, body, headers = self.owner._answer(token)
        request = Request(
            at=time.monotonic(),
            token=token,
            tag=tag,
            title=(message.get("notification") or {}).get("title"),
            data=message.get("data") or {},
            status=status,
        )
        self.owner.record(request)
        self.owner._wait_if_held(request)
        self._reply(status, body, headers)


def service_account_file(directory: Path, fake_url: str, project: str = "loyalty-test") -> Path:
    """A service-account JSON (fresh RSA key) whose token_uri is the fake's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = directory / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": "fake-key-id",
                "private_key": pem,
                "client_email": f"push@{project}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"{fake_url}/token",
            }
        )
    )
    return path


@contextmanager
def running() -> Iterator[FakeFCM]:
    fake = FakeFCM().start()
    try:
        yield fake
    finally:
        fake.stop()
