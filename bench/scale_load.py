"""Scale benchmark data: an organisation built through the services, then members, consents,
devices, accounts, purchases, purchase lines and the points ledger bulk-loaded with COPY.

The history is generated in time order (15-day slices), so ids and the physical order of
purchases, lines and ledger rows follow time as they do in production: a member's rows are
spread over the table, not clustered. Each member's points are simulated lot by lot (earn per
purchase, till redemptions burning the soonest-expiring lots first, expiry at month end 12
months on), so `loyalty ledger-check` holds. Lots are written when earned; the remainders that
later spends and expiries leave are applied by one UPDATE at the end, as the live system
updates lots in place.

Simplifications (documented in bench/scale.md): points are the base rate only (1 per 1.00,
no rule bonuses or tier multipliers), no returns, redemptions are ledger rows only (no
loyalty_redemption rows), 1-3 lines per supermarket receipt and 1-2 per fuel receipt.
"""

import asyncio
import base64
import bisect
import heapq
import random
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import demo_history
from api.core import clock
from api.core.config import Settings
from api.loyalty.program import service as program_service
from api.members import cards
from api.org import service as org_service
from api.org.models import Role, StoreKind
from api.org.schemas import RegionCreate, StaffCreate, StoreCreate
from api.push import campaigns as campaigns_service
from api.push.schemas import CampaignCreate

SEED = 20261123
HISTORY_DAYS = 730
SLICE_DAYS = 15
ANONYMOUS_SHARE = 0.08  # receipts without a member card
NEVER_BUY = 0.12  # members with no purchase at all
DRIFT = 0.25  # members who stop buying at some point (lapse, churn)
REDEEM_CHANCE = 0.10  # a purchase with enough points also redeems some
PROGRAM_UTC_OFFSET = 8 * 3600  # Asia/Shanghai, the programme zone (no DST)
TIERS = (("platinum", 1_000_000), ("gold", 300_000), ("silver", 0))

# (region, time zone, stores, share of fuel stations)
REGIONS = (
    ("华东 East China", "Asia/Shanghai", 40, 0.3),
    ("华南 South China", "Asia/Shanghai", 30, 0.4),
    ("华北 North China", "Asia/Shanghai", 30, 0.3),
    ("西北 Xinjiang", "Asia/Urumqi", 10, 0.5),
    ("港澳 Hong Kong", "Asia/Hong_Kong", 10, 0.2),
)
STAFFED_STORES = 5  # stores with a manager and a cashier (portfolios, lapse follow-up)

SHOP = (("drinks", "WATER-1L", 200, 600), ("snacks", "NUTS-200", 900, 2500))
FUEL = (("92#", 750), ("95#", 800), ("98#", 880))  # grade, price per litre (minor units)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋"
GIVEN = "伟强磊军勇杰涛明超辉刚鹏华飞斌宇浩俊芳娜敏静丽艳秀娟霞婷雪琳燕玲萍红颖倩欣怡"

MEMBER_COLUMNS = [
    "id", "phone", "card_number", "name", "gender", "birthday", "birth_month", "birth_day",
    "email", "home_store_id", "status", "enrolled_via", "totp_secret", "created_at", "updated_at",
]  # fmt: skip
CONSENT_COLUMNS = ["id", "member_id", "channel", "granted", "source", "updated_at"]
DEVICE_COLUMNS = [
    "id", "member_id", "token", "platform", "locale", "app_version", "active", "created_at",
    "updated_at",
]  # fmt: skip
ACCOUNT_COLUMNS = [
    "member_id", "available", "pending", "tier", "purchases", "last_purchase_at", "updated_at",
]  # fmt: skip
PURCHASE_COLUMNS = [
    "id", "store_id", "terminal_id", "receipt_no", "member_id", "occurred_at", "currency",
    "total", "returned_total", "points", "bonus_points", "points_reversed", "breakdown",
    "created_at",
]  # fmt: skip
LINE_COLUMNS = [
    "id", "purchase_id", "line_no", "sku", "category", "quantity", "amount", "fuel_grade",
    "volume_ml", "points", "returned_amount", "returned_quantity", "points_reversed",
]  # fmt: skip
LEDGER_COLUMNS = [
    "id", "member_id", "kind", "points", "remaining", "available_at", "matured", "expires_at",
    "source_type", "source_id", "store_id", "actor", "reason", "detail", "created_at",
]  # fmt: skip
LOT_USE_COLUMNS = ["id", "entry_id", "lot_id", "points"]

# Tables loaded by COPY: their secondary indexes and constraints are dropped before the load
# and rebuilt after it (as pg_restore does), which is what makes a bulk load fast.
BULK_TABLES = (
    "member",
    "member_consent",
    "push_device",
    "loyalty_account",
    "loyalty_purchase",
    "loyalty_purchase_line",
    "loyalty_ledger_entry",
    "loyalty_lot_use",
)
ID_TABLES = tuple(t for t in BULK_TABLES if t != "loyalty_account")


@dataclass
class Org:
    store_ids: list[int]
    terminal_of: dict[int, int]
    fuel: dict[int, bool]
    zone_of: dict[int, str]
    campaign_id: int


@dataclass
class LoadStats:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + n


async def build_org(maker: async_sessionmaker[AsyncSession], settings: Settings) -> Org:
    """Regions, stores (supermarkets and fuel stations in three zones), a terminal each, staff,
    the demo rules, tiers and rewards, and a scheduled birthday campaign: all through services."""
    async with maker() as session, session.begin():
        await program_service.get_program(session)
        await demo_history.configure(session)
        store_ids: list[int] = []
        terminal_of: dict[int, int] = {}
        fuel: dict[int, bool] = {}
        zone_of: dict[int, str] = {}
        for r, (name, zone, count, fuel_share) in enumerate(REGIONS):
            region = await org_service.create_region(session, data=RegionCreate(name=name))
            await session.flush()
            for s in range(count):
                is_fuel = s < round(count * fuel_share)
                store = await org_service.create_store(
                    session,
                    data=StoreCreate(
                        code=f"R{r}-{'FS' if is_fuel else 'SM'}{s:03d}",
                        name=f"{name} {'加油站' if is_fuel else '超市'} {s}",
                        region_id=region.id,
                        timezone=zone,
                        kind=StoreKind.fuel_station if is_fuel else StoreKind.supermarket,
                    ),
                )
                await session.flush()
                terminal, _key = await org_service.create_terminal(
                    session, store_id=store.id, name="till 1"
                )
                store_ids.append(store.id)
                terminal_of[store.id] = terminal.id
                fuel[store.id] = is_fuel
                zone_of[store.id] = zone
        staff = [(Role.admin, None), (Role.marketer, None)]
        for store_id in store_ids[:STAFFED_STORES]:
            staff += [(Role.store_manager, store_id), (Role.cashier, store_id)]
        for n, (role, store_id) in enumerate(staff):
            await org_service.create_staff(
                session,
                data=StaffCreate(
                    email=f"staff{n}@scale.bench",
                    password="scale-bench-password",
                    name=f"staff {n}",
                    role=role,
                    store_id=store_id,
                ),
            )
        campaign = await campaigns_service.create_campaign(
            session,
            data=CampaignCreate.model_validate(
                {
                    "name": "生日快乐 Birthday",
                    "kind": "birthday",
                    "audience": {},
                    "schedule": {"local_time": "09:00"},
                    "message": {"title": "Happy birthday, {name}!", "body": "200 points from us."},
                    "reward": {"points": 200},
                }
            ),
            staff_id=None,
        )
        await campaigns_service.schedule_campaign(session, campaign)
        return Org(store_ids, terminal_of, fuel, zone_of, campaign.id)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def drop_secondary(conn: asyncpg.Connection) -> list[str]:
    """Drop the FKs, unique constraints and secondary indexes of the bulk tables; returns the
    DDL that recreates them (indexes, then unique constraints, then FKs)."""
    tables = list(BULK_TABLES)
    constraints = await conn.fetch(
        "SELECT conrelid::regclass::text AS tbl, conname, contype::text AS contype,"
        " pg_get_constraintdef(oid) AS def"
        " FROM pg_constraint WHERE conrelid::regclass::text = ANY($1) AND contype IN ('u', 'f')",
        tables,
    )
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def"
        " FROM pg_index i WHERE i.indrelid::regclass::text = ANY($1) AND NOT i.indisprimary"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        tables,
    )
    for c in constraints:
        if c["contype"] == "f":
            await conn.execute(f'ALTER TABLE {c["tbl"]} DROP CONSTRAINT "{c["conname"]}"')
    for c in constraints:
        if c["contype"] == "u":
            await conn.execute(f'ALTER TABLE {c["tbl"]} DROP CONSTRAINT "{c["conname"]}"')
    for i in indexes:
        await conn.execute(f"DROP INDEX {i['name']}")
    recreate = [i["def"] for i in indexes]
    recreate += [
        f'ALTER TABLE {c["tbl"]} ADD CONSTRAINT "{c["conname"]}" {c["def"]}'
        for c in constraints
        if c["contype"] == "u"
    ]
    recreate += [
        f'ALTER TABLE {c["tbl"]} ADD CONSTRAINT "{c["conname"]}" {c["def"]}'
        for c in constraints
        if c["contype"] == "f"
    ]
    return recreate


async def rebuild(dsn: str, ddl: Sequence[str], workers: int = 2) -> None:
    """Run the recreate statements, indexes on `workers` connections in parallel."""
    index_ddl = [d for d in ddl if d.startswith("CREATE")]
    rest = [d for d in ddl if not d.startswith("CREATE")]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for d in index_ddl:
        queue.put_nowait(d)

    async def worker() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET maintenance_work_mem = '512MB'")
            while not queue.empty():
                await conn.execute(queue.get_nowait())
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(workers)))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for d in rest:
            await conn.execute(d)
    finally:
        await conn.close()


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _card_number(member_id: int, settings: Settings) -> str:
    body_len = settings.card_length - len(settings.card_prefix) - 1
    modulus = 10**body_len
    body = (member_id * 7_919_000_003 + 12_345) % modulus  # a bijection: unique, not sequential
    number = f"{settings.card_prefix}{body:0{body_len}d}"
    return number + cards.luhn_check_digit(number)


class Generator:
    """The whole data set, generated slice by slice from one seeded RNG."""

    def __init__(self, org: Org, settings: Settings, members: int, purchases: int, now: datetime):
        self.rng = random.Random(SEED)
        self.org = org
        self.settings = settings
        self.m = members
        self.now = now.timestamp()
        self.start = self.now - HISTORY_DAYS * 86400
        self.year_ago = self.now - 365 * 86400
        self.member_target = int(purchases * (1 - ANONYMOUS_SHARE))
        self.anonymous_target = purchases - self.member_target
        self.ids = {"purchase": 0, "line": 0, "ledger": 0, "lot_use": 0}
        # month boundaries in the programme zone, as UTC seconds (for lot expiry)
        self.month_starts: list[float] = []
        first = datetime.fromtimestamp(self.start - 62 * 86400, UTC).date().replace(day=1)
        for i in range(HISTORY_DAYS // 28 + 20):
            y, mo = divmod(first.month - 1 + i, 12)
            day = date(first.year + y, mo + 1, 1)
            midnight = datetime(day.year, day.month, 1, tzinfo=UTC).timestamp()
            self.month_starts.append(midnight - PROGRAM_UTC_OFFSET)
        heavy = [s for s in org.store_ids]
        weights = [self.rng.paretovariate(2.0) for _ in heavy]
        total = sum(weights)
        self.store_table = [
            s
            for s, w in zip(heavy, weights, strict=True)
            for _ in range(max(1, int(w / total * 2000)))
        ]

    # ---- members -------------------------------------------------------------------------

    def members(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Member, consent and device rows, and each member's purchase plan."""
        rng, settings = self.rng, self.settings
        rows, consents, devices = [], [], []
        self.home: list[int] = [0] * (self.m + 1)
        self.created: list[float] = [0.0] * (self.m + 1)
        weight_span: list[float] = [0.0] * (self.m + 1)
        self.window: list[tuple[float, float]] = [(0.0, 0.0)] * (self.m + 1)
        consent_id = device_id = 0
        now = self.now
        for i in range(1, self.m + 1):
            store = self.store_table[int(rng.random() * len(self.store_table))]
            created = now - 2190 * 86400 * rng.random() ** 1.4 - rng.random() * 86400
            self.home[i], self.created[i] = store, created
            at = _ts(created)
            born: date | None = None
            if rng.random() < 0.95:
                born = date(1950 + int(rng.random() * 57), 1, 1) + timedelta(
                    days=int(rng.random() * 365.25)
                )
            female = rng.random() < 0.55
            email = f"m{i}@scale.bench" if rng.random() < 0.2 else None
            name = SURNAMES[int(rng.random() * len(SURNAMES))] + GIVEN[
                int(rng.random() * len(GIVEN))
            ] * (1 + (rng.random() < 0.6))
            rows.append(
                (
                    i,
                    f"+86{13000000000 + i}",
                    _card_number(i, settings),
                    name,
                    "female" if female else "male",
                    born,
                    born.month if born else None,
                    born.day if born else None,
                    email,
                    store,
                    "active",
                    ("pos", "app", "staff")[int(rng.random() ** 0.7 * 3)],
                    base64.b32encode(i.to_bytes(20, "big")).decode(),
                    at,
                    at,
                )
            )
            for channel, chance in (("push", 0.8), ("sms", 0.45), ("email", 0.6 if email else 0)):
                consent_id += 1
                consents.append((consent_id, i, channel, rng.random() < chance, "import", at))
            if rng.random() < 0.45:
                device_id += 1
                android = rng.random() < 0.7
                devices.append(
                    (
                        device_id,
                        i,
                        f"bench-{i}-{rng.getrandbits(64):016x}",
                        "android" if android else "ios",
                        "zh-CN",
                        "3.2.1",
                        True,
                        at,
                        at,
                    )
                )
            # purchase plan: a Pareto weight over the member's active window
            first = max(created, self.start)
            if rng.random() < NEVER_BUY or first >= now - 86400:
                continue
            last = now
            if rng.random() < DRIFT:
                last = first + (now - first) * (0.2 + 0.7 * rng.random())
            self.window[i] = (first, last)
            weight_span[i] = min(rng.paretovariate(1.3), 60.0) * (last - first)
        scale = self.member_target / sum(weight_span)
        self.plan_n: list[int] = [0] * (self.m + 1)
        self.plan_step: list[float] = [0.0] * (self.m + 1)
        for i in range(1, self.m + 1):
            if weight_span[i]:
                want = weight_span[i] * scale
                n = int(want) + (rng.random() < want - int(want))
                first, last = self.window[i]
                n = min(n, int((last - first) / 3600) or 1)  # at most one receipt an hour
                self.plan_n[i] = n
                self.plan_step[i] = (last - first) / n if n else 0.0
        return rows, consents, devices

    # ---- history ---------------------------------------------------------------------------

    def _time_of(self, member: int, k: int) -> float:
        first, _ = self.window[member]
        return first + (k + 0.5 + 0.7 * (self.rng.random() - 0.5)) * self.plan_step[member]

    def _expires(self, at: float) -> float:
        month = bisect.bisect_right(self.month_starts, at) - 1
        return self.month_starts[month + 13]

    def history(self) -> Iterable[dict[str, list[tuple[Any, ...]]]]:
        """Slices of purchase, line, ledger, lot-use and lot-remainder rows, in time order."""
        rng = self.rng
        slice_s = SLICE_DAYS * 86400
        slices = int((self.now - self.start) // slice_s) + 1
        buckets: list[list[tuple[float, int, int]]] = [[] for _ in range(slices + 1)]
        for i in range(1, self.m + 1):
            if self.plan_n[i]:
                t = self._time_of(i, 0)
                buckets[int((t - self.start) // slice_s)].append((t, i, 0))
        self.lots: dict[int, deque[list[Any]]] = {}
        self.available = [0] * (self.m + 1)
        self.count = [0] * (self.m + 1)
        self.last = [0.0] * (self.m + 1)
        self.spend_year = [0] * (self.m + 1)
        anonymous_per_slice = self.anonymous_target / ((self.now - self.start) / slice_s)
        for s in range(slices):
            events = buckets[s]
            buckets[s] = []
            lo = self.start + s * slice_s
            hi = min(lo + slice_s, self.now)
            want = anonymous_per_slice * (hi - lo) / slice_s
            n_anonymous = int(want) + (rng.random() < want - int(want))
            events.extend((lo + rng.random() * (hi - lo), 0, 0) for _ in range(n_anonymous))
            heapq.heapify(events)  # a member's next purchase may fall in this same slice
            out: dict[str, list[tuple[Any, ...]]] = {
                "purchase": [],
                "line": [],
                "ledger": [],
                "lot_use": [],
                "remaining": [],
            }
            while events:
                t, member, k = heapq.heappop(events)
                if t >= self.now:
                    continue
                self._purchase(out, t, member)
                if member and k + 1 < self.plan_n[member]:
                    nxt = max(self._time_of(member, k + 1), t)
                    if nxt < hi:
                        heapq.heappush(events, (nxt, member, k + 1))
                    elif nxt < self.now:
                        buckets[int((nxt - self.start) // slice_s)].append((nxt, member, k + 1))
            yield out
        out = {"purchase": [], "line": [], "ledger": [], "lot_use": [], "remaining": []}
        for member, lots in self.lots.items():
            self._expire(out, member, self.now)
            for lot in lots:
                if lot[1] != lot[3]:
                    out["remaining"].append((lot[0], lot[1]))
        yield out

    def _next(self, name: str) -> int:
        self.ids[name] += 1
        return self.ids[name]

    def _lines(self, out: dict[str, list[tuple[Any, ...]]], pid: int, fuel: bool) -> int:
        rng = self.rng
        lines = out["line"]
        total = 0
        no = 0
        if fuel:
            grade, price = FUEL[int(rng.random() ** 1.5 * 3)]
            volume = 20_000 + int(rng.random() * 40_000)
            amount = volume * price // 1000
            no += 1
            lines.append(
                (self._next("line"), pid, no, f"FUEL-{grade[:2]}", "fuel",
                 Decimal(volume) / 1000, amount, grade, volume, amount // 100, 0, Decimal(0), 0)
            )  # fmt: skip
            total += amount
            extra = 1 if rng.random() < 0.25 else 0
            pool = SHOP
        else:
            extra = 1 + int(rng.random() * 3)
            pool = demo_history.GROCERY
        for _ in range(extra):
            category, sku, low, high = pool[int(rng.random() * len(pool))]
            qty = 1 + (rng.random() < 0.3)
            amount = qty * (low + int(rng.random() * (high - low)))
            no += 1
            lines.append(
                (self._next("line"), pid, no, sku, category, Decimal(qty), amount, None, None,
                 amount // 100, 0, Decimal(0), 0)
            )  # fmt: skip
            total += amount
        return total

    def _burn(
        self,
        out: dict[str, list[tuple[Any, ...]]],
        member: int,
        entry_id: int,
        points: int,
        until: float | None = None,
    ) -> None:
        lots = self.lots[member]
        while points > 0 and lots:
            lot = lots[0]
            if until is not None and lot[2] > until:
                break
            used = min(points, lot[1])
            lot[1] -= used
            points -= used
            out["lot_use"].append((self._next("lot_use"), entry_id, lot[0], used))
            if lot[1] == 0:
                out["remaining"].append((lot[0], 0))
                lots.popleft()

    def _expire(self, out: dict[str, list[tuple[Any, ...]]], member: int, t: float) -> None:
        lots = self.lots.get(member)
        while lots and lots[0][2] <= t:
            lot = lots[0]
            entry_id = self._next("ledger")
            at = _ts(lot[2])
            out["ledger"].append(
                (entry_id, member, "expire", -lot[1], 0, None, True, None, "expiry", lot[0],
                 lot[4], "system", "points expired", None, at)
            )  # fmt: skip
            self.available[member] -= lot[1]
            out["lot_use"].append((self._next("lot_use"), entry_id, lot[0], lot[1]))
            out["remaining"].append((lot[0], 0))
            lots.popleft()

    def _purchase(self, out: dict[str, list[tuple[Any, ...]]], t: float, member: int) -> None:
        rng = self.rng
        if member and rng.random() < 0.85:
            store = self.home[member]
        else:
            store = self.store_table[int(rng.random() * len(self.store_table))]
        pid = self._next("purchase")
        total = self._lines(out, pid, self.org.fuel[store])
        points = total // 100 if member else 0
        at = _ts(t)
        terminal = self.org.terminal_of[store]
        breakdown = f'[{{"line_no": null, "rule": "base", "points": {points}}}]'
        out["purchase"].append(
            (pid, store, terminal, str(pid), member or None, at, "CNY", total, 0, points, 0, 0,
             breakdown if member else None, at)
        )  # fmt: skip
        if not member:
            return
        self._expire(out, member, t)
        self.count[member] += 1
        self.last[member] = t
        if t >= self.year_ago:
            self.spend_year[member] += total
        if points <= 0:
            return
        lot_id = self._next("ledger")
        expires = self._expires(t)
        detail = (
            f'{{"receipt_no": "{pid}", "breakdown": {breakdown}, "rules": {{}}, '
            '"program_version": 1}'
        )
        out["ledger"].append(
            (lot_id, member, "earn", points, points, at, True, _ts(expires), "purchase", pid,
             store, f"terminal:{terminal}", f"receipt {pid}", detail, at)
        )  # fmt: skip
        self.lots.setdefault(member, deque()).append([lot_id, points, expires, points, store])
        self.available[member] += points
        if self.available[member] >= 2000 and rng.random() < REDEEM_CHANCE:
            spend = 100 * (
                10 + int(rng.random() * (min(self.available[member], 20_000) // 100 - 9))
            )
            entry_id = self._next("ledger")
            spent_at = _ts(t + 30)
            out["ledger"].append(
                (entry_id, member, "reserve", -spend, 0, None, True, None, "redemption",
                 None, store, f"terminal:{terminal}", "points redeemed at the till", None,
                 spent_at)
            )  # fmt: skip
            self.available[member] -= spend
            self._burn(out, member, entry_id, spend)

    def accounts(self) -> list[tuple[Any, ...]]:
        rows = []
        now = _ts(self.now)
        for i in range(1, self.m + 1):
            spend = self.spend_year[i]
            tier = next(code for code, floor in TIERS if spend >= floor)
            rows.append(
                (
                    i,
                    self.available[i],
                    0,
                    tier,
                    self.count[i],
                    _ts(self.last[i]) if self.count[i] else None,
                    now,
                )
            )
        return rows


async def copy(
    conn: asyncpg.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=columns)


async def load(
    url: str, org: Org, settings: Settings, *, members: int, purchases: int, log: Any
) -> LoadStats:
    """Generate and COPY everything; secondary indexes are rebuilt at the end."""
    stats = LoadStats()
    dsn = asyncpg_dsn(url)
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    main = conns[0]
    try:
        started = time.perf_counter()
        recreate = await drop_secondary(main)
        gen = Generator(org, settings, members, purchases, clock.now())

        t0 = time.perf_counter()
        member_rows, consent_rows, device_rows = gen.members()
        await asyncio.gather(
            copy(conns[0], "member", MEMBER_COLUMNS, member_rows),
            copy(conns[1], "member_consent", CONSENT_COLUMNS, consent_rows),
            copy(conns[2], "push_device", DEVICE_COLUMNS, device_rows),
        )
        stats.add("member", len(member_rows))
        stats.add("member_consent", len(consent_rows))
        stats.add("push_device", len(device_rows))
        del member_rows, consent_rows, device_rows
        stats.seconds["members"] = time.perf_counter() - t0
        log(f"members: {stats.rows['member']:,} in {stats.seconds['members']:.1f} s")

        t0 = time.perf_counter()
        await main.execute(
            "CREATE TEMP TABLE lot_remaining (id bigint PRIMARY KEY, remaining bigint)"
        )
        tables = {
            "purchase": ("loyalty_purchase", PURCHASE_COLUMNS, conns[1]),
            "line": ("loyalty_purchase_line", LINE_COLUMNS, conns[2]),
            "ledger": ("loyalty_ledger_entry", LEDGER_COLUMNS, conns[3]),
            "lot_use": ("loyalty_lot_use", LOT_USE_COLUMNS, conns[0]),
        }
        done = 0
        for part in gen.history():
            # a lot is finished at most once, but a partly used lot reappears at the end
            remaining = list(dict(part["remaining"]).items())
            await asyncio.gather(
                *(
                    copy(conn, table, cols, part[key])
                    for key, (table, cols, conn) in tables.items()
                ),
            )
            if remaining:
                await _upsert_remaining(main, remaining)
            for key, (table, _, _) in tables.items():
                stats.add(table, len(part[key]))
            done += len(part["purchase"])
            if done and len(part["purchase"]):
                elapsed = time.perf_counter() - t0
                log(f"  history: {done:,} purchases, {elapsed:.0f} s", end="\r")
        log("")
        stats.seconds["history"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        account_rows = gen.accounts()
        await copy(main, "loyalty_account", ACCOUNT_COLUMNS, account_rows)
        stats.add("loyalty_account", len(account_rows))
        del account_rows
        stats.seconds["accounts"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        status = await main.execute(
            "UPDATE loyalty_ledger_entry e SET remaining = r.remaining FROM lot_remaining r"
            " WHERE e.id = r.id"
        )
        stats.rows["lots_updated"] = int(status.split()[-1])
        stats.seconds["lot_update"] = time.perf_counter() - t0
        stats.seconds["copy_total"] = time.perf_counter() - started

        t0 = time.perf_counter()
        await rebuild(dsn, recreate)
        stats.seconds["indexes"] = time.perf_counter() - t0
        for table in ID_TABLES:
            await main.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT COALESCE(max(id), 1) FROM {table}))"
            )
        t0 = time.perf_counter()
        for table in BULK_TABLES:
            await main.execute(f"VACUUM (ANALYZE) {table}")
        stats.seconds["vacuum_analyze"] = time.perf_counter() - t0
        stats.seconds["total"] = time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()
    return stats


async def _upsert_remaining(conn: asyncpg.Connection, rows: list[tuple[int, int]]) -> None:
    """Stage the slice's lot remainders and merge them into lot_remaining (a later value wins)."""
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS lot_stage (id bigint, remaining bigint)")
    await conn.execute("TRUNCATE lot_stage")
    await conn.copy_records_to_table("lot_stage", records=rows, columns=["id", "remaining"])
    await conn.execute(
        "INSERT INTO lot_remaining SELECT id, remaining FROM lot_stage"
        " ON CONFLICT (id) DO UPDATE SET remaining = EXCLUDED.remaining"
    )
