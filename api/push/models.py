"""Devices, campaigns, their runs, one delivery per (run, member) and the in-app inbox."""

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
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column

CAMPAIGN_KINDS = (
    "one_off",
    "recurring",
    "birthday",
    "member_day",
    "lapsed",
    "points_expiring",
    "welcome",
)
CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "paused", "completed", "cancelled")
DELIVERY_STATUSES = (
    "queued",
    "sending",
    "sent",
    "failed",
    "no_transport",
    "no_device",
    "inbox_only",
    "holdout",
    "suppressed",
    "cancelled",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Device(Base):
    """An FCM registration token; it belongs to the member who registered it last."""

    __tablename__ = "push_device"
    __table_args__ = (
        Index("ix_push_device_member_active", "member_id", "active"),
        CheckConstraint("platform IN ('android', 'ios', 'web')", name="platform"),
    )

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(String(512), unique=True)
    platform: Mapped[str] = mapped_column(String(8))
    locale: Mapped[str | None] = mapped_column(String(35))
    app_version: Mapped[str | None] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deactivated_reason: Mapped[str | None] = mapped_column(
        String(40), doc="unregistered | sender_mismatch | invalid_token | removed"
    )
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class Campaign(Base):
    """A marketer's campaign. `version` goes up with every change of what it sends."""

    __tablename__ = "push_campaign"
    __table_args__ = (
        Index("ix_push_campaign_status", "status"),
        CheckConstraint(_in("kind", CAMPAIGN_KINDS), name="kind"),
        CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),
        CheckConstraint("holdout_percent BETWEEN 0 AND 90", name="holdout_percent"),
    )

    id: Mapped[int] = pk_column()
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="draft")
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[dict[str, Any]] = mapped_column(JSON)
    reward: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc='{"points": n} or {"reward_id": id} (a coupon), per recipient'
    )
    holdout_percent: Mapped[int] = mapped_column(SmallInteger, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[int | None] = mapped_column(BigInteger, doc="staff id")
    scheduled_at: Mapped[datetime | None] = mapped_column(
        doc="first scheduled; welcome counts from it"
    )
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class CampaignRun(Base):
    """One occurrence of a campaign (or one test send), materialised once."""

    __tablename__ = "push_campaign_run"
    __table_args__ = (UniqueConstraint("campaign_id", "occurrence_key"),)

    id: Mapped[int] = pk_column()
    campaign_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("push_campaign.id", ondelete="CASCADE")
    )
    occurrence_key: Mapped[str] = mapped_column(
        String(80), doc="e.g. once, 2027-03-31T09:00, 2027-02-28@Asia/Shanghai, test:<hex>"
    )
    period: Mapped[str | None] = mapped_column(String(16), doc="birthday: the year")
    due_at: Mapped[datetime]
    campaign_version: Mapped[int] = mapped_column(Integer)
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    targeted: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = created_at_column()


class Delivery(Base):
    """One recipient of one run: an inbox item and at most one push (to each active device)."""

    __tablename__ = "push_delivery"
    __table_args__ = (
        UniqueConstraint("run_id", "member_id"),
        Index("ix_push_delivery_status_not_before", "status", "not_before"),
        Index("ix_push_delivery_campaign_member", "campaign_id", "member_id"),
        Index("ix_push_delivery_member_created", "member_id", "created_at"),
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
    )

    id: Mapped[int] = pk_column()
    run_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("push_campaign_run.id", ondelete="CASCADE")
    )
    campaign_id: Mapped[int] = mapped_column(BigInteger, doc="denormalised from the run")
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(
        String(40), doc="suppression reason, or why a push failed"
    )
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    is_marketing: Mapped[bool] = mapped_column(Boolean, default=True)
    push_allowed: Mapped[bool] = mapped_column(Boolean, default=True, doc="push consent given")
    not_before: Mapped[datetime] = mapped_column(doc="due time, after quiet hours")
    convert_until: Mapped[datetime] = mapped_column(doc="end of the attribution window")
    attempt_id: Mapped[str | None] = mapped_column(String(32), doc="the current send claim")
    lease_until: Mapped[datetime | None]
    claims: Mapped[int] = mapped_column(Integer, default=0, doc="times a worker claimed it")
    attempts: Mapped[int] = mapped_column(Integer, default=0, doc="FCM requests, retries included")
    fcm_message_ids: Mapped[list[str] | None] = mapped_column(JSON)
    sent_at: Mapped[datetime | None]
    points_granted: Mapped[int] = mapped_column(BigInteger, default=0)
    coupon_id: Mapped[int | None] = mapped_column(BigInteger)
    reward_done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_at_column()


class InboxItem(Base):
    """What the member sees in the app, rendered for them; one per delivery."""

    __tablename__ = "push_inbox_item"
    __table_args__ = (Index("ix_push_inbox_item_member_id_id", "member_id", "id"),)

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("push_delivery.id", ondelete="CASCADE"), unique=True
    )
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    image_url: Mapped[str | None] = mapped_column(String(500))
    visible_at: Mapped[datetime] = mapped_column(doc="not shown before (quiet hours)")
    expires_at: Mapped[datetime | None] = mapped_column(doc="offer valid until")
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
