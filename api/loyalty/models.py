"""Programme, rules, tiers, accounts, the append-only ledger with its lots, purchases,
returns, redemptions, rewards and coupons. Money is integer minor units, volume millilitres."""

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    text,
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


class Account(Base):
    """Cached balance per member; changed only together with ledger rows, under a row lock."""

    __tablename__ = "loyalty_account"

    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    available: Mapped[int] = mapped_column(
        BigInteger, default=0, doc="Spendable points; negative after a return of spent points"
    )
    pending: Mapped[int] = mapped_column(BigInteger, default=0, doc="Points not yet spendable")
    tier: Mapped[str | None] = mapped_column(String(32))
    tier_manual_until: Mapped[datetime | None]
    tier_reviewed_at: Mapped[datetime | None]
    purchases: Mapped[int] = mapped_column(Integer, default=0)
    last_purchase_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_at_column()


class LedgerEntry(Base):
    """One points movement. Append-only; earn and positive adjust rows are lots."""

    __tablename__ = "loyalty_ledger_entry"
    __table_args__ = (
        Index("ix_loyalty_ledger_entry_member_id_id", "member_id", "id"),
        Index("ix_loyalty_ledger_entry_source", "source_type", "source_id"),
        Index("ix_loyalty_ledger_entry_expiring", "expires_at", postgresql_where="remaining > 0"),
        Index(  # a member's unspent lots by expiry: GET /v1/me/points, burns
            "ix_loyalty_ledger_entry_member_lots",
            "member_id",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
        Index(
            "ix_loyalty_ledger_entry_maturing",
            "available_at",
            postgresql_where=text("NOT matured"),
            sqlite_where=text("NOT matured"),
        ),
        CheckConstraint(
            "kind IN ('earn', 'spend', 'reserve', 'release', 'expire', 'reverse', 'adjust')",
            name="kind",
        ),
    )

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(BigInteger, doc="signed")
    remaining: Mapped[int] = mapped_column(BigInteger, default=0, doc="unspent points of a lot")
    available_at: Mapped[datetime | None] = mapped_column(doc="pending until")
    matured: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None]
    source_type: Mapped[str] = mapped_column(String(20))
    source_id: Mapped[int | None] = mapped_column(BigInteger)
    store_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = created_at_column()


class LotUse(Base):
    """Which lots a burn (spend, reserve, expire, reverse) took its points from."""

    __tablename__ = "loyalty_lot_use"

    id: Mapped[int] = pk_column()
    entry_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("loyalty_ledger_entry.id"), index=True
    )
    lot_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("loyalty_ledger_entry.id"), index=True
    )
    points: Mapped[int] = mapped_column(BigInteger)


class Purchase(Base):
    __tablename__ = "loyalty_purchase"
    __table_args__ = (
        UniqueConstraint("store_id", "receipt_no"),
        Index("ix_loyalty_purchase_member_at", "member_id", "occurred_at"),
        Index("ix_loyalty_purchase_store_at", "store_id", "occurred_at"),
    )

    id: Mapped[int] = pk_column()
    store_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("org_store.id"))
    terminal_id: Mapped[int | None] = mapped_column(BigInteger)
    receipt_no: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("member.id"))
    occurred_at: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger, doc="minor units")
    returned_total: Mapped[int] = mapped_column(BigInteger, default=0)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    bonus_points: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    breakdown: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()


class PurchaseLine(Base):
    __tablename__ = "loyalty_purchase_line"
    __table_args__ = (UniqueConstraint("purchase_id", "line_no"),)

    id: Mapped[int] = pk_column()
    purchase_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("loyalty_purchase.id", ondelete="CASCADE")
    )
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64), index=True)
    quantity: Mapped[Any] = mapped_column(Numeric(14, 3))
    amount: Mapped[int] = mapped_column(BigInteger)
    fuel_grade: Mapped[str | None] = mapped_column(String(16))
    volume_ml: Mapped[int | None] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    returned_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    returned_quantity: Mapped[Any] = mapped_column(Numeric(14, 3), default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)


class PurchaseReturn(Base):
    __tablename__ = "loyalty_return"
    __table_args__ = (UniqueConstraint("purchase_id", "return_no"),)

    id: Mapped[int] = pk_column()
    purchase_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("loyalty_purchase.id"))
    return_no: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    points_reversed: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    terminal_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()


class Redemption(Base):
    """Points reserved at the till, then confirmed, cancelled or left to lapse."""

    __tablename__ = "loyalty_redemption"
    __table_args__ = (Index("ix_loyalty_redemption_status_expires", "status", "expires_at"),)

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id"), index=True)
    store_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("org_store.id"))
    terminal_id: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[int] = mapped_column(BigInteger, doc="minor units")
    receipt_no: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(
        String(10), doc="reserved | confirmed | cancelled | expired"
    )
    reserve_entry_id: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()


class Reward(Base):
    __tablename__ = "loyalty_reward"

    id: Mapped[int] = pk_column()
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(String(500), default="")
    points_cost: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[int | None] = mapped_column(BigInteger, doc="minor units, if a voucher")
    stock: Mapped[int | None] = mapped_column(Integer, doc="None = unlimited")
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    valid_until: Mapped[datetime | None]
    coupon_days: Mapped[int] = mapped_column(Integer, default=30)
    store_ids: Mapped[list[int] | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_column()


class Coupon(Base):
    __tablename__ = "loyalty_coupon"
    __table_args__ = (
        Index("ix_loyalty_coupon_member_reward", "member_id", "reward_id"),
        Index("ix_loyalty_coupon_status_expires", "status", "expires_at"),
    )

    id: Mapped[int] = pk_column()
    code: Mapped[str] = mapped_column(String(16), unique=True)
    reward_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("loyalty_reward.id"))
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id"))
    status: Mapped[str] = mapped_column(String(10), doc="issued | redeemed | expired | cancelled")
    points_spent: Mapped[int] = mapped_column(BigInteger)
    spend_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(20), default="claim")
    expires_at: Mapped[datetime]
    redeemed_at: Mapped[datetime | None]
    redeemed_store_id: Mapped[int | None] = mapped_column(BigInteger)
    receipt_no: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()


class RuleAward(Base):
    """Points a rule gave a member on a purchase: the basis of per-member caps."""

    __tablename__ = "loyalty_rule_award"
    __table_args__ = (
        Index("ix_loyalty_rule_award_member_rule_at", "member_id", "rule_id", "occurred_at"),
    )

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id", ondelete="CASCADE"))
    rule_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("loyalty_rule.id"))
    purchase_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("loyalty_purchase.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
