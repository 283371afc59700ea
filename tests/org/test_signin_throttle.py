"""Staff password guessing: counted per account and per client address before the password is
checked, a growing lockout (429 + Retry-After) on the API and the console form alike, logged
without the password; on PostgreSQL the limits hold under parallel guessing."""

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.core import clock, security
from api.core.config import Settings
from api.core.db import make_sessionmaker
from api.core.models import AuthThrottle
from api.main import create_app
from api.org import signin
from api.org.models import Role, Staff
from tests.admin.conftest import Console, console_for  # noqa: F401  (the fixture)
from tests.conftest import client_at, make_settings, postgres_only
from tests.factories import PASSWORD, make_staff

T0 = datetime(2031, 5, 4, 9, 0, tzinfo=UTC)
WRONG = "not-the-password"


async def sign_in(client, email: str, password: str):  # type: ignore[no-untyped-def]
    return await client.post("/v1/auth/token", data={"username": email, "password": password})


def assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    return body


async def account_row(session: AsyncSession, settings: Settings, email: str) -> AuthThrottle:
    key = security.keyed_digest(settings.secret_key, f"staff-signin:{email.lower()}")
    stmt = select(AuthThrottle).where(AuthThrottle.scope == signin.ACCOUNT, AuthThrottle.key == key)
    row = (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()
    return row


async def test_sixty_wrong_passwords_then_the_right_one_are_not_all_accepted(
    client, org, session, settings
):
    """The reported attack: 60 wrong passwords, then the right one, all answered."""
    email = org.staff["admin"].email
    with clock.frozen(T0) as frozen:
        answers = [await sign_in(client, email, f"{WRONG}-{i}") for i in range(60)]
        right = await sign_in(client, email, PASSWORD)
        statuses = Counter(r.status_code for r in answers)
        assert statuses == {401: 5, 429: 55}, statuses
        assert [r.status_code for r in answers[:5]] == [401] * 5
        locked = assert_error(answers[5], 429, "SignInLocked")
        assert "Too many failed sign-ins" in locked["detail"]
        assert 1 <= int(answers[5].headers["retry-after"]) <= 60
        assert_error(right, 429, "SignInLocked")  # even the right password waits

        frozen.tick(59)
        assert_error(await sign_in(client, email, PASSWORD), 429, "SignInLocked")
        frozen.tick(2)  # the first lockout lasts one minute
        ok = await sign_in(client, email, PASSWORD)
        assert ok.status_code == 200, ok.text
        row = await account_row(session, settings, email)
        assert (row.failures, row.lockouts, row.locked_until) == (0, 0, None)  # reset

        # after the reset the account has its five tries again, and a first lockout of 1 min
        for _ in range(4):
            assert_error(await sign_in(client, email, WRONG), 401, "BadCredentials")
        assert (await sign_in(client, email, PASSWORD)).status_code == 200


async def test_lockouts_double_up_to_the_cap(app, client, org, settings):
    app.state.settings = make_settings(signin_lockout_max_seconds=200, signin_failures_per_ip=99)
    email = org.staff["marketer"].email
    with clock.frozen(T0) as frozen:
        for expected in (60, 120, 200, 200):
            for _ in range(5):
                assert_error(await sign_in(client, email, WRONG), 401, "BadCredentials")
            assert_error(await sign_in(client, email, PASSWORD), 429, "SignInLocked")
            wait = int((await sign_in(client, email, WRONG)).headers["retry-after"])
            assert wait == expected
            frozen.tick(expected - 1)
            assert_error(await sign_in(client, email, PASSWORD), 429, "SignInLocked")
            frozen.tick(2)


async def test_an_unknown_email_is_locked_like_a_real_one(client, org):
    """A lockout does not tell an outsider which addresses are staff accounts."""
    with clock.frozen(T0):
        for email in ("nobody@example.com", org.staff["cashier"].email):
            answers = [(await sign_in(client, email, WRONG)).status_code for _ in range(6)]
            assert answers == [401] * 5 + [429], email


async def test_the_client_address_is_limited_across_accounts(app, session, settings):
    """Four guesses at each of many accounts never lock an account, but do lock the address."""
    emails = []
    for role in [Role.marketer] * 6:
        staff, _ = await make_staff(session, settings, role)
        emails.append(staff.email)
    await session.commit()
    async with client_at(app, "198.51.100.20") as guesser, client_at(app, "198.51.100.21") as other:
        with clock.frozen(T0):
            answers = []
            for email in emails:
                for _ in range(4):
                    answers.append((await sign_in(guesser, email, WRONG)).status_code)
            assert answers == [401] * 20 + [429] * 4
            r = await sign_in(guesser, emails[-1], PASSWORD)
            assert_error(r, 429, "SignInLocked")
            assert int(r.headers["retry-after"]) >= 59
            # the accounts themselves are not locked: the owner elsewhere signs in
            assert (await sign_in(other, emails[0], PASSWORD)).status_code == 200


async def test_a_right_password_gives_the_address_its_try_back(app, org):
    async with client_at(app, "198.51.100.30") as office:
        with clock.frozen(T0):
            for _ in range(60):  # a busy shop: sixty good sign-ins from one address
                assert (
                    await sign_in(office, org.staff["cashier"].email, PASSWORD)
                ).status_code == (200)
            assert_error(
                await sign_in(office, org.staff["admin"].email, WRONG), 401, "BadCredentials"
            )


async def test_failed_attempts_are_logged_without_the_password_or_the_full_email(
    client, org, caplog
):
    email = org.staff["admin"].email
    secret_guess = "Guess-Nobody-Should-Log-42"
    with caplog.at_level(logging.INFO, logger="loyalty"), clock.frozen(T0):
        for _ in range(6):
            await sign_in(client, email, secret_guess)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("loyalty")]
    failed = [line for line in lines if "staff sign-in failed" in line]
    refused = [line for line in lines if "staff sign-in refused" in line]
    assert len(failed) == 5 and len(refused) == 1, lines
    assert "now locked out" in failed[-1]
    for line in lines:
        assert secret_guess not in line
        assert email not in line  # only a hint of it
    assert signin.email_hint(email) in failed[0]
    assert "203.0.113.7" in failed[0]  # the client address is logged


async def test_the_console_form_is_throttled_with_a_plain_message(console_for, org, client):  # noqa: F811
    """The console shares the counter with the API: 3 wrong there + 2 here lock both."""
    email = org.staff["store_manager"].email
    console: Console = await console_for(None)
    with clock.frozen(T0) as frozen:
        await console.get("/login")
        for _ in range(3):
            assert_error(await sign_in(client, email, WRONG), 401, "BadCredentials")
        for _ in range(2):
            r = await console.post("/login", {"email": email, "password": WRONG})
            assert r.status_code == 401 and "Incorrect e-mail or password" in r.text
        r = await console.post("/login", {"email": email, "password": PASSWORD})
        assert r.status_code == 429
        assert "Too many failed sign-ins" in r.text and "1 minute" in r.text
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "loyalty_console=" not in r.headers.get("set-cookie", "")
        assert_error(await sign_in(client, email, PASSWORD), 429, "SignInLocked")
        frozen.tick(61)
        r = await console.post("/login", {"email": email, "password": PASSWORD})
        assert r.status_code == 303


# --- parallel guessing on PostgreSQL -----------------------------------------------------------


IPS = ["192.0.2.40", "192.0.2.41"]


@dataclass
class Committed:
    app: object
    maker: async_sessionmaker[AsyncSession]
    settings: Settings
    emails: list[str]


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[Committed]:
    """The app on its real sessionmaker (every request commits); its staff and throttle rows
    are removed afterwards."""
    settings = make_settings()
    app = create_app(settings, engine=engine)
    maker = make_sessionmaker(engine)
    emails: list[str] = []
    async with maker() as s:
        for _ in range(11):
            staff, _ = await make_staff(s, settings, Role.marketer)
            emails.append(staff.email)
        await s.commit()
    try:
        yield Committed(app, maker, settings, emails)
    finally:
        accounts = [
            security.keyed_digest(settings.secret_key, f"staff-signin:{email}") for email in emails
        ]
        async with maker() as s:
            await s.execute(delete(Staff).where(Staff.email.in_(emails)))
            await s.execute(delete(AuthThrottle).where(AuthThrottle.key.in_([*accounts, *IPS])))
            await s.commit()


async def _guess_all(app, ip: str, tries: list[tuple[str, str]]) -> list[httpx.Response]:  # type: ignore[no-untyped-def]
    """Each guess on its own client (its own connection to the app), all at once."""
    clients = [client_at(app, ip) for _ in tries]
    try:
        return list(
            await asyncio.gather(
                *(
                    sign_in(c, email, password)
                    for c, (email, password) in zip(clients, tries, strict=True)
                )
            )
        )
    finally:
        for c in clients:
            await c.aclose()


@postgres_only
async def test_sixty_parallel_guesses_get_exactly_five_password_checks(committed: Committed):
    email = committed.emails[0]
    answers = await _guess_all(
        committed.app, IPS[0], [(email, f"{WRONG}-{i}") for i in range(59)] + [(email, PASSWORD)]
    )
    statuses = Counter((r.status_code, r.json().get("error")) for r in answers)
    checked = statuses[(401, "BadCredentials")] + statuses[(200, None)]
    assert checked == 5, statuses  # exactly the account's limit reached argon2
    assert statuses[(429, "SignInLocked")] == 55, statuses
    async with committed.maker() as s:
        row = await account_row(s, committed.settings, email)
    if statuses[(200, None)]:  # the right one happened to be among the five: counter reset
        assert (row.failures, row.lockouts) == (0, 0)
    else:
        assert row.lockouts == 1 and row.locked_until is not None


@postgres_only
async def test_parallel_guesses_across_accounts_hit_the_address_limit_exactly(
    committed: Committed,
):
    tries = [(email, WRONG) for email in committed.emails[1:11] for _ in range(4)]  # 40
    answers = await _guess_all(committed.app, IPS[1], tries)
    statuses = Counter((r.status_code, r.json().get("error")) for r in answers)
    assert statuses == {(401, "BadCredentials"): 20, (429, "SignInLocked"): 20}, statuses


async def test_housekeeping_forgets_quiet_keys_but_not_running_lockouts(session):
    from api.core import throttle

    now = clock.now()
    session.add_all(
        [
            AuthThrottle(
                scope="t", key="quiet", failures=2, lockouts=0, updated_at=now - timedelta(days=8)
            ),
            AuthThrottle(
                scope="t",
                key="locked",
                failures=0,
                lockouts=9,
                locked_until=now + timedelta(hours=1),
                updated_at=now - timedelta(days=8),
            ),
            AuthThrottle(scope="t", key="recent", failures=1, lockouts=0, updated_at=now),
        ]
    )
    await session.flush()
    assert await throttle.prune(session) == 1
    keys = (
        await session.execute(select(AuthThrottle.key).where(AuthThrottle.scope == "t"))
    ).scalars()
    assert sorted(keys) == ["locked", "recent"]
