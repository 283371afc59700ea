"""Sending sign-in codes: a development sender, an HTTP-webhook sender for a real gateway."""

import logging
from typing import Protocol

import httpx

from api.core.config import Settings
from api.members.exceptions import SmsFailed
from api.members.identifiers import mask_phone

log = logging.getLogger("loyalty.sms")


class SmsSender(Protocol):
    async def send_code(self, phone: str, code: str) -> None: ...


class ConsoleSender:
    """Development only: prints the code to the server console."""

    async def send_code(self, phone: str, code: str) -> None:
        print(f"[dev sms] sign-in code for {phone}: {code}", flush=True)


class DiscardSender:
    """No gateway configured outside development: nothing leaves the server."""

    async def send_code(self, phone: str, code: str) -> None:
        log.warning("no SMS gateway configured; code for %s not sent", mask_phone(phone))


class WebhookSender:
    """POSTs {"phone", "code", "template"} to the gateway with a bearer token."""

    def __init__(
        self, url: str, token: str | None, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.url = url
        self.token = token
        self.transport = transport

    async def send_code(self, phone: str, code: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"phone": phone, "code": code, "template": "loyalty_sign_in"}
        try:
            async with httpx.AsyncClient(timeout=10, transport=self.transport) as client:
                response = await client.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as e:
            log.error("SMS gateway unreachable for %s: %s", mask_phone(phone), type(e).__name__)
            raise SmsFailed() from e
        if response.status_code >= 300:
            log.error("SMS gateway refused %s: HTTP %s", mask_phone(phone), response.status_code)
            raise SmsFailed()


def sender_for(settings: Settings) -> SmsSender:
    if settings.sms_webhook_url:
        return WebhookSender(settings.sms_webhook_url, settings.sms_webhook_token)
    if settings.env == "development":
        return ConsoleSender()
    return DiscardSender()
