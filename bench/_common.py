"""Shared by the benchmarks: settings, a migrated database, a small org, bulk members, timing
and a results table. Every figure a benchmark prints is a ratio of two timings taken side by
side in the same run, so the machine's load cancels out as far as it can."""

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, func, insert, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core import clock
from api.core.config import Settings
from api.core.db import UTCDateTime
from api.core.migrate import upgrade_head
from api.members import cards
from api.members.models import Member, MemberConsent
from api.org import service as org_service
from api.org.models import Region, Store
from api.org.schemas import RegionCreate, StoreCreate
from api.push.models import Device

BENCH_SECRET = "bench-only-secret-" + "x" * 40


def settings(url: str, **overrides: Any) -> Settings:
    """Settings for a benchmark on `url` (no .env, no quiet hours unless asked)."""
    values: dict[str, Any] = {
        "database_url": url,
        "env": "test",
        "secret_key": BENCH_SECRET,
        "log_level": "WARNING",
        "push_quiet_hours": "",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def migrate(url: str) -> None:
    """Bring the database to head (call before asyncio.run: Alembic runs its own loop)."""
    upgrade_head(url)


def load() -> str:
    """The 1/5/15-minute load average, to print beside figures from a shared machine."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_tag() -> str:
    """A short tag that keeps this run's names (store codes, phones) apart from other runs."""
    return uuid.uuid4().hex[:6]


@dataclass
class Org:
    region: Region
    store: Store


async def make_org(session: AsyncSession, *, tag: str, timezone: str = "Asia/Shanghai") -> Org:
    """One region with one supermarket, through the org service."""
    region = await org_service.create_region(session, data=RegionCreate(name=f"Bench {tag}"))
    store = await org_service.create_store(
        session,
        data=StoreCreate(
            code=f"B{tag}",
            name=f"Bench store {tag}",
            region_id=region.id,
            timezone=timezone,
            kind="supermarket",
        ),
    )
    await session.flush()
    return Org(region, store)


async def bulk_members(
    session: AsyncSession,
    s: Settings,
    *,
    count: int,
    store_id: int | None,
    tag: str,
    push: bool = True,
    device: bool = True,
    chunk: int = 5000,
) -> list[int]:
    """`count` members inserted in bulk (enrolment is one member at a time), each with a valid
    random card number and TOTP secret, push consent (granted or not) and, when asked, one
    active android device token `device_token(tag, member_id)`. Returns their ids."""
    if count >= 10**9:
        raise ValueError("at most 10^9 members per call")
    now = clock.now()
    phones = f"+86{int(tag, 16) % 1000:03d}"  # with 9 digits after it: 12 after +86, unique per tag
    ids: list[int] = []
    for start in range(0, count, chunk):
        rows = [
            {
                "phone": f"{phones}{i:09d}",
                "card_number": cards.new_card_number(s.card_prefix, s.card_length),
                "name": f"Member {i}",
                "home_store_id": store_id,
                "status": "active",
                "enrolled_via": "import",
                "totp_secret": cards.new_totp_secret(),
                "created_at": now,
                "updated_at": now,
            }
            for i in range(start, min(count, start + chunk))
        ]
        result = await session.execute(insert(Member).returning(Member.id), rows)
        ids.extend(result.scalars())
    ours = Member.phone.like(f"{phones}%")
    await session.execute(
        insert(MemberConsent).from_select(
            ["member_id", "channel", "granted", "source", "updated_at"],
            select(
                Member.id,
                literal("push"),
                literal(push),
                literal("import"),
                literal(now, UTCDateTime()),
            ).where(ours),
        )
    )
    if device:
        await session.execute(
            insert(Device).from_select(
                ["member_id", "token", "platform", "active", "created_at", "updated_at"],
                select(
                    Member.id,
                    func.concat(f"bench-{tag}-", cast(Member.id, String)),
                    literal("android"),
                    literal(True),
                    literal(now, UTCDateTime()),
                    literal(now, UTCDateTime()),
                ).where(ours),
            )
        )
    await session.flush()
    return sorted(ids)


async def vacuum_analyze(maker: async_sessionmaker[AsyncSession], *tables: str) -> None:
    """VACUUM ANALYZE the tables (all when none given), outside any transaction."""
    async with maker() as session:
        conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        await conn.execute(text(f"VACUUM ANALYZE {', '.join(tables)}"))


def device_token(tag: str, member_id: int) -> str:
    return f"bench-{tag}-{member_id}"


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed:` … `elapsed()` is the seconds since the block began
    (frozen when it ends)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rate_per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def throughput(fn: Callable[[], object], *, seconds: float = 1.0, min_calls: int = 20) -> float:
    """Calls of `fn` per second over at least `seconds` and `min_calls`."""
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= min_calls:
            return calls / elapsed


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; floats get 3 significant decimals."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in cells:
        out.append(
            "  ".join(
                v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(out)
