"""The programme row, earning rules with their versions, and the tier ladder."""

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column

# Price bounds per litre (fen) of the fuel grades the programme knows: a fuel line outside
# them earns nothing and is refused (422), so a ¥0.01 line of 10,000 L cannot mint points.
# Chinese pump prices in 2026 are ¥6–¥9 per litre; the bounds leave room on both sides.
DEFAULT_FUEL_GRADES: dict[str, dict[str, int]] = {
    grade: {"min_price": 400, "max_price": 1500}
    for grade in ("92#", "95#", "98#", "0#", "-10#", "-20#", "-35#")
}
DEFAULT_MAX_FUEL_ML_PER_LINE = 200_000  # 200 L: a car's tank and then some; trucks need more
DEFAULT_MAX_POINTS_PER_RECEIPT = 100_000


def _default_fuel_grades() -> dict[str, dict[str, int]]:
    return {grade: dict(bounds) for grade, bounds in DEFAULT_FUEL_GRADES.items()}


class Program(Base):
    """The programme's settings: one row (id 1)."""

    __tablename__ = "loyalty_program"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    earn_points: Mapped[int] = mapped_column(Integer, default=1, doc="points per earn_amount")
    earn_amount: Mapped[int] = mapped_column(Integer, default=100, doc="minor units")
    rounding: Mapped[str] = mapped_column(String(8), default="floor")
    redeem_points: Mapped[int] = mapped_column(
        Integer, default=100, doc="points worth redeem_value"
    )
    redeem_value: Mapped[int] = mapped_column(Integer, default=100, doc="minor units")
    pending_days: Mapped[int] = mapped_column(Integer, default=0)
    expiry_months: Mapped[int | None] = mapped_column(Integer, default=12, doc="None = never")
    min_redemption: Mapped[int] = mapped_column(Integer, default=100)
    static_card_can_spend: Mapped[bool] = mapped_column(Boolean, default=False)
    reservation_minutes: Mapped[int] = mapped_column(Integer, default=10)
    claim_window_days: Mapped[int] = mapped_column(Integer, default=30)
    max_receipt_total: Mapped[int] = mapped_column(BigInteger, default=10_000_000)
    tier_window_months: Mapped[int] = mapped_column(Integer, default=12)
    fuel_grades: Mapped[dict[str, dict[str, int]]] = mapped_column(
        JSON, default=_default_fuel_grades, doc="grade -> {min_price, max_price} fen per litre"
    )
    max_fuel_ml_per_line: Mapped[int] = mapped_column(
        BigInteger, default=DEFAULT_MAX_FUEL_ML_PER_LINE, doc="millilitres"
    )
    max_points_per_receipt: Mapped[int] = mapped_column(
        BigInteger, default=DEFAULT_MAX_POINTS_PER_RECEIPT
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    earning_etag: Mapped[str] = mapped_column(
        String(32),
        default=lambda: secrets.token_hex(8),
        server_default="initial",
        doc="New random value whenever settings, rules or tiers change: keys cached rule sets",
    )
    updated_at: Mapped[datetime] = created_at_column()


class Rule(Base):
    """An earning rule; every change bumps `version` and keeps a RuleVersion snapshot."""

    __tablename__ = "loyalty_rule"

    id: Mapped[int] = pk_column()
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    store_ids: Mapped[list[int] | None] = mapped_column(JSON)
    region_ids: Mapped[list[int] | None] = mapped_column(JSON)
    store_kind: Mapped[str | None] = mapped_column(String(20))
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    caps: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    budget: Mapped[int | None] = mapped_column(BigInteger, doc="total points this rule may award")
    budget_used: Mapped[int] = mapped_column(BigInteger, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class RuleVersion(Base):
    """What a rule said at each version, so a years-old breakdown can be explained."""

    __tablename__ = "loyalty_rule_version"
    __table_args__ = (UniqueConstraint("rule_id", "version"),)

    id: Mapped[int] = pk_column()
    rule_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("loyalty_rule.id"))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = created_at_column()


class Tier(Base):
    __tablename__ = "loyalty_tier"

    id: Mapped[int] = pk_column()
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(Integer, unique=True, doc="0 is the entry tier")
    min_spend: Mapped[int] = mapped_column(BigInteger, doc="qualifying spend, minor units")
    multiplier_percent: Mapped[int] = mapped_column(Integer, default=100)
