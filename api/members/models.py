"""Members, their consents and vehicles, sign-in codes, refresh tokens and used QR codes."""

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.core.db import Base, created_at_column, pk_column


class Member(Base):
    __tablename__ = "member"
    __table_args__ = (
        Index("ix_member_birth_month_day", "birth_month", "birth_day"),
        Index("ix_member_created_at", "created_at"),  # welcome campaigns, cohorts
    )

    id: Mapped[int] = pk_column()
    phone: Mapped[str] = mapped_column(String(16), unique=True, doc="E.164")
    card_number: Mapped[str] = mapped_column(String(19), unique=True)
    name: Mapped[str | None] = mapped_column(String(120))
    gender: Mapped[str | None] = mapped_column(String(10))
    birthday: Mapped[date | None] = mapped_column(Date)
    birth_month: Mapped[int | None] = mapped_column(SmallInteger, doc="Derived from birthday")
    birth_day: Mapped[int | None] = mapped_column(SmallInteger, doc="Derived from birthday")
    email: Mapped[str | None] = mapped_column(String(254))
    home_store_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("org_store.id"), index=True
    )
    status: Mapped[str] = mapped_column(String(12), default="active")
    enrolled_via: Mapped[str] = mapped_column(String(12), doc="app | pos | staff | import")
    totp_secret: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class MemberConsent(Base):
    """Current consent per channel, with when and through what it was given or withdrawn."""

    __tablename__ = "member_consent"
    __table_args__ = (UniqueConstraint("member_id", "channel"),)

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8), doc="push | sms | email")
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[datetime] = created_at_column()


class Vehicle(Base):
    """A plate a member claims. Several members may claim one plate; only a verified claim
    (one per plate) identifies its member at a fuel till."""

    __tablename__ = "member_vehicle"
    __table_args__ = (
        UniqueConstraint("member_id", "plate"),
        Index(
            "uq_member_vehicle_verified_plate",
            "plate",
            unique=True,
            sqlite_where=text("verified_at IS NOT NULL"),
            postgresql_where=text("verified_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    plate: Mapped[str] = mapped_column(String(16), doc="Normalised: no spaces/dots")
    created_at: Mapped[datetime] = created_at_column()
    verified_at: Mapped[datetime | None] = mapped_column(
        doc="when staff or a QR-identified fuel receipt confirmed the car; only then it earns"
    )
    verified_by: Mapped[str | None] = mapped_column(String(64), doc="terminal:<id> or staff:<id>")


class OtpChallenge(Base):
    """A one-time sign-in code sent to a phone; only its keyed hash is stored."""

    __tablename__ = "member_otp_challenge"
    __table_args__ = (Index("ix_member_otp_challenge_phone_at", "phone", "created_at"),)

    id: Mapped[int] = pk_column()
    phone: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()


class MemberSignIn(Base):
    """One sign-in on one device (a refresh-token family). Access tokens carry its `family`;
    revoking it (sign-out, a reused refresh token) ends them at the next request."""

    __tablename__ = "member_sign_in"

    id: Mapped[int] = pk_column()
    family: Mapped[str] = mapped_column(String(32), unique=True)
    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = created_at_column()
    revoked_at: Mapped[datetime | None]


class RefreshToken(Base):
    """Rotating refresh tokens; a family is one sign-in, revoked whole on reuse."""

    __tablename__ = "member_refresh_token"

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    family: Mapped[str] = mapped_column(String(32), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()


class UsedCardCode(Base):
    """A rotating QR code that was accepted once; a second use of the same step is a replay."""

    __tablename__ = "member_used_card_code"
    __table_args__ = (UniqueConstraint("member_id", "step"),)

    id: Mapped[int] = pk_column()
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("member.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(BigInteger, doc="TOTP time step (unix time // period)")
    created_at: Mapped[datetime] = created_at_column()
