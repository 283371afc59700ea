"""Stored insight figures, refreshed by the worker; the API answers from these."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column


class MemberStats(Base):
    """Per-member figures derived from purchases: the basis of ABC, RFM, lapse and audiences."""

    __tablename__ = "insights_member_stats"
    __table_args__ = (
        Index("ix_insights_member_stats_abc_class", "abc_class"),
        Index("ix_insights_member_stats_rfm_segment", "rfm_segment"),
        Index("ix_insights_member_stats_home_store_id", "home_store_id"),
    )

    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    home_store_id: Mapped[int | None] = mapped_column(BigInteger)
    spend_12m: Mapped[int] = mapped_column(BigInteger, default=0, doc="minor units, net of returns")
    purchases_12m: Mapped[int] = mapped_column(Integer, default=0)
    purchases_total: Mapped[int] = mapped_column(Integer, default=0)
    first_purchase_at: Mapped[datetime | None]
    last_purchase_at: Mapped[datetime | None]
    days_since_last: Mapped[int | None] = mapped_column(Integer)
    usual_interval_days: Mapped[Decimal | None] = mapped_column(
        Numeric(8, 2), doc="median days between purchases (at least 3 purchases)"
    )
    abc_class: Mapped[str | None] = mapped_column(String(1))
    r_score: Mapped[int | None] = mapped_column(SmallInteger)
    f_score: Mapped[int | None] = mapped_column(SmallInteger)
    m_score: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(String(20))
    lapsed: Mapped[bool] = mapped_column(Boolean, default=False)
    churned: Mapped[bool] = mapped_column(Boolean, default=False)
    computed_at: Mapped[datetime]


class InsightsSettings(Base):
    """Thresholds of the insight measures: one row (id 1); changes apply at the next refresh."""

    __tablename__ = "insights_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    abc_a_percent: Mapped[int] = mapped_column(SmallInteger, default=70, doc="A: top % of spend")
    abc_b_percent: Mapped[int] = mapped_column(SmallInteger, default=90, doc="A+B: top % of spend")
    lapse_grace_days: Mapped[int] = mapped_column(SmallInteger, default=3)
    churn_days: Mapped[int] = mapped_column(SmallInteger, default=90)
    portfolio_size: Mapped[int] = mapped_column(SmallInteger, default=15)
    updated_at: Mapped[datetime] = created_at_column()


class Refresh(Base):
    """One recomputation of the stored figures (by the worker or on demand)."""

    __tablename__ = "insights_refresh"
    __table_args__ = (Index("ix_insights_refresh_finished_at", "finished_at"),)

    id: Mapped[int] = pk_column()
    trigger: Mapped[str] = mapped_column(String(10), doc="worker | api")
    staff_id: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AbcHistory(Base):
    """Each member's ABC class at the last refresh of each month (programme time zone)."""

    __tablename__ = "insights_abc_history"

    month: Mapped[date] = mapped_column(Date, primary_key=True, doc="first day of the month")
    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    abc_class: Mapped[str] = mapped_column(String(1))
    spend_12m: Mapped[int] = mapped_column(BigInteger, doc="minor units")


class StoreFigure(Base):
    """An additive figure per store (member's home store or the sale's store), so a manager's
    view is the sum over the stores in scope. `period` is a month start, `bucket` a sub-key."""

    __tablename__ = "insights_store_figure"
    __table_args__ = (Index("ix_insights_store_figure_measure_period", "measure", "period"),)

    id: Mapped[int] = pk_column()
    measure: Mapped[str] = mapped_column(String(32))
    period: Mapped[date | None] = mapped_column(Date)
    bucket: Mapped[int | None] = mapped_column(Integer)
    store_id: Mapped[int | None] = mapped_column(BigInteger)
    value: Mapped[int] = mapped_column(BigInteger, doc="a count, points or minor units")


class LapseAlert(Base):
    """A member past their purchase cycle: one alert per lapse episode (keyed by the last
    purchase before it), closed when the member buys again; a follow-up task for store staff."""

    __tablename__ = "insights_lapse_alert"
    __table_args__ = (
        UniqueConstraint("member_id", "last_purchase_at"),
        Index("ix_insights_lapse_alert_status_store", "status", "home_store_id"),
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        CheckConstraint("outcome IN ('reached', 'not_reached')", name="outcome"),
    )

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id", ondelete="CASCADE"))
    home_store_id: Mapped[int | None] = mapped_column(BigInteger)
    last_purchase_at: Mapped[datetime]
    usual_interval_days: Mapped[Decimal] = mapped_column(Numeric(8, 2))
    days_since_last: Mapped[int] = mapped_column(Integer, doc="when the alert opened")
    opened_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="open")
    closed_at: Mapped[datetime | None]
    assigned_staff_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("org_staff.id"), index=True
    )
    assigned_at: Mapped[datetime | None]
    assigned_by: Mapped[str | None] = mapped_column(
        String(40), doc="portfolio | least_loaded | staff:<id>"
    )
    outcome: Mapped[str | None] = mapped_column(String(12))
    outcome_reason: Mapped[str | None] = mapped_column(String(255))
    outcome_at: Mapped[datetime | None]
    outcome_staff_id: Mapped[int | None] = mapped_column(BigInteger)


class PortfolioEntry(Base):
    """A member in a store staff member's portfolio (a member is in at most one)."""

    __tablename__ = "insights_portfolio"

    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    staff_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("org_staff.id"), index=True)
    store_id: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(10), doc="auto | manual")
    assigned_at: Mapped[datetime]
