"""Accounts (cached balance under a row lock) and the append-only ledger with its lots.
Points are integers; see DESIGN in docs/architecture.md."""

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
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column


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
