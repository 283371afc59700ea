"""Regions, stores, POS terminals and staff accounts."""

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column


class StoreKind(enum.StrEnum):
    supermarket = "supermarket"
    fuel_station = "fuel_station"


class Role(enum.StrEnum):
    admin = "admin"
    marketer = "marketer"
    region_manager = "region_manager"
    store_manager = "store_manager"
    cashier = "cashier"


class Region(Base):
    __tablename__ = "org_region"

    id: Mapped[int] = pk_column()
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = created_at_column()


class Store(Base):
    __tablename__ = "org_store"
    __table_args__ = (CheckConstraint("kind IN ('supermarket', 'fuel_station')", name="kind"),)

    id: Mapped[int] = pk_column()
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    region_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("org_region.id"), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_column()


class Terminal(Base):
    """A POS terminal bound to one store; its API key is stored only as a SHA-256 digest."""

    __tablename__ = "org_terminal"

    id: Mapped[int] = pk_column()
    store_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("org_store.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    revoked_at: Mapped[datetime | None]


class Staff(Base):
    __tablename__ = "org_staff"
    __table_args__ = (
        CheckConstraint(
            "role IN ('admin', 'marketer', 'region_manager', 'store_manager', 'cashier')",
            name="role",
        ),
    )

    id: Mapped[int] = pk_column()
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    region_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("org_region.id"))
    store_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("org_store.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    token_generation: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="In every staff token; raising it (sign out everywhere, deactivation) voids them",
    )
    created_at: Mapped[datetime] = created_at_column()


class StaffSession(Base):
    """A console sign-in: the cookie carries its random id, stored here only as a digest.
    Every console request checks it is neither revoked nor expired."""

    __tablename__ = "org_staff_session"

    id: Mapped[int] = pk_column()
    staff_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("org_staff.id", ondelete="CASCADE"), index=True
    )
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
