"""Cross-cutting tables: rate-limit hits, sign-in throttles, idempotency records, personal-data
access log."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column


class RateHit(Base):
    __tablename__ = "core_rate_hit"
    __table_args__ = (Index("ix_core_rate_hit_bucket_key_at", "bucket", "key", "created_at"),)

    id: Mapped[int] = pk_column()
    bucket: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_at_column()


class AuthThrottle(Base):
    """Failed guesses at one secret per (scope, key), e.g. a staff account or a client address,
    and the lockout they caused. Its row is also the lock that serialises one key's attempts."""

    __tablename__ = "core_auth_throttle"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = pk_column()
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128))
    failures: Mapped[int] = mapped_column(Integer, default=0, doc="since the last lockout")
    lockouts: Mapped[int] = mapped_column(Integer, default=0, doc="each one twice as long")
    locked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_at_column()


class IdempotencyRecord(Base):
    __tablename__ = "core_idempotency_key"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = pk_column()
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = created_at_column()


class AccessLog(Base):
    """Every staff read of a member's personal data."""

    __tablename__ = "core_access_log"
    __table_args__ = (Index("ix_core_access_log_member_at", "member_id", "created_at"),)

    id: Mapped[int] = pk_column()
    staff_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
