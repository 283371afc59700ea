"""Rewards members spend points on and the coupons they hold."""

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column


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
