"""POST /v1/pos/identify and till tokens: rotating codes (±1 step, once each), card, phone,
plate; forged, expired and replayed codes; per-terminal failure limit; blocked members."""

import asyncio
from datetime import UTC, datetime, timedelta

import jwt
import pyotp
import pytest
from sqlalchemy import delete, func, select

from api.core import clock, security
from api.core.models import RateHit
from api.members import cards, identity
from api.members import service as members_service
from api.members.exceptions import CodeExpired, CodeForged, CodeReplayed, MemberBlocked
from api.members.models import Member, UsedCardCode
from api.org import service as org_service
from tests import factories
from tests.conftest import make_settings

T0 = datetime(2026, 3, 4, 10, 0, 5, tzinfo=UTC)  # 5 s into a 30 s step
IDENTIFY = "/v1/pos/identify"
PLATE = "沪A12345"


@pytest.fixture
async def tills(session) -> tuple[factories.Till, factories.Till]:
    """Two terminals in two stores (no staff: make_org's password hashing is slow)."""
    here, there = await factories.make_till(session), await factories.make_till(session)
    await session.commit()
    return here, there


@pytest.fixture
def till(tills) -> dict[str, str]:
    return tills[0].headers


@pytest.fixture
def other_till(tills) -> dict[str, str]:
    return tills[1].headers


@pytest.fixture
def tid(tills) -> int:
    return tills[0].terminal_id


@pytest.fixture
async def member(session, settings, tills) -> Member:
    built = await factories.make_member(
        session, settings, store=tills[0].store, name="王小明", plate=PLATE
    )
    await session.commit()
    return built


def rotating(member: Member, settings, at: datetime) -> str:
    """The payload the app shows at `at`, computed independently with pyotp."""
    totp = pyotp.TOTP(
        member.totp_secret, digits=settings.totp_digits, interval=settings.totp_period
    )
    return f"LY1.{member.card_number}.{totp.at(at)}"


def forged_code(member: Member, settings, at: datetime) -> str:
    """A well-formed code that matches none of this member's steps in the last 25 hours."""
    good = int(rotating(member, settings, at).rsplit(".", 1)[1])
    for delta in range(1, 100):
        candidate = f"{(good + delta) % 10**settings.totp_digits:0{settings.totp_digits}d}"
        hit = cards.matching_step(
            member.totp_secret,
            candidate,
            at,
            period=settings.totp_period,
            digits=settings.totp_digits,
            back=3000,
            forward=5,
        )
        if hit is None:
            return f"LY1.{member.card_number}.{candidate}"
    raise AssertionError("no forged code found")


async def identify(client, headers, code: str, **extra_headers: str):
    return await client.post(IDENTIFY, json={"code": code}, headers={**headers, **extra_headers})


# ---------------------------------------------------------------- rotating codes


async def test_fresh_rotating_code_can_redeem(client, settings, member, till):
    with clock.frozen(T0):
        r = await identify(client, till, rotating(member, settings, T0))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["member_id"] == member.id
    assert body["can_redeem"] is True
    assert body["method"] == "rotating"
    assert body["till_token"] and body["till_token_expires_in"] == settings.till_token_seconds
    assert (body["balance"]["available"], body["balance"]["pending"]) == (0, 0)
    assert "tier" in body
    assert body["display_name"] == members_service.display_name(member)


async def test_same_code_twice_is_a_replay(client, settings, member, till, other_till):
    code = rotating(member, settings, T0)
    with clock.frozen(T0) as frozen:
        assert (await identify(client, till, code)).status_code == 200
        again = await identify(client, till, code)
        elsewhere = await identify(client, other_till, code)
        frozen.tick(20)  # still inside the ±1 step window
        later = await identify(client, till, code)
    for r in (again, elsewhere, later):
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "CodeReplayed"
        assert r.json()["request_id"]


async def test_one_step_either_side_is_accepted_once_each(client, settings, member, till):
    codes = [rotating(member, settings, T0 + timedelta(seconds=30 * s)) for s in (-1, 0, 1)]
    assert len(set(codes)) == 3
    with clock.frozen(T0):
        for code in codes:
            r = await identify(client, till, code)
            assert r.status_code == 200, r.text
            assert (r.json()["can_redeem"], r.json()["method"]) == (True, "rotating")
        for code in codes:
            assert (await identify(client, till, code)).json()["error"] == "CodeReplayed"


async def test_old_codes_are_expired(client, settings, member, till):
    with clock.frozen(T0):
        for age_seconds in (60, 120, 121, 600, 3000):
            code = rotating(member, settings, T0 - timedelta(seconds=age_seconds))
            r = await identify(client, till, code)
            assert (r.status_code, r.json()["error"]) == (410, "CodeExpired"), age_seconds


async def test_code_expires_as_time_passes(client, settings, member, till):
    code = rotating(member, settings, T0)
    with clock.frozen(T0 + timedelta(minutes=2)):
        r = await identify(client, till, code)
    assert (r.status_code, r.json()["error"]) == (410, "CodeExpired")


async def test_code_from_two_steps_ahead_is_refused(client, settings, member, till):
    code = rotating(member, settings, T0 + timedelta(seconds=60))
    with clock.frozen(T0):
        r = await identify(client, till, code)
    assert (r.status_code, r.json()["error"]) == (422, "CodeForged")


async def test_wrong_code_is_forged(client, settings, member, till):
    with clock.frozen(T0):
        r = await identify(client, till, forged_code(member, settings, T0))
    assert (r.status_code, r.json()["error"]) == (422, "CodeForged")


async def test_code_of_wrong_length_is_forged(client, settings, member, till):
    good = rotating(member, settings, T0)
    with clock.frozen(T0):
        for bad in (good[:-2], good + "0"):
            r = await identify(client, till, bad)
            assert (r.status_code, r.json()["error"]) == (422, "CodeForged")


async def test_unknown_card_in_payload_is_forged(client, session, settings, member, till):
    unknown = cards.new_card_number(settings.card_prefix, settings.card_length)
    assert await members_service.find_by_card(session, unknown) is None
    code = rotating(member, settings, T0).rsplit(".", 1)[1]
    with clock.frozen(T0):
        r = await identify(client, till, f"LY1.{unknown}.{code}")
    assert (r.status_code, r.json()["error"]) == (422, "CodeForged")


async def test_another_members_code_on_this_card_is_forged(
    client, session, settings, member, till, tills
):
    other = await factories.make_member(session, settings, store=tills[0].store)
    await session.commit()
    other_code = rotating(other, settings, T0).rsplit(".", 1)[1]
    with clock.frozen(T0):
        r = await identify(client, till, f"LY1.{member.card_number}.{other_code}")
    assert (r.status_code, r.json()["error"]) == (422, "CodeForged")


async def test_odd_digits_are_refused_not_crashing(client, member, till):
    # str.isdigit() is true for all of these; int() or compare_digest used to blow up on them
    odd = ["LY1.8860²²²²²²²²²²²².12345678", "LY1.{card}.١٢٣٤٥٦٧٨", "8860²²²²²²²²²²²²", "８８６０"]
    for code in odd:
        r = await identify(client, till, code.format(card=member.card_number))
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"] in {"CodeForged", "CodeNotRecognised"}


async def test_failure_errors_have_distinct_names(client, settings, member, till):
    good = rotating(member, settings, T0)
    with clock.frozen(T0):
        await identify(client, till, good)
        results = {
            "replayed": await identify(client, till, good),
            "expired": await identify(
                client, till, rotating(member, settings, T0 - timedelta(minutes=3))
            ),
            "forged": await identify(client, till, forged_code(member, settings, T0)),
            "unknown": await identify(client, till, "no such thing"),
        }
    seen = {k: (r.status_code, r.json()["error"]) for k, r in results.items()}
    assert seen == {
        "replayed": (409, "CodeReplayed"),
        "expired": (410, "CodeExpired"),
        "forged": (422, "CodeForged"),
        "unknown": (404, "CodeNotRecognised"),
    }


# ---------------------------------------------------------------- static identifiers


async def test_card_number_identifies_without_redeeming(client, member, till):
    for typed in (member.card_number, f" {member.card_number}\n", member.card_number):
        r = await identify(client, till, typed)
        assert r.status_code == 200, r.text
        assert r.json()["member_id"] == member.id
        assert (r.json()["can_redeem"], r.json()["method"]) == (False, "card")


async def test_card_number_as_printed_in_groups(client, member, till):
    n = member.card_number
    for typed in (" ".join(n[i : i + 4] for i in range(0, len(n), 4)), f"{n[:8]}-{n[8:]}"):
        r = await identify(client, till, typed)
        assert r.status_code == 200, r.text
        assert (r.json()["member_id"], r.json()["method"]) == (member.id, "card")


def local_formats(e164: str) -> list[str]:
    national = e164.removeprefix("+86")
    return [
        e164,
        national,
        f"{national[:3]} {national[3:7]} {national[7:]}",
        f"{national[:3]}-{national[3:7]}-{national[7:]}",
        f"+86 {national[:3]} {national[3:7]} {national[7:]}",
        f"0086{national}",
        f"(+86) {national}",
        f"86{national}",
    ]


async def test_phone_in_any_local_format(client, member, till):
    for typed in local_formats(member.phone):
        r = await identify(client, till, typed)
        assert r.status_code == 200, (typed, r.text)
        assert r.json()["member_id"] == member.id
        assert (r.json()["can_redeem"], r.json()["method"]) == (False, "phone"), typed


async def test_plate_is_normalised(client, member, till):
    for typed in ("沪A12345", "沪a12345", "沪a·123 45", " 沪A-12345 ", "沪Ａ１２３４５"):
        r = await identify(client, till, typed)
        assert r.status_code == 200, (typed, r.text)
        assert r.json()["member_id"] == member.id
        assert (r.json()["can_redeem"], r.json()["method"]) == (False, "plate")


async def test_unknown_codes_are_not_recognised(client, settings, member, till):
    unknown_card = cards.new_card_number(settings.card_prefix, settings.card_length)
    for code in ("hello", "13900000000", "沪B99999", "x", "LY1", "8860000000000000", unknown_card):
        r = await identify(client, till, code)
        assert (r.status_code, r.json()["error"]) == (404, "CodeNotRecognised"), (code, r.text)


async def test_body_is_validated(client, till):
    for code in ("", "x" * 513):
        r = await identify(client, till, code)
        assert (r.status_code, r.json()["error"]) == (422, "ValidationError")


async def test_identify_needs_a_terminal_key(client, session, settings, member, tills):
    staff_token = security.encode_jwt(
        settings.secret_key, {"sub": "1", "typ": "staff"}, timedelta(minutes=5)
    )
    staff = {"Authorization": f"Bearer {staff_token}"}
    assert (await identify(client, {}, member.card_number)).status_code == 401
    assert (await identify(client, {"X-API-Key": "nope"}, member.card_number)).status_code == 401
    assert (await identify(client, staff, member.card_number)).status_code == 401  # not a till
    await org_service.revoke_terminal(session, tills[0].terminal_id)
    await session.commit()
    assert (await identify(client, tills[0].headers, member.card_number)).status_code == 401
    assert (await identify(client, tills[1].headers, member.card_number)).status_code == 200


async def used_codes_of(session, member: Member) -> int:
    stmt = select(func.count()).where(UsedCardCode.member_id == member.id)
    return (await session.execute(stmt)).scalar_one()


async def test_used_codes_are_pruned_only_once_long_expired(
    client, session, settings, member, till
):
    code = rotating(member, settings, T0)
    with clock.frozen(T0) as frozen:
        assert (await identify(client, till, code)).status_code == 200
        assert await used_codes_of(session, member) == 1
        frozen.tick(30 * 60)
        await identity.prune_used_codes(session)
        assert await used_codes_of(session, member) == 1
        frozen.tick(31 * 60)
        await identity.prune_used_codes(session)
        assert await used_codes_of(session, member) == 1  # kept as long as offline codes live
        frozen.set(T0 + identity.USED_CODES_KEPT + timedelta(minutes=1))
        await identity.prune_used_codes(session)
        assert await used_codes_of(session, member) == 0
        await session.commit()
        r = await identify(client, till, code)  # forgetting it never makes it valid again
    assert r.status_code in (410, 422) and r.json()["error"] in ("CodeExpired", "CodeForged")


# ---------------------------------------------------------------- retries


async def test_retry_with_the_same_idempotency_key_gets_the_first_answer(
    client, settings, member, till
):
    code = rotating(member, settings, T0)
    with clock.frozen(T0):
        first = await identify(client, till, code, **{"Idempotency-Key": "scan-1"})
        retry = await identify(client, till, code, **{"Idempotency-Key": "scan-1"})
        other_key = await identify(client, till, code, **{"Idempotency-Key": "scan-2"})
        other_body = await identify(
            client, till, member.card_number, **{"Idempotency-Key": "scan-1"}
        )
    assert first.status_code == 200 and retry.status_code == 200
    assert retry.json() == first.json()
    assert retry.headers.get("idempotent-replayed") == "true"
    assert other_key.json()["error"] == "CodeReplayed"
    assert (other_body.status_code, other_body.json()["error"]) == (422, "IdempotencyKeyReused")


# ---------------------------------------------------------------- failure limit


async def rate_hits(session, tid: int) -> int:
    stmt = select(func.count()).where(RateHit.bucket == "identify_fail", RateHit.key == str(tid))
    return (await session.execute(stmt)).scalar_one()


async def test_repeated_failures_lock_one_terminal_for_a_minute(
    client, session, settings, member, till, tid, other_till
):
    limit = settings.identify_failures_per_minute
    assert limit == 10
    good = rotating(member, settings, T0)
    with clock.frozen(T0) as frozen:
        assert (await identify(client, till, good)).status_code == 200  # successes don't count
        failures = [
            good,  # replayed
            rotating(member, settings, T0 - timedelta(minutes=5)),  # expired
            forged_code(member, settings, T0),  # forged
        ] + [f"nobody {i}" for i in range(limit - 3)]  # not recognised
        for code in failures:
            r = await identify(client, till, code)
            assert 400 <= r.status_code < 500 and r.status_code != 429, r.text
        # every failed request rolled back, yet its failure was recorded
        assert await rate_hits(session, tid) == limit

        fresh = rotating(member, settings, T0 + timedelta(seconds=30))
        locked = await identify(client, till, fresh)
        assert locked.status_code == 429, locked.text
        assert locked.json()["error"] == "TooManyRequests"
        assert int(locked.headers["retry-after"]) >= 1
        assert (await identify(client, till, member.card_number)).status_code == 429

        # another terminal of the same programme is unaffected
        r = await identify(client, other_till, fresh)
        assert r.status_code == 200 and r.json()["can_redeem"] is True

        frozen.tick(61)
        r = await identify(client, till, member.card_number)
        assert r.status_code == 200, r.text


async def test_failure_window_slides(client, session, settings, member, till):
    limit = settings.identify_failures_per_minute
    with clock.frozen(T0) as frozen:
        for i in range(limit - 1):
            assert (await identify(client, till, f"nobody {i}")).status_code == 404
        frozen.tick(45)
        assert (await identify(client, till, "nobody again")).status_code == 404
        assert (await identify(client, till, member.card_number)).status_code == 429
        frozen.tick(16)  # the first nine fell out of the window; one failure remains
        assert (await identify(client, till, member.card_number)).status_code == 200
        for i in range(limit - 1):
            assert (await identify(client, till, f"nobody {i}")).status_code == 404
        assert (await identify(client, till, member.card_number)).status_code == 429


async def test_many_successes_never_lock_the_terminal(client, settings, member, till):
    for _ in range(settings.identify_failures_per_minute + 1):
        assert (await identify(client, till, member.card_number)).status_code == 200


async def test_limit_follows_the_setting(app, client, member, till):
    app.state.settings = make_settings(identify_failures_per_minute=2)
    with clock.frozen(T0):
        for i in range(2):
            assert (await identify(client, till, f"nobody {i}")).status_code == 404
        assert (await identify(client, till, member.card_number)).status_code == 429


# ---------------------------------------------------------------- blocked members


async def block(session, member: Member) -> None:
    member.status = "blocked"
    await session.commit()


async def test_blocked_member_is_refused(client, session, settings, member, till):
    await block(session, member)
    with clock.frozen(T0):
        for code in (rotating(member, settings, T0), member.card_number, member.phone, PLATE):
            r = await identify(client, till, code)
            assert (r.status_code, r.json()["error"]) == (403, "MemberBlocked"), code


async def test_refusing_a_blocked_member_does_not_use_up_the_code(
    client, session, settings, member, till
):
    code = rotating(member, settings, T0)
    await block(session, member)
    with clock.frozen(T0):
        assert (await identify(client, till, code)).status_code == 403
        member.status = "active"
        await session.commit()
        r = await identify(client, till, code)
    assert r.status_code == 200 and r.json()["can_redeem"] is True


async def test_blocked_member_cannot_show_the_card(client, session, settings, member):
    headers = factories.member_headers(settings, member)
    assert (await client.get("/v1/me/card", headers=headers)).status_code == 200
    await block(session, member)
    r = await client.get("/v1/me/card", headers=headers)
    assert (r.status_code, r.json()["error"]) == (403, "MemberBlocked")


# ---------------------------------------------------------------- till tokens


async def scan(client, till, code: str) -> str:
    r = await identify(client, till, code)
    assert r.status_code == 200, r.text
    return r.json()["till_token"]


async def test_till_token_stands_for_the_scan_at_the_same_terminal(
    client, session, settings, member, till, tid
):
    with clock.frozen(T0):
        from_qr = await scan(client, till, rotating(member, settings, T0))
        from_card = await scan(client, till, member.card_number)
        for token, can_redeem in ((from_qr, True), (from_card, False)):
            found = await identity.resolve_member_code(
                session, settings=settings, terminal_id=tid, code=token
            )
            assert (found.member.id, found.can_redeem, found.method) == (
                member.id,
                can_redeem,
                "till_token",
            )
            # one scan serves the whole checkout: the token is not used up
            again = await identity.resolve_member_code(
                session, settings=settings, terminal_id=tid, code=token
            )
            assert again.member.id == member.id


async def test_till_token_from_another_terminal_is_forged(
    client, session, settings, member, till, tills
):
    with clock.frozen(T0):
        token = await scan(client, till, rotating(member, settings, T0))
        with pytest.raises(CodeForged):
            await identity.resolve_member_code(
                session, settings=settings, terminal_id=tills[1].terminal_id, code=token
            )


async def test_till_token_expires(client, session, settings, member, till, tid):
    lifetime = settings.till_token_seconds
    with clock.frozen(T0) as frozen:
        token = await scan(client, till, rotating(member, settings, T0))
        frozen.tick(lifetime - 1)
        found = await identity.resolve_member_code(
            session, settings=settings, terminal_id=tid, code=token
        )
        assert found.can_redeem is True
        frozen.tick(2)
        with pytest.raises(CodeExpired):
            await identity.resolve_member_code(
                session, settings=settings, terminal_id=tid, code=token
            )


def _tampered(token: str) -> str:
    header, claims, signature = token.split(".")
    return f"{header}.{claims}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"


async def test_tampered_or_foreign_tokens_are_forged(client, session, settings, member, till, tid):
    now = clock.now()
    with clock.frozen(now):
        token = await scan(client, till, member.card_number)
        raised_redeem = jwt.encode(
            {**jwt.decode(token, options={"verify_signature": False}), "red": True},
            "someone-elses-secret-key-0123456789",
            algorithm="HS256",
        )
        member_token = factories.member_headers(settings, member)["Authorization"].split()[1]
        other_secret = identity.issue_till_token(
            make_settings(secret_key="another-deployment-secret-key-0123456789"),
            terminal_id=tid,
            found=identity.Identified(member, True, "rotating"),
        )
        for bad in (_tampered(token), raised_redeem, member_token, other_secret):
            with pytest.raises(CodeForged):
                await identity.resolve_member_code(
                    session, settings=settings, terminal_id=tid, code=bad
                )


async def test_till_token_of_a_blocked_member_is_refused(
    client, session, settings, member, till, tid
):
    with clock.frozen(T0):
        token = await scan(client, till, rotating(member, settings, T0))
        await block(session, member)
        with pytest.raises(MemberBlocked):
            await identity.resolve_member_code(
                session, settings=settings, terminal_id=tid, code=token
            )


async def test_member_code_also_takes_a_payload_or_a_card(session, settings, member, tid):
    with clock.frozen(T0):
        code = rotating(member, settings, T0)
        found = await identity.resolve_member_code(
            session, settings=settings, terminal_id=tid, code=code
        )
        assert (found.member.id, found.can_redeem, found.method) == (member.id, True, "rotating")
        with pytest.raises(CodeReplayed):
            await identity.resolve_member_code(
                session, settings=settings, terminal_id=tid, code=code
            )
        found = await identity.resolve_member_code(
            session, settings=settings, terminal_id=tid, code=member.card_number
        )
        assert (found.can_redeem, found.method) == (False, "card")


async def test_till_token_claims_are_signed_and_short_lived(settings, member):
    with clock.frozen(T0):
        token = identity.issue_till_token(
            settings, terminal_id=7, found=identity.Identified(member, False, "card")
        )
        claims = security.decode_jwt(settings.secret_key, token, kind="till")
    assert claims is not None
    assert (claims["sub"], claims["term"], claims["red"]) == (str(member.id), 7, False)
    assert claims["exp"] - claims["iat"] == settings.till_token_seconds


# ---------------------------------------------------------------- what the cashier sees


@pytest.mark.parametrize(
    ("name", "phone"),
    [
        ("王小明", "+8613912345678"),
        ("欧阳娜娜", "+8613700001234"),
        ("Anna Smith", "+8618655559876"),
        ("李四", "+8615012340001"),
    ],
)
def test_display_name_masks_name_and_phone(name, phone):
    shown = members_service.display_name(Member(name=name, phone=phone))
    assert name not in shown
    assert all(part not in shown for part in [*name.split()[1:], name[1:]])
    assert phone[-4:] in shown
    assert phone[:-4] not in shown and phone.removeprefix("+86")[:-4] not in shown
    assert sum(ch.isdigit() for ch in shown) == 4


def test_display_name_without_a_name_shows_only_the_phone_end():
    shown = members_service.display_name(Member(name=None, phone="+8613912345678"))
    assert "5678" in shown and "1391234" not in shown
    assert sum(ch.isdigit() for ch in shown) == 4


async def test_identify_response_masks_the_member(client, member, till):
    shown = (await identify(client, till, member.card_number)).json()["display_name"]
    assert "小明" not in shown and member.name not in shown
    assert member.phone[-4:] in shown and member.phone[3:-4] not in shown


# ---------------------------------------------------------------- concurrency


async def test_two_tills_scanning_one_code_at_once_accept_it_once(engine, settings):
    """Real concurrent transactions (not the test's rolled-back one): only one can win."""
    from api.core.db import make_sessionmaker

    maker = make_sessionmaker(engine)
    async with maker() as s, s.begin():
        member = await factories.make_member(s, settings)
    try:
        code = rotating(member, settings, T0)

        async def attempt(terminal: int) -> str:
            try:
                async with maker() as s, s.begin():
                    await identity.identify(s, settings=settings, terminal_id=terminal, code=code)
                return "accepted"
            except CodeReplayed:
                return "replayed"

        with clock.frozen(T0):
            outcomes = await asyncio.gather(*(attempt(t) for t in range(1, 5)))
        assert sorted(outcomes) == ["accepted", "replayed", "replayed", "replayed"]
    finally:
        async with maker() as s, s.begin():
            await s.execute(delete(Member).where(Member.id == member.id))
