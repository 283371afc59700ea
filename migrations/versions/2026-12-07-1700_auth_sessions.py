"""sign-in hardening: throttle rows, console sessions, staff token generation, member sign-ins

Revision ID: 0010_auth
Revises: 0009
Create Date: 2026-12-07 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.core.db

revision: str = "0010_auth"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = api.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "core_auth_throttle",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTC, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_auth_throttle")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_core_auth_throttle_scope_key")),
    )
    op.create_table(
        "member_sign_in",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_member_sign_in_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_sign_in")),
        sa.UniqueConstraint("family", name=op.f("uq_member_sign_in_family")),
    )
    with op.batch_alter_table("member_sign_in", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_member_sign_in_member_id"), ["member_id"])
    # Every existing refresh-token family becomes a sign-in; revoked when any token was.
    op.execute(
        sa.text(
            "INSERT INTO member_sign_in (family, member_id, created_at, revoked_at) "
            "SELECT family, MIN(member_id), MIN(created_at), MAX(revoked_at) "
            "FROM member_refresh_token GROUP BY family"
        )
    )
    op.create_table(
        "org_staff_session",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("staff_id", sa.BigInteger(), nullable=False),
        sa.Column("sid_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["org_staff.id"],
            name=op.f("fk_org_staff_session_staff_id_org_staff"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_staff_session")),
        sa.UniqueConstraint("sid_hash", name=op.f("uq_org_staff_session_sid_hash")),
    )
    with op.batch_alter_table("org_staff_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_org_staff_session_staff_id"), ["staff_id"])
    with op.batch_alter_table("org_staff", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("org_staff", schema=None) as batch_op:
        batch_op.drop_column("token_generation")
    with op.batch_alter_table("org_staff_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_org_staff_session_staff_id"))
    op.drop_table("org_staff_session")
    with op.batch_alter_table("member_sign_in", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_sign_in_member_id"))
    op.drop_table("member_sign_in")
    op.drop_table("core_auth_throttle")
