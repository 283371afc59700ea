"""Points accounts (the cached balance), the append-only ledger and its earn lots."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column


class Account(Base):
    """Cached balance per member; changed only together with ledger rows, under a row lock."""

    __tablename__ = "loyalty_account"

    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    available: Mapped[int] = mapped_column(
        BigInteger, default=0, doc="Points; may go negative after a return"
    )
    pending: Mapped[int] = mapped_column(BigInteger, default=0, doc="Points not yet spendable")
    tier: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = created_at_column()
