"""Receipts and their lines, returns, redemption holds and per-rule awards. Money is integer
minor units (fen), fuel volume integer millilitres."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column


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
    claim_code_hash: Mapped[str | None] = mapped_column(
        String(64), doc="keyed digest of the claim code printed on a receipt without a member"
    )
    earning_inputs: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="the rules engine's inputs when the points were computed: returns recompute"
    )
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
