"""Materialising a run: in ONE transaction, the run row, one delivery per targeted member
(the audience with its suppression reasons picked into a temporary table, then INSERT …
SELECT) and one rendered inbox item per delivery that is not held back (INSERT … SELECT).
That transaction is the outbox: the worker pushes only what it committed."""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    Select,
    String,
    case,
    cast,
    column,
    func,
    insert,
    literal,
    null,
    select,
    table,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from api.core.config import Settings
from api.core.db import UTCDateTime
from api.loyalty.ledger.models import Account
from api.loyalty.program.models import Tier
from api.members.models import Member
from api.push import audience, suppression
from api.push.models import Campaign, CampaignRun, Delivery, InboxItem
from api.push.schedule import Occurrence, quiet_until
from api.push.schemas import TRANSACTIONAL_KINDS

KNUTH = 2654435761
PICKED = table(
    "push_run_picked",
    *(column(c) for c in ("id", "reason", "held", "push_allowed", "not_before", "convert_until")),
)


class _CreateTempTableAs(Executable, ClauseElement):
    """CREATE TEMPORARY TABLE name AS <select> (PostgreSQL and SQLite); dropped by the caller,
    or with the savepoint it was made in."""

    inherit_cache = False

    def __init__(self, name: str, query: Select[Any]) -> None:
        self.name = name
        self.query = query


@compiles(_CreateTempTableAs)
def _create_temp_table_as(element: _CreateTempTableAs, compiler: Any, **kw: Any) -> str:
    return f"CREATE TEMPORARY TABLE {element.name} AS {compiler.process(element.query, **kw)}"


# multiplicative hash: spreads consecutive member ids over 0..2^32


@dataclass(frozen=True)
class Materialised:
    run: CampaignRun
    targeted: int


def holdout_seed(campaign_id: int, occurrence_key: str) -> int:
    digest = hashlib.sha256(f"{campaign_id}:{occurrence_key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (1 << 20)


def holdout_bucket(member_id: ColumnElement[int], seed: int) -> ColumnElement[int]:
    """0..99, a deterministic pseudo-random draw per (run, member), the same on both databases."""
    mixed = ((member_id + literal(seed, BigInteger)) * literal(KNUTH, BigInteger)) % literal(
        1 << 32, BigInteger
    )
    return mixed // literal(42949673, BigInteger)


def _at(value: datetime) -> ColumnElement[datetime]:
    return literal(value, UTCDateTime())


def _per_zone(
    zone: ColumnElement[str], values: dict[str, datetime], default: datetime
) -> ColumnElement[datetime]:
    if not values:
        return _at(default)
    return case(*((zone == z, _at(t)) for z, t in values.items()), else_=_at(default))


def render(text: str) -> ColumnElement[str]:
    """The placeholders filled per member in SQL; {name} last, so a name is never expanded."""
    out: ColumnElement[str] = literal(text, String)
    if "{points}" in text:
        out = func.replace(out, "{points}", cast(func.coalesce(Account.available, 0), String))
    if "{tier}" in text:
        out = func.replace(out, "{tier}", func.coalesce(Tier.name, ""))
    if "{name}" in text:
        out = func.replace(out, "{name}", func.coalesce(Member.name, ""))
    return out


async def _insert_run(
    session: AsyncSession, campaign: Campaign, occ: Occurrence, *, is_test: bool, now: datetime
) -> int | None:
    values = {
        "campaign_id": campaign.id,
        "occurrence_key": occ.key,
        "period": occ.period,
        "due_at": occ.due_at,
        "campaign_version": campaign.version,
        "is_test": is_test,
        "targeted": 0,
        "created_at": now,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(CampaignRun)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["campaign_id", "occurrence_key"])
        .returning(CampaignRun.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def materialise(
    session: AsyncSession,
    *,
    campaign: Campaign,
    occurrence: Occurrence,
    target: audience.Target,
    settings: Settings,
    only_member_id: int | None = None,
) -> Materialised | None:
    """Write the run, its deliveries and inbox items; None if it was materialised before.

    `only_member_id` makes a test run: that member alone, no suppression, holdout or quiet hours.
    """
    now = target.now
    is_test = only_member_id is not None
    run_id = await _insert_run(session, campaign, occurrence, is_test=is_test, now=now)
    if run_id is None:
        return None
    zone = audience.member_zone(target.program_tz)
    marketing = campaign.kind not in TRANSACTIONAL_KINDS
    ctx = suppression.CheckContext(campaign.id, marketing, now, settings.push_frequency_cap)
    if is_test:
        where: ColumnElement[bool] = Member.id == only_member_id
        reason: ColumnElement[str | None] = null()
        held: ColumnElement[bool] = literal(False, Boolean)
        deferred: dict[str, datetime] = {}
    else:
        where = audience.condition(
            campaign_id=campaign.id,
            kind=campaign.kind,
            schedule=campaign.schedule,
            audience=campaign.audience,
            target=target,
            since=campaign.scheduled_at,
        )
        reason = suppression.reason(ctx)
        seed = holdout_seed(campaign.id, occurrence.key)
        held = holdout_bucket(Member.id, seed) < campaign.holdout_percent
        deferred = {
            z: until
            for z in target.zones
            if (until := quiet_until(now, z, settings.push_quiet_hours))
        }
    window = timedelta(days=settings.push_attribution_days)
    chosen = (
        audience.members()
        .add_columns(
            reason.label("reason"),
            held.label("held"),
            (literal(True, Boolean) if is_test else suppression.push_consent(Member.id)).label(
                "push_allowed"
            ),
            _per_zone(zone, deferred, now).label("not_before"),
            _per_zone(zone, {z: t + window for z, t in deferred.items()}, now + window).label(
                "convert_until"
            ),
        )
        .where(where)
    )
    # Picked in full before any delivery row is written: the suppression checks read
    # push_delivery, and reading it while inserting into it in the same statement makes each
    # member's check walk the rows inserted so far (quadratic on a fresh or unanalysed table).
    await session.execute(_CreateTempTableAs(PICKED.name, chosen))
    picked = PICKED
    status = case(
        (picked.c.reason.is_not(None), "suppressed"), (picked.c.held, "holdout"), else_="queued"
    )
    rows = select(
        literal(run_id, BigInteger),
        literal(campaign.id, BigInteger),
        picked.c.id,
        status,
        picked.c.reason,
        literal(is_test, Boolean),
        literal(marketing, Boolean),
        picked.c.push_allowed,
        picked.c.not_before,
        picked.c.convert_until,
        literal(0, Integer),
        literal(0, Integer),
        literal(0, BigInteger),
        literal(False, Boolean),
        _at(now),
    )
    columns = [
        "run_id", "campaign_id", "member_id", "status", "reason", "is_test", "is_marketing",
        "push_allowed", "not_before", "convert_until", "claims", "attempts", "points_granted",
        "reward_done", "created_at",
    ]  # fmt: skip
    result = await session.execute(insert(Delivery).from_select(columns, rows))
    targeted = result.rowcount or 0
    await session.execute(text(f"DROP TABLE {PICKED.name}"))
    await _write_inbox(session, campaign=campaign, run_id=run_id, now=now)
    run = await session.get(CampaignRun, run_id)
    assert run is not None
    run.targeted = targeted
    if not is_test and campaign.status == "scheduled":
        campaign.status = "running"
    await session.flush()
    return Materialised(run, targeted)


async def _write_inbox(
    session: AsyncSession, *, campaign: Campaign, run_id: int, now: datetime
) -> None:
    message = campaign.message
    valid_days = message.get("valid_days")
    expires = _at(now + timedelta(days=valid_days)) if valid_days else null()
    rows = (
        select(
            Delivery.member_id,
            Delivery.id,
            literal(campaign.id, BigInteger),
            render(message["title"]),
            render(message["body"]),
            literal(message.get("data"), InboxItem.__table__.c.data.type),
            literal(message.get("image_url"), String),
            Delivery.not_before,
            expires,
            _at(now),
        )
        .select_from(Delivery)
        .join(Member, Member.id == Delivery.member_id)
        .outerjoin(Account, Account.member_id == Delivery.member_id)
        .outerjoin(Tier, Tier.code == Account.tier)
        .where(Delivery.run_id == run_id, Delivery.status == "queued")
    )
    columns = [
        "member_id", "delivery_id", "campaign_id", "title", "body", "data", "image_url",
        "visible_at", "expires_at", "created_at",
    ]  # fmt: skip
    await session.execute(insert(InboxItem).from_select(columns, rows))


def test_occurrence(now: datetime) -> Occurrence:
    return Occurrence(f"test:{uuid.uuid4().hex}", now)
