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
