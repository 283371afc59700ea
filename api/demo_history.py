"""Twelve months of believable history for the demo programme.

Earning rules, tiers and rewards like a real chain would run, then every receipt of the last
year replayed in time order through the same services the tills use (with the clock set to
each receipt's moment, so pending days, expiry and tier upgrades happen as they would have):
supermarket baskets and fuel fills with grades and litres, busier Wednesday member days,
birthday bonuses, members who drift away, some returns, redemptions and reward claims.
"""

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.config import Settings
from api.core.errors import DomainError
from api.loyalty.ledger import jobs
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import RuleCreate, TierIn, TierSet
from api.loyalty.rewards import service as rewards
from api.loyalty.rewards.schemas import RewardCreate
from api.loyalty.till import purchases, redemptions, returns
from api.loyalty.till.context import Till
from api.loyalty.till.schemas import LineIn, PurchaseIn, RedemptionIn, ReturnIn, ReturnLineIn
from api.members import cards
from api.members.models import Member
from api.org.models import Store

TZ = ZoneInfo("Asia/Shanghai")

RULES = (
    RuleCreate(
        code="no-tobacco-lottery",
        name="烟草彩票不积分 No points on tobacco, lottery, gift cards",
        kind="exclude",
        params={"categories": ["tobacco", "lottery", "gift_card"]},
    ),
    RuleCreate(
        code="fresh-x2",
        name="生鲜双倍 Fresh food ×2",
        kind="multiplier",
        params={"categories": ["fresh"], "multiplier_percent": 200},
    ),
    RuleCreate(
        code="fuel-per-litre",
        name="加油按升积分 Fuel points per litre",
        kind="fuel",
        params={"grades": {"92#": 100, "95#": 150, "98#": 200}},
        store_kind="fuel_station",
    ),
    RuleCreate(
        code="member-day-wed",
        name="周三会员日 Wednesday member day ×2",
        kind="member_day",
        params={"rrule": "FREQ=WEEKLY;BYDAY=WE", "multiplier_percent": 200},
    ),
    RuleCreate(
        code="birthday-month",
        name="生日月礼 Birthday month bonus",
        kind="birthday",
        params={"window": "month", "bonus_points": 200},
        caps={"year": 200},
    ),
    RuleCreate(
        code="welcome", name="首单礼 First purchase bonus", kind="welcome", params={"points": 50}
    ),
    RuleCreate(
        code="basket-200",
        name="满200元加赠 Basket ≥ 200 bonus",
        kind="basket",
        params={"min_total": 20000, "points": 20},
        store_kind="supermarket",
    ),
)
TIERS = TierSet(
    tiers=[
        TierIn(code="silver", name="银卡 Silver", min_spend=0, multiplier_percent=100),
        TierIn(code="gold", name="金卡 Gold", min_spend=300_000, multiplier_percent=125),
        TierIn(
            code="platinum", name="白金卡 Platinum", min_spend=1_000_000, multiplier_percent=150
        ),
    ]
)
REWARDS = (
    RewardCreate(name="10元代金券 ¥10 voucher", points_cost=1000, value=1000, coupon_days=60),
    RewardCreate(name="免费洗车 Free car wash", points_cost=800, stock=200, per_member_limit=2),
    RewardCreate(name="一盒鸡蛋 A box of eggs", points_cost=300, stock=150, per_member_limit=3),
)

# (category, sku, low, high) in minor units
GROCERY = (
    ("fresh", "VEG-BOK", 300, 1800),
    ("fresh", "FRUIT-APL", 800, 3500),
    ("fresh", "MEAT-PRK", 1500, 6800),
    ("dairy", "MILK-1L", 1200, 2600),
    ("grocery", "RICE-5KG", 3500, 6900),
    ("grocery", "OIL-1.8L", 3900, 8900),
    ("snacks", "SNACK-MIX", 500, 2500),
    ("drinks", "TEA-500", 300, 900),
    ("household", "TISSUE-10", 1500, 4500),
    ("tobacco", "CIG-ZHH", 1500, 4500),
    ("lottery", "LOTTO-SSQ", 200, 2000),
)
FUEL_PRICES = {"92#": 780, "95#": 830, "98#": 920}  # minor units per litre


@dataclass
class Persona:
    member: Member
    store: Store
    interval_days: float
    basket_scale: float
    active_until: int  # day index after which the member stops coming (lapsed / churned)


async def configure(session: AsyncSession) -> None:
    """Rules, tiers and rewards of the demo programme."""
    for rule in RULES:
        await program_service.create_rule(session, data=rule)
    await program_service.replace_tiers(session, data=TIERS)
    for reward in REWARDS:
        await rewards.create_reward(session, data=reward)


def _personas(
    rng: random.Random, members: list[Member], stores: dict[int, Store], days: int
) -> list[Persona]:
    people = []
    for member in members:
        store = (
            stores[member.home_store_id] if member.home_store_id else next(iter(stores.values()))
        )
        fuel = store.kind == "fuel_station"
        weight = rng.paretovariate(1.3)  # a few members carry most of the spend
        interval = (rng.uniform(30, 60) if fuel else rng.uniform(30, 90)) / min(weight, 3)
        drifts = rng.random() < 0.18
        people.append(
            Persona(
                member=member,
                store=store,
                interval_days=max(interval, 5.0),
                basket_scale=min(weight, 6.0),
                active_until=int(days * rng.uniform(0.55, 0.95)) if drifts else days + 1,
            )
        )
    return people


def _moment(rng: random.Random, day: datetime) -> datetime:
    local = datetime.combine(day.date(), time(rng.randint(7, 21), rng.randint(0, 59)), tzinfo=TZ)
    return local.astimezone(clock.now().tzinfo)


def _grocery_lines(rng: random.Random, scale: float) -> list[LineIn]:
    lines = []
    for no in range(1, rng.randint(2, 7) + 1):
        category, sku, low, high = rng.choice(GROCERY)
        amount = int(rng.randint(low, high) * min(scale, 2.5))
        lines.append(
            LineIn(
                line_no=no,
                sku=sku,
                category=category,
                quantity=Decimal(rng.randint(1, 3)),
                amount=amount,
            )
        )
    return lines


def _fuel_lines(rng: random.Random, scale: float) -> list[LineIn]:
    grade = rng.choices(tuple(FUEL_PRICES), weights=(55, 38, 7))[0]
    litres_ml = int(rng.uniform(25, 55) * 1000)
    amount = litres_ml * FUEL_PRICES[grade] // 1000
    lines = [
        LineIn(
            line_no=1,
            sku=f"FUEL-{grade}",
            category="fuel",
            quantity=Decimal(litres_ml) / 1000,
            amount=amount,
            fuel_grade=grade,
            volume_ml=litres_ml,
        )
    ]
    if rng.random() < 0.3 * scale:
        lines.append(
            LineIn(
                line_no=2,
                sku="SHOP-WATER",
                category="drinks",
                quantity=Decimal(2),
                amount=rng.randint(400, 1500),
            )
        )
    return lines


def _schedule(
    rng: random.Random, people: list[Persona], start: datetime, days: int
) -> list[tuple[datetime, Persona | None, Store]]:
    events: list[tuple[datetime, Persona | None, Store]] = []
    for person in people:
        enrolled = (clock.as_utc(person.member.created_at) - start).total_seconds() / 86400
        day = max(0.0, enrolled) + rng.uniform(0, person.interval_days)
        while day < min(days, person.active_until):
            moment = start + timedelta(days=day)
            if (
                moment.astimezone(TZ).weekday() == 2 or rng.random() > 0.15
            ):  # Wednesdays draw people in
                events.append((_moment(rng, moment), person, person.store))
            day += rng.expovariate(1 / person.interval_days)
    stores = sorted({p.store.id: p.store for p in people}.values(), key=lambda s: s.id)
    for day in range(days):  # walk-in shoppers without a card
        for store in stores:
            for _ in range(rng.choice((0, 0, 0, 0, 1, 2))):
                events.append((_moment(rng, start + timedelta(days=day)), None, store))
    events.sort(key=lambda e: e[0])
    return events


async def replay(
    session: AsyncSession,
    settings: Settings,
    rng: random.Random,
    members: list[Member],
    stores: list[Store],
    terminals: dict[int, int],
) -> dict[str, int]:
    """Post a year of receipts in time order; returns counts of what happened."""
    end = clock.now()
    days = settings.demo_history_days
    start = end - timedelta(days=days)
    people = _personas(rng, members, {s.id: s for s in stores}, days)
    counts = {"receipts": 0, "member_receipts": 0, "returns": 0, "redemptions": 0, "coupons": 0}
    reward_list = await rewards.list_rewards(session)
    last_month = None
    n = 0
    for moment, person, store in _schedule(rng, people, start, days):
        if moment > end:
            break
        n += 1
        scale = person.basket_scale if person else rng.uniform(0.5, 1.5)
        lines = (
            _fuel_lines(rng, scale) if store.kind == "fuel_station" else _grocery_lines(rng, scale)
        )
        till = Till.at_terminal(store, terminals[store.id])
        body = PurchaseIn(
            receipt_no=f"{store.code}-{moment:%y%m%d}-{n:06d}",
            occurred_at=moment,
            currency="CNY",
            total=sum(ln.amount for ln in lines),
            lines=lines,
            member_code=person.member.card_number if person else None,
        )
        if n % 250 == 0:  # keep the unit of work small: flushed rows need not stay in memory
            await session.flush()
            session.expunge_all()
            reward_list = await rewards.list_rewards(session)
        with clock.frozen(moment + timedelta(minutes=1)):
            month = moment.astimezone(TZ).strftime("%Y-%m")
            if month != last_month:
                await jobs.mature_pending(session)
                await jobs.expire_lots(session)
                last_month = month
            done = await purchases.record(session, settings=settings, till=till, body=body)
            counts["receipts"] += 1
            if person is None:
                continue
            counts["member_receipts"] += 1
            balance = done.balance.available if done.balance else 0
            if rng.random() < 0.02 and len(lines) > 1 and done.purchase_id:
                await returns.process(
                    session,
                    purchase_id=done.purchase_id,
                    terminal_id=till.terminal_id,
                    actor=till.actor,
                    body=ReturnIn(
                        return_no=f"RT-{n}", lines=[ReturnLineIn(line_no=lines[-1].line_no)]
                    ),
                )
                counts["returns"] += 1
            elif balance >= 1500 and rng.random() < 0.12:
                counts["redemptions"] += await _redeem(
                    session, settings, till, person.member, balance, rng
                )
            elif balance >= 800 and rng.random() < 0.05:
                counts["coupons"] += await _claim(session, person.member, rng, reward_list)
    with clock.frozen(end):
        await jobs.mature_pending(session)
        await jobs.expire_lots(session)
    return counts


async def _redeem(
    session: AsyncSession,
    settings: Settings,
    till: Till,
    member: Member,
    balance: int,
    rng: random.Random,
) -> int:
    code = cards.payload(
        member.card_number,
        cards.current_code(
            member.totp_secret,
            clock.now(),
            period=settings.totp_period,
            digits=settings.totp_digits,
        ),
    )
    points = min(balance, rng.choice((500, 1000, 1500))) // 100 * 100
    try:
        held = await redemptions.reserve(
            session,
            settings=settings,
            till=till,
            body=RedemptionIn(member_code=code, points=points),
        )
        if rng.random() < 0.9:
            await redemptions.confirm(session, till=till, redemption_id=held.id)
        else:
            await redemptions.cancel(session, till=till, redemption_id=held.id)
    except DomainError:
        return 0
    return 1


async def _claim(
    session: AsyncSession, member: Member, rng: random.Random, reward_list: list
) -> int:
    try:
        await rewards.claim(session, member_id=member.id, reward_id=rng.choice(reward_list).id)
    except DomainError:
        return 0
    return 1
