"""QR card: render per second and identify per second, each against a bare baseline.

Render (no database): the service behind GET /v1/me/card/qr.png and .svg — identity.card_view
(the member's current TOTP) then qr.render (off the event loop, as the endpoint awaits it) —
against a bare `qrcode.make(payload)` saved to PNG / SVG path image of the same payloads. Each
call renders another member's payload (the first fetch of a step: no cache can help), and a
second table shows the same member fetching again within the step. A sample of the rendered
PNGs is decoded with zxing-cpp and must give back the payload.

Identify (PostgreSQL): the service behind POST /v1/pos/identify with a fresh rotating code of
another member each call (rate-limit check, member by card, ±1 step TOTP, the used-code row),
one transaction per call, in-process and over HTTP (httpx → ASGI app, terminal API key) —
against a bare SELECT of the member by card number, one transaction per call.

`python -m bench qr -- [--members N] [--calls N] [--repeat R]`
"""

import argparse
import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import qrcode
import qrcode.image.svg
import zxingcpp
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core import clock
from api.core.config import Settings
from api.core.db import make_engine, make_sessionmaker
from api.main import create_app
from api.members import cards, identity, qr
from api.members.models import Member
from api.org import service as org_service
from bench import _common as common


def _code(s: Settings, member: Member) -> str:
    now = clock.now()
    code = cards.current_code(member.totp_secret, now, period=s.totp_period, digits=s.totp_digits)
    return cards.payload(member.card_number, code)


def _bare_png(payload: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(payload).save(buffer, "PNG")
    return buffer.getvalue()


def _bare_svg(payload: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(payload, image_factory=qrcode.image.svg.SvgPathFillImage).save(buffer)
    return buffer.getvalue()


async def _rate(fn: Callable[[int], Awaitable[Any]], seconds: float, limit: int) -> float:
    """Calls of fn(i), i = 0, 1, … for `seconds` (at most `limit` calls), per second."""
    start = time.perf_counter()
    i = 0
    while i < limit:
        await fn(i)
        i += 1
        if time.perf_counter() - start >= seconds:
            break
    return i / (time.perf_counter() - start)


def _decodes(png: bytes, payload: str) -> bool:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return [b.text for b in found] == [payload]


async def _render(s: Settings, members: list[Member], args: argparse.Namespace) -> list[str]:
    payloads = [_code(s, m) for m in members]
    n = len(members)

    async def card_png(i: int) -> bytes:
        return await qr.render(identity.card_view(s, members[i % n]).code, "png")

    async def card_svg(i: int) -> bytes:
        return await qr.render(identity.card_view(s, members[i % n]).code, "svg")

    async def again_png(i: int) -> bytes:
        return await qr.render(identity.card_view(s, members[i // 2 % n]).code, "png")

    async def bare_png(i: int) -> bytes:
        return _bare_png(payloads[i % n])

    async def bare_svg(i: int) -> bytes:
        return _bare_svg(payloads[i % n])

    async def totp(i: int) -> str:
        return _code(s, members[i % n])

    sides = {
        "png: card service": card_png,
        "png: bare qrcode.make": bare_png,
        "svg: card service": card_svg,
        "svg: bare qrcode.make": bare_svg,
        "png: card service, each member twice": again_png,
        "TOTP payload alone": totp,
    }
    rates: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.repeat):
        for name, fn in sides.items():
            qr._rendered.clear()  # every measurement starts with no render cached
            rates[name].append(await _rate(fn, args.seconds, 10**9))
    med = {k: common.median(v) for k, v in rates.items()}
    print(
        common.table(
            ["render (per second)", "median", "runs"],
            [[k, med[k], " ".join(f"{r:,.0f}" for r in v)] for k, v in rates.items()],
        )
    )
    print(
        f"ratio card/bare: png {med['png: card service'] / med['png: bare qrcode.make']:.2f}"
        f"  svg {med['svg: card service'] / med['svg: bare qrcode.make']:.2f}"
        f"  (png, each member twice: "
        f"{med['png: card service, each member twice'] / med['png: bare qrcode.make']:.2f})"
        f"  load {common.load()}"
    )
    problems = []
    sample = members[: args.decode]
    for m in sample:
        card = identity.card_view(s, m)
        if not _decodes(await qr.render(card.code, "png"), card.code):
            problems.append(f"the PNG of {card.code} does not decode to it")
    print(
        f"zxing-cpp decodes {len(sample) - len(problems)} of {len(sample)} card PNGs to the payload"
    )
    return problems


async def _identify(
    s: Settings,
    maker: async_sessionmaker[AsyncSession],
    members: list[Member],
    terminal_id: int,
    api_key: str,
    args: argparse.Namespace,
) -> list[str]:
    unused = iter(members)  # a rotating code is accepted once: every call takes another member
    problems: list[str] = []

    async def service(i: int) -> None:
        member = next(unused)
        code = _code(s, member)
        async with maker() as session, session.begin():
            found = await identity.identify(session, settings=s, terminal_id=terminal_id, code=code)
        if found.member.id != member.id or not found.can_redeem:
            problems.append(f"identify gave {found} for member {member.id}")

    async def bare(i: int) -> None:
        member = members[i % len(members)]
        async with maker() as session, session.begin():
            stmt = select(Member).where(Member.card_number == member.card_number)
            assert (await session.execute(stmt)).scalar_one().id == member.id

    app = create_app(s)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            headers={"X-API-Key": api_key},
        ) as client,
    ):

        async def http(i: int) -> None:
            member = next(unused)
            response = await client.post("/v1/pos/identify", json={"code": _code(s, member)})
            if response.status_code != 200 or response.json()["member_id"] != member.id:
                problems.append(f"HTTP identify: {response.status_code} {response.text[:200]}")

        sides = {
            "identify service, in-process": service,
            "POST /v1/pos/identify over ASGI": http,
            "bare SELECT member by card": bare,
        }
        for fn in sides.values():  # warm: the app's first request, prepared statements
            for i in range(5):
                await fn(i)
        rates: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.repeat):
            for name, fn in sides.items():
                rates[name].append(await _rate(fn, args.seconds, args.calls))
    med = {k: common.median(v) for k, v in rates.items()}
    print(
        common.table(
            ["identify (per second)", "median", "runs"],
            [[k, med[k], " ".join(f"{r:,.0f}" for r in v)] for k, v in rates.items()],
        )
    )
    base = med["bare SELECT member by card"]
    print(
        f"ratio to the bare SELECT: service {med['identify service, in-process'] / base:.2f}"
        f"  HTTP {med['POST /v1/pos/identify over ASGI'] / base:.2f}  load {common.load()}"
    )
    return problems


async def _run(url: str, args: argparse.Namespace) -> None:
    s = common.settings(url)
    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    tag = common.run_tag()
    try:
        async with maker() as session, session.begin():
            org = await common.make_org(session, tag=tag)
            ids = await common.bulk_members(
                session, s, count=args.members, store_id=org.store.id, tag=tag, device=False
            )
            terminal, api_key = await org_service.create_terminal(
                session, store_id=org.store.id, name="Bench till"
            )
            members = list(
                (await session.execute(select(Member).where(Member.id.in_(ids)))).scalars()
            )
        await common.vacuum_analyze(maker, "member")
        print(f"setup: {len(members)} members, load {common.load()}", flush=True)
        problems = await _render(s, members, args)
        problems += await _identify(s, maker, members, terminal.id, api_key, args)
        print("checks: " + ("all passed" if not problems else "FAILED"))
        for p in problems[:10]:
            print("  " + p)
    finally:
        await engine.dispose()


def main(url: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench qr --")
    parser.add_argument("--members", type=int, default=5000, help="members with a card")
    parser.add_argument("--calls", type=int, default=600, help="identify calls per side and run")
    parser.add_argument("--seconds", type=float, default=2.0, help="per side and run, at most")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--decode", type=int, default=50, help="PNGs checked with zxing-cpp")
    args, _ = parser.parse_known_args(argv)
    if args.members < 2 * args.calls * args.repeat + 10:
        parser.error("--members must exceed 2 × --calls × --repeat (each code is used once)")
    common.migrate(url)
    asyncio.run(_run(url, args))
