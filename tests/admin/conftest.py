"""Console fixtures: an httpx client signed in through the real sign-in form, per role."""

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from tests import factories

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


class Console:
    """A browser-like client: cookies kept, the CSRF token read from the pages it gets."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str, **kw: object) -> httpx.Response:
        response = await self.client.get(f"/admin{path}", **kw)  # type: ignore[arg-type]
        if found := CSRF.search(response.text):
            self.csrf = found.group(1)
        return response

    async def post(self, path: str, data: dict | None = None, **kw: object) -> httpx.Response:
        """A form post carrying the session's CSRF token (as a page's form would)."""
        return await self.client.post(
            f"/admin{path}",
            data={"csrf_token": self.csrf, **(data or {})},
            **kw,  # type: ignore[arg-type]
        )

    async def sign_in(self, email: str, password: str = factories.PASSWORD) -> httpx.Response:
        await self.get("/login")
        response = await self.post("/login", {"email": email, "password": password})
        if response.status_code == 303:
            await self.get(response.headers["location"].removeprefix("/admin"))
        return response


@pytest.fixture
async def console_for(app) -> AsyncIterator[Callable[[str | None], Awaitable[Console]]]:  # type: ignore[no-untyped-def]
    """console_for(email) → a Console signed in as that staff member (None: signed out).

    HTTPS base URL: outside development the session cookie is Secure."""
    clients: list[httpx.AsyncClient] = []

    async def make(email: str | None) -> Console:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        client = httpx.AsyncClient(transport=transport, base_url="https://console.test")
        clients.append(client)
        console = Console(client)
        if email is not None:
            response = await console.sign_in(email)
            assert response.status_code == 303, response.text
        return console

    yield make
    for client in clients:
        await client.aclose()
