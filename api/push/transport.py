"""Push transports: firebase-admin (FCM HTTP v1) and the inbox-only stand-in without credentials.

FirebaseTransport owns retries: the SDK's own urllib3 retry (4 tries on 500/503) is switched off
for the FCM endpoint, so every try is one counted attempt of ours, paced by our rate limit, and
Retry-After is honoured for the whole process.
"""

import asyncio
import email.utils
import itertools
import logging
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import firebase_admin
import requests.adapters
from firebase_admin import credentials, exceptions, messaging
from urllib3.util import retry

from api.core.config import Settings

log = logging.getLogger("loyalty.push")

FCM_PATH = "/v1/projects/{0}/messages:send"
MAX_BATCH = 500  # messaging.send_each refuses more
_TRANSIENT_CODES = {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED"}
_app_names = itertools.count(1)


@dataclass(frozen=True)
class PushMessage:
    token: str
    title: str
    body: str
    tag: str = field(metadata={"doc": "stable per delivery: a resent copy replaces the first"})
    data: dict[str, str] = field(default_factory=dict)
    image_url: str | None = None


@dataclass
class SendOutcome:
    message_id: str | None = None
    error: str | None = None
    token_invalid: bool = False
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.message_id is not None


class PushTransport(Protocol):
    available: bool

    async def send(self, messages: Sequence[PushMessage]) -> list[SendOutcome]:
        """One outcome per message, in order; retries are done inside."""
        ...


class NoTransport:
    """No Firebase credentials: the inbox still works, nothing goes to phones."""

    available = False

    async def send(self, messages: Sequence[PushMessage]) -> list[SendOutcome]:
        return [SendOutcome(error="no_transport") for _ in messages]


class RateLimiter:
    """Paces sends to `rate` messages/s in this process (no DB: the limit is per process)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, count: int) -> None:
        """Wait for a slot of `count` messages; the following slot starts count/rate later."""
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + count / self.rate
        await asyncio.sleep(start - now)

    async def drain(self) -> None:
        """Wait until the last slot handed out has passed."""
        await asyncio.sleep(max(0.0, self._next - time.monotonic()))

    def pause(self, seconds: float) -> None:
        """FCM asked us to back off (Retry-After): nothing goes out before then."""
        self._next = max(self._next, time.monotonic() + seconds)


def _retry_after(error: exceptions.FirebaseError) -> float | None:
    response = getattr(error, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _classify(error: exceptions.FirebaseError) -> tuple[str, bool, bool]:
    """(reason, token is dead, worth retrying)."""
    if isinstance(error, messaging.UnregisteredError):
        return "unregistered", True, False
    if isinstance(error, messaging.SenderIdMismatchError):
        return "sender_mismatch", True, False
    if isinstance(error, messaging.QuotaExceededError):
        return "quota_exceeded", False, True
    if error.code == "INVALID_ARGUMENT":
        token_problem = "token" in str(error).lower()
        return ("invalid_token" if token_problem else "invalid_argument"), token_problem, False
    if error.code in _TRANSIENT_CODES:
        return error.code.lower(), False, True
    return error.code.lower(), False, False


class FirebaseTransport:
    """FCM through firebase-admin: `send_each` in a worker thread, at most 500 a call."""

    available = True

    def __init__(
        self,
        *,
        credentials_path: str,
        rate: float,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
        batch_size: int = MAX_BATCH,
        fcm_url: str | None = None,
    ) -> None:
        if fcm_url:
            _use_loopback_fcm(fcm_url)
        cert = credentials.Certificate(credentials_path)
        self.app = firebase_admin.initialize_app(
            cert, name=f"loyalty-push-{next(_app_names)}-{uuid.uuid4().hex[:6]}"
        )
        self.project_id = self.app.project_id
        self.limiter = RateLimiter(rate)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.batch_size = min(batch_size, MAX_BATCH)
        self._without_sdk_retries(fcm_url)

    def _without_sdk_retries(self, fcm_url: str | None) -> None:
        service = messaging._get_messaging_service(self.app)
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=MAX_BATCH, max_retries=retry.Retry(0, read=False)
        )
        service._client.session.mount(fcm_url or "https://fcm.googleapis.com", adapter)

    def close(self) -> None:
        firebase_admin.delete_app(self.app)

    def _fcm_messages(self, messages: Sequence[PushMessage]) -> list[messaging.Message]:
        # The app registers FCM registration tokens (the API contract); the SDK now prefers
        # installation ids (fid) and warns about `token`, which FCM v1 still takes.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return [self._encode(m) for m in messages]

    def _encode(self, m: PushMessage) -> messaging.Message:
        return messaging.Message(
            token=m.token,
            notification=messaging.Notification(title=m.title, body=m.body, image=m.image_url),
            data={**m.data, "push_id": m.tag},
            android=messaging.AndroidConfig(
                collapse_key=m.tag, notification=messaging.AndroidNotification(tag=m.tag)
            ),
            apns=messaging.APNSConfig(headers={"apns-collapse-id": m.tag}),
            webpush=messaging.WebpushConfig(notification=messaging.WebpushNotification(tag=m.tag)),
        )

    async def _send_batch(self, batch: list[messaging.Message]) -> messaging.BatchResponse:
        await self.limiter.take(len(batch))
        return await asyncio.to_thread(messaging.send_each, batch, app=self.app)

    async def send(self, messages: Sequence[PushMessage]) -> list[SendOutcome]:
        """Send each message once; 429 and 5xx are retried with backoff, Retry-After first."""
        outcomes = [SendOutcome() for _ in messages]
        fcm = self._fcm_messages(messages)
        pending = list(range(len(messages)))
        for attempt in range(self.max_retries + 1):
            retry_later: list[int] = []
            wait = 0.0
            for start in range(0, len(pending), self.batch_size):
                chunk = pending[start : start + self.batch_size]
                response = await self._send_batch([fcm[i] for i in chunk])
                for i, result in zip(chunk, response.responses, strict=True):
                    outcome = outcomes[i]
                    outcome.attempts += 1
                    if result.success:
                        outcome.message_id, outcome.error = result.message_id, None
                        continue
                    reason, dead, transient = _classify(result.exception)
                    outcome.error, outcome.token_invalid = reason, dead
                    if transient:
                        retry_later.append(i)
                        after = _retry_after(result.exception)
                        if after is not None:  # FCM's floor, never cut by our own backoff cap
                            self.limiter.pause(after)
                        wait = max(wait, after if after is not None else 0.0)
            if not retry_later or attempt == self.max_retries:
                break
            backoff = min(self.backoff_base * 2**attempt, self.backoff_max)
            await asyncio.sleep(max(wait, backoff))
            pending = retry_later
        await self.limiter.drain()
        return outcomes


def _use_loopback_fcm(base_url: str) -> None:
    """Test only (LOYALTY_FCM_URL): send to a loopback fake FCM instead of Google.

    The fake cannot answer google-auth's regional access boundary lookup, so it is skipped.
    """
    from google.oauth2 import service_account

    messaging._MessagingService.FCM_URL = base_url.rstrip("/") + FCM_PATH
    service_account.Credentials._is_regional_access_boundary_lookup_required = (  # type: ignore[method-assign]
        lambda self: False
    )


def transport_for(settings: Settings) -> PushTransport:
    """FirebaseTransport when LOYALTY_FIREBASE_CREDENTIALS is set, else NoTransport."""
    if not settings.firebase_credentials:
        return NoTransport()
    return FirebaseTransport(
        credentials_path=settings.firebase_credentials,
        rate=settings.push_send_rate,
        max_retries=settings.push_max_retries,
        backoff_base=settings.push_backoff_base_seconds,
        backoff_max=settings.push_backoff_max_seconds,
        batch_size=settings.push_batch_size,
        fcm_url=settings.fcm_url,
    )


_process_transport: dict[tuple[str | None, str | None], PushTransport] = {}


def process_transport(settings: Settings) -> PushTransport:
    """The transport of this process (one firebase_admin app per process)."""
    key = (settings.firebase_credentials, settings.fcm_url)
    if key not in _process_transport:
        _process_transport[key] = transport_for(settings)
    return _process_transport[key]


def announce(settings: Settings) -> None:
    """One start-up line saying whether pushes reach phones."""
    if settings.firebase_credentials:
        log.info(
            "push: FCM through firebase-admin, at most %.0f messages/s per process",
            settings.push_send_rate,
        )
    else:
        log.warning(
            "push: LOYALTY_FIREBASE_CREDENTIALS is not set; campaign messages go to the in-app "
            "inbox only and deliveries are marked no_transport"
        )
