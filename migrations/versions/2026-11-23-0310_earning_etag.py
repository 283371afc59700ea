"""programme earning etag: keys per-process snapshots of rules and tiers

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 03:10:00+00:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("loyalty_program", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "earning_etag", sa.String(length=32), server_default="initial", nullable=False
            )
        )
    # A fresh value per database, so a process never takes one database's cached rules for
    # another's (e.g. a restored backup); processes started before this migration hold none.
    op.execute(
        sa.text("UPDATE loyalty_program SET earning_etag = :etag").bindparams(
            etag=secrets.token_hex(8)
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("loyalty_program", schema=None) as batch_op:
        batch_op.drop_column("earning_etag")
