"""Till throughput: POST /v1/pos/purchases against a bare one-INSERT endpoint of the same app.

Both endpoints run in one uvicorn process with the same settings, database and pool; the bare
one parses the same receipt body and does a single INSERT in the request's transaction, so it is
the limit of this stack (HTTP server, FastAPI, pydantic, session, driver, PostgreSQL) on this
machine. The till endpoint identifies the member by a fresh rotating QR code and runs the real
rules (member day, tier multiplier, category multiplier, exclusion, birthday cap, welcome).

Figures: closed-loop throughput of each (C connections, as fast as they go) and their ratio,
then p50/p99 latency of each at a fixed open-loop rate of half the bare limit.
"""

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count

import asyncpg
from sqlalchemy import Integer, cast, func, insert, select, update

from api import demo_history
from api.core.db import make_engine, make_sessionmaker
from api.loyalty.ledger.models import Account
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import RuleCreate
from api.members import cards
from api.members.models import Member
from api.org import service as org_service
from bench._common import bulk_members, load, make_org, migrate, percentile, run_tag, settings
from bench.http import Client, free_port, wait_until_up

PERIOD, DIGITS = 30, 8
LINES = (
    ("fresh", "VEG-BOK", 1280),
    ("dairy", "MILK-1L", 1590),
    ("grocery", "RICE-5KG", 5990),
    ("tobacco", "CIG-20", 2500),
    ("household", "TISSUE-10", 2990),
)
RULES = (
    RuleCreate(
        code="no-tobacco",
        name="No points on tobacco",
        kind="exclude",
        params={"categories": ["tobacco"]},
    ),
    RuleCreate(
        code="fresh-x2",
        name="Fresh food x2",
        kind="multiplier",
        params={"categories": ["fresh"], "multiplier_percent": 200},
    ),
    RuleCreate(
        code="member-day",
        name="Member day x2 (every day during the benchmark)",
        kind="member_day",
        params={"rrule": "FREQ=DAILY", "multiplier_percent": 200},
    ),
    RuleCreate(
        code="birthday-month",
        name="Birthday month bonus",
        kind="birthday",
        params={"window": "month", "bonus_points": 200},
        caps={"year": 200},
    ),
    RuleCreate(code="welcome", name="First purchase bonus", kind="welcome", params={"points": 50}),
)


@dataclass
class Fixture:
    store_id: int
    api_key: str
    cards: list[tuple[str, str]]  # (card_number, totp secret)


async def _setup(url: str, members: int) -> Fixture:
    """Org, rules and tiers through the services; members in bulk with birthdays spread over
    the year (the birthday rule) and accounts spread over the tiers (the tier multiplier)."""
    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    async with maker() as session, session.begin():
        tag = run_tag()
        org = await make_org(session, tag=tag)
        _, api_key = await org_service.create_terminal(session, store_id=org.store.id, name="till")
        await program_service.replace_rules(session, wanted=list(RULES))
        await program_service.replace_tiers(session, data=demo_history.TIERS)
        ids = await bulk_members(
            session, settings(url), count=members, store_id=org.store.id, tag=tag, device=False
        )
        ours = Member.home_store_id == org.store.id  # the store is this run's own
        n = cast(Member.id, Integer)
        birthday = func.make_date(1970 + n % 40, 1 + n % 12, 1 + n % 28)
        await session.execute(update(Member).where(ours).values(birthday=birthday))
        await session.execute(
            update(Member)
            .where(ours)
            .values(
                birth_month=func.extract("month", Member.birthday),
                birth_day=func.extract("day", Member.birthday),
            )
        )
        tiers = ("silver", "gold", "platinum")
        accounts = [
            {"member_id": m, "available": 0, "pending": 0, "tier": tiers[m % 3]} for m in ids
        ]
        await session.execute(insert(Account), accounts)
        found = await session.execute(
            select(Member.card_number, Member.totp_secret).where(ours).order_by(Member.id)
        )
        fixture = Fixture(org.store.id, api_key, [(card, secret) for card, secret in found])
    await engine.dispose()
    return fixture


class Codes:
    """Fresh rotating payloads: each (member, step) once, steps within the server's ±1 window."""

    def __init__(self, members: list[tuple[str, str]]) -> None:
        self.members = members
        self.next_step = [0] * len(members)
        self.cursor = 0

    def next(self) -> str:
        for _ in range(len(self.members)):
            i = self.cursor
            self.cursor = (self.cursor + 1) % len(self.members)
            current = int(time.time()) // PERIOD
            # this step and the next: the server accepts ±1, so each stays valid >= 30 s
            step = max(current, self.next_step[i])
            if step > current + 1:
                continue
            self.next_step[i] = step + 1
            card, secret = self.members[i]
            at = datetime.fromtimestamp(step * PERIOD, UTC)
            return cards.payload(card, cards.current_code(secret, at, period=PERIOD, digits=DIGITS))
        raise RuntimeError("every member's codes for this window are used; add --members")


def _receipt(codes: Codes, receipt_no: str) -> bytes:
    lines = [
        {"line_no": n, "sku": sku, "category": cat, "quantity": "1", "amount": amount}
        for n, (cat, sku, amount) in enumerate(LINES, start=1)
    ]
    body = {
        "receipt_no": receipt_no,
        "member_code": codes.next(),
        "currency": "CNY",
        "total": sum(line["amount"] for line in lines),
        "lines": lines,
    }
    return json.dumps(body).encode()


def _serve(url: str, port: int, store_id: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LOYALTY_DATABASE_URL": url,
        "LOYALTY_ENV": "production",
        "LOYALTY_SECRET_KEY": secrets.token_urlsafe(32),
        "LOYALTY_LOG_LEVEL": "WARNING",
        "LOYALTY_BENCH_STORE_ID": str(store_id),
    }
    command = [sys.executable, "-m", "uvicorn", "bench.till_app:create", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    return subprocess.Popen([*command, "--log-level", "warning"], env=env)


class CpuMeter:
    """CPU seconds used by the server process and by this database's backends (from /proc):
    a cost per request that the other load on a shared machine barely moves."""

    def __init__(self, url: str, server_pid: int) -> None:
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        self.server_pid = server_pid

    @staticmethod
    def _ticks(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        return int(fields[11]) + int(fields[12])  # utime + stime

    async def read(self) -> tuple[float, dict[int, int]]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        tick = os.sysconf("SC_CLK_TCK")
        return self._ticks(self.server_pid) / tick, {r["pid"]: self._ticks(r["pid"]) for r in rows}

    @staticmethod
    def used(before: tuple[float, dict[int, int]], after: tuple[float, dict[int, int]]):
        tick = os.sysconf("SC_CLK_TCK")
        db = sum(t - before[1].get(pid, 0) for pid, t in after[1].items()) / tick
        return after[0] - before[0], db


@dataclass
class Run:
    done: int
    errors: dict[int, int]
    seconds: float
    latencies_ms: list[float]
    cpu_app_ms: float = 0.0
    cpu_db_ms: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


async def _closed_loop(
    port: int,
    path: str,
    headers: dict[str, str],
    make_body,
    connections: int,
    seconds: float,
    meter: CpuMeter | None = None,
) -> Run:
    clients = [await Client.connect("127.0.0.1", port) for _ in range(connections)]
    cpu_before = await meter.read() if meter else None
    deadline = time.perf_counter() + seconds
    errors: dict[int, int] = {}
    latencies: list[float] = []

    async def drive(client: Client) -> None:
        while time.perf_counter() < deadline:
            body = make_body()
            started = time.perf_counter()
            status, _ = await client.post(path, body, headers)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 201:
                errors[status] = errors.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(c) for c in clients))
    elapsed = time.perf_counter() - started
    run = Run(len(latencies) - sum(errors.values()), errors, elapsed, latencies)
    if meter and cpu_before and latencies:
        app, db = CpuMeter.used(cpu_before, await meter.read())
        run.cpu_app_ms, run.cpu_db_ms = app * 1000 / len(latencies), db * 1000 / len(latencies)
    for c in clients:
        c.close()
    return run


async def _open_loop(
    port: int, path: str, headers: dict[str, str], make_body, rate: float, seconds: float
) -> Run:
    """Requests sent on a fixed schedule; latency counts from the scheduled time."""
    pool: asyncio.Queue[Client] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await Client.connect("127.0.0.1", port))
    errors: dict[int, int] = {}
    latencies: list[float] = []
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def one(scheduled: float) -> None:
        client = await pool.get()
        status, _ = await client.post(path, make_body(), headers)
        latencies.append((time.perf_counter() - scheduled) * 1000)
        if status != 201:
            errors[status] = errors.get(status, 0) + 1
        pool.put_nowait(client)

    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return Run(len(latencies) - sum(errors.values()), errors, elapsed, latencies)


async def _bench(url: str, args: argparse.Namespace) -> None:
    fixture = await _setup(url, args.members)
    port = free_port()
    server = _serve(url, port, fixture.store_id)
    try:
        await wait_until_up("127.0.0.1", port, "/healthz")
        codes = Codes(fixture.cards)
        serial = count()
        run_id = secrets.token_hex(3)

        def till_body() -> bytes:
            return _receipt(codes, f"T{run_id}-{next(serial)}")

        def bare_body() -> bytes:
            return _receipt(codes, f"B{run_id}-{next(serial)}")

        till = ("/v1/pos/purchases", {"X-API-Key": fixture.api_key}, till_body)
        bare = ("/bench/bare", {}, bare_body)
        # warm both paths (connections, statement caches, JIT of the pure-Python parts)
        for path, headers, make in (till, bare):
            await _closed_loop(port, path, headers, make, args.connections, 2)

        meter = CpuMeter(url, server.pid)
        bare_runs, till_runs = [], []
        for _ in range(args.rounds):
            b = await _closed_loop(port, *bare, args.connections, args.seconds, meter)
            t = await _closed_loop(port, *till, args.connections, args.seconds, meter)
            for run in (b, t):
                if run.errors:
                    print(f"  errors: {run.errors}")
            bare_runs.append(b)
            till_runs.append(t)
            print(
                f"  round: bare {b.rate:7.1f}/s  till {t.rate:7.1f}/s  ratio {t.rate / b.rate:.2f}"
                f"  | CPU per request: bare {b.cpu_app_ms:.2f}+{b.cpu_db_ms:.2f} ms,"
                f" till {t.cpu_app_ms:.2f}+{t.cpu_db_ms:.2f} ms (app+db)"
            )
        bare_rate = statistics.median(r.rate for r in bare_runs)
        till_rate = statistics.median(r.rate for r in till_runs)
        bare_cpu = statistics.median(r.cpu_app_ms + r.cpu_db_ms for r in bare_runs)
        till_cpu = statistics.median(r.cpu_app_ms + r.cpu_db_ms for r in till_runs)
        half = bare_rate / 2
        b_lat = await _open_loop(port, *bare, half, args.seconds)
        t_lat = await _open_loop(port, *till, half, args.seconds)
        t_own = await _open_loop(port, *till, till_rate / 2, args.seconds)
        print(
            f"throughput (median of {args.rounds}, {args.connections} connections): "
            f"bare {bare_rate:.1f}/s, till {till_rate:.1f}/s, ratio {till_rate / bare_rate:.2f} "
            "(goal >= 0.6)"
        )
        print(
            f"CPU per request (app + database, median): bare {bare_cpu:.2f} ms, "
            f"till {till_cpu:.2f} ms, ratio {bare_cpu / till_cpu:.2f}"
        )
        for name, run in (("bare", b_lat), ("till", t_lat)):
            print(
                f"latency at {half:.0f}/s (half the bare limit), {name}: "
                f"p50 {run.pct(50):.1f} ms, p99 {run.pct(99):.1f} ms, "
                f"{run.done} ok, errors {run.errors or 0}"
            )
        print(
            f"latency at {till_rate / 2:.0f}/s (half the till's own limit), till: "
            f"p50 {t_own.pct(50):.1f} ms, p99 {t_own.pct(99):.1f} ms, {t_own.done} ok, "
            f"errors {t_own.errors or 0}"
        )
        print(f"load average: {load()}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(url: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench till")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    migrate(url)
    asyncio.run(_bench(url, parser.parse_args(argv)))
