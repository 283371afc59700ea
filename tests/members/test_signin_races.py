"""Member sign-in under parallel requests, with real commits on PostgreSQL: each request on its
own httpx client and its own pooled connection (the app on the engine's sessionmaker).

- 120 parallel wrong guesses at one code: exactly `otp_max_attempts` are counted and compared;
- 10 parallel code requests for one phone: one code is sent; 30 for different phones from one
  address: exactly the hourly cap is sent;
- parallel guesses at a fixed test-phone code: exactly max counted;
- two (and five) parallel refreshes of one token: all get the same new pair; a reuse after the
  grace window revokes the whole sign-in."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.core import clock, security
from api.core.config import Settings
from api.core.db import make_sessionmaker
from api.core.models import AuthThrottle, RateHit
from api.main import create_app
from api.members.models import Member, MemberSignIn, OtpChallenge, RefreshToken
from tests.conftest import (
    TEST_CODE,
    TEST_PHONE,
    CapturingSender,
    client_at,
    make_settings,
    postgres_only,
)

pytestmark = postgres_only

PHONE = "+8613912340001"
OTHER_PHONES = [f"+86139123402{i:02d}" for i in range(30)]
IPS = [f"192.0.2.{100 + i}" for i in range(12)]


@dataclass
class Live:
    app: object
    maker: async_sessionmaker[AsyncSession]
    settings: Settings
    sms: CapturingSender

    def clients(self, n: int, ips: list[str] | None = None) -> list[httpx.AsyncClient]:
        ips = ips or IPS
        return [client_at(self.app, ips[i % len(ips)]) for i in range(n)]


async def _cleanup(maker: async_sessionmaker[AsyncSession]) -> None:
    phones = [PHONE, TEST_PHONE, *OTHER_PHONES]
    digests = [security.token_digest(p) for p in phones]
    async with maker() as s:
        await s.execute(delete(Member).where(Member.phone.in_(phones)))  # cascades sign-ins
        await s.execute(delete(OtpChallenge).where(OtpChallenge.phone.in_(phones)))
        await s.execute(delete(RateHit).where(RateHit.key.in_([*IPS, *digests])))
        await s.execute(delete(AuthThrottle).where(AuthThrottle.key.in_([*IPS, *digests])))
        await s.commit()


@pytest.fixture
async def live(engine: AsyncEngine) -> AsyncIterator[Live]:
    settings = make_settings()
    app = create_app(settings, engine=engine)
    sender = CapturingSender()
    app.state.sms_sender = sender
    maker = make_sessionmaker(engine)
    await _cleanup(maker)
    try:
        yield Live(app, maker, settings, sender)
    finally:
        await _cleanup(maker)


async def _all(calls: list) -> list[httpx.Response]:  # type: ignore[type-arg]
    return list(await asyncio.gather(*calls))


async def _close(clients: list[httpx.AsyncClient]) -> None:
    for c in clients:
        await c.aclose()


def _outcomes(responses: list[httpx.Response]) -> Counter[tuple[int, str | None]]:
    return Counter((r.status_code, r.json().get("error")) for r in responses)


async def test_120_parallel_wrong_guesses_count_exactly_max_attempts(live: Live):
    async with client_at(live.app, IPS[0]) as c:
        assert (await c.post("/v1/auth/otp", json={"phone": PHONE})).status_code == 202
    code = live.sms.last_code(PHONE)
    wrong = [f"{(int(code) + 1 + i) % 1_000_000:06d}" for i in range(120)]
    clients = live.clients(120)
    try:
        answers = await _all(
            [
                c.post("/v1/auth/otp/verify", json={"phone": PHONE, "code": guess})
                for c, guess in zip(clients, wrong, strict=True)
            ]
        )
    finally:
        await _close(clients)
    outcomes = _outcomes(answers)
    max_attempts = live.settings.otp_max_attempts
    # exactly max guesses were compared: max - 1 wrong, the last one locks; the rest refused
    assert outcomes == {
        (401, "OtpInvalid"): max_attempts - 1,
        (429, "OtpLocked"): 120 - (max_attempts - 1),
    }, outcomes
    async with live.maker() as s:
        [attempts] = (
            (await s.execute(select(OtpChallenge.attempts).where(OtpChallenge.phone == PHONE)))
            .scalars()
            .all()
        )
    assert attempts == max_attempts
    async with client_at(live.app, IPS[1]) as c:  # the right code is dead too
        r = await c.post("/v1/auth/otp/verify", json={"phone": PHONE, "code": code})
        assert (r.status_code, r.json()["error"]) == (429, "OtpLocked")


async def test_parallel_verifies_with_the_right_code_sign_in_once(live: Live):
    async with client_at(live.app, IPS[0]) as c:
        assert (await c.post("/v1/auth/otp", json={"phone": PHONE})).status_code == 202
    code = live.sms.last_code(PHONE)
    clients = live.clients(4)
    try:
        answers = await _all(
            [c.post("/v1/auth/otp/verify", json={"phone": PHONE, "code": code}) for c in clients]
        )
    finally:
        await _close(clients)
    assert _outcomes(answers) == {(200, None): 1, (401, "OtpInvalid"): 3}


async def test_ten_parallel_code_requests_send_one_code(live: Live):
    clients = live.clients(10)
    try:
        answers = await _all([c.post("/v1/auth/otp", json={"phone": PHONE}) for c in clients])
    finally:
        await _close(clients)
    assert _outcomes(answers) == {(202, None): 1, (429, "TooManyRequests"): 9}
    assert [to for to, _ in live.sms.sent] == [PHONE]
    async with live.maker() as s:
        n = await s.scalar(
            select(func.count()).select_from(OtpChallenge).where(OtpChallenge.phone == PHONE)
        )
    assert n == 1


async def test_parallel_requests_from_one_address_send_exactly_the_hourly_cap(live: Live):
    clients = live.clients(30, ips=[IPS[5]])
    try:
        answers = await _all(
            [
                c.post("/v1/auth/otp", json={"phone": phone})
                for c, phone in zip(clients, OTHER_PHONES, strict=True)
            ]
        )
    finally:
        await _close(clients)
    cap = live.settings.otp_per_ip_per_hour
    assert _outcomes(answers) == {(202, None): cap, (429, "TooManyRequests"): 30 - cap}
    assert len(live.sms.sent) == cap


async def test_parallel_guesses_at_a_test_phone_count_exactly_max(live: Live):
    clients = live.clients(60)
    try:
        answers = await _all(
            [
                c.post(
                    "/v1/auth/otp/verify",
                    json={"phone": TEST_PHONE, "code": f"{(int(TEST_CODE) + 1 + i):06d}"},
                )
                for i, c in enumerate(clients)
            ]
        )
    finally:
        await _close(clients)
    max_attempts = live.settings.otp_max_attempts
    assert _outcomes(answers) == {
        (401, "OtpInvalid"): max_attempts - 1,
        (429, "OtpLocked"): 60 - (max_attempts - 1),
    }
    async with client_at(live.app, IPS[0]) as c:
        r = await c.post("/v1/auth/otp/verify", json={"phone": TEST_PHONE, "code": TEST_CODE})
        assert (r.status_code, r.json()["error"]) == (429, "OtpLocked")


@pytest.mark.parametrize("screens", [2, 5])
async def test_parallel_refreshes_all_get_the_same_pair(live: Live, screens: int):
    async with client_at(live.app, IPS[0]) as c:
        r = await c.post("/v1/auth/otp/verify", json={"phone": TEST_PHONE, "code": TEST_CODE})
        assert r.status_code == 200, r.text
    first = r.json()
    clients = live.clients(screens)
    try:
        answers = await _all(
            [
                c.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
                for c in clients
            ]
        )
        assert [a.status_code for a in answers] == [200] * screens, [a.text for a in answers]
        assert len({a.json()["refresh_token"] for a in answers}) == 1
        for a, c in zip(answers, clients, strict=True):  # every access token works
            me = await c.get(
                "/v1/me", headers={"Authorization": f"Bearer {a.json()['access_token']}"}
            )
            assert me.status_code == 200, me.text
    finally:
        await _close(clients)
    async with live.maker() as s:
        rows = (
            await s.execute(
                select(RefreshToken.token_hash, RefreshToken.revoked_at).where(
                    RefreshToken.member_id == first["member_id"]
                )
            )
        ).all()
    assert len(rows) == 2 and all(at is None for _, at in rows)  # one successor, none revoked

    # after the grace window, the old token again is a theft: the whole sign-in ends
    shared = answers[0].json()
    with clock.frozen(clock.now()) as frozen:
        frozen.tick(live.settings.refresh_grace_seconds + 1)
        async with client_at(live.app, IPS[0]) as c:
            reuse = await c.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
            assert (reuse.status_code, reuse.json()["error"]) == (401, "RefreshReused")
            after = await c.post(
                "/v1/auth/refresh", json={"refresh_token": shared["refresh_token"]}
            )
            assert (after.status_code, after.json()["error"]) == (401, "RefreshInvalid")
            me = await c.get(
                "/v1/me", headers={"Authorization": f"Bearer {shared['access_token']}"}
            )
            assert (me.status_code, me.json()["error"]) == (401, "MemberNotAuthenticated")
    async with live.maker() as s:
        signins = (
            (
                await s.execute(
                    select(MemberSignIn.revoked_at).where(
                        MemberSignIn.member_id == first["member_id"]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert signins and all(at is not None for at in signins)
