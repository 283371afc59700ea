"""indexes for scale: a member's unspent lots by expiry

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 03:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("loyalty_ledger_entry", schema=None) as batch_op:
        batch_op.create_index(
            "ix_loyalty_ledger_entry_member_lots",
            ["member_id", "expires_at"],
            unique=False,
            postgresql_where=sa.text("remaining > 0"),
            sqlite_where=sa.text("remaining > 0"),
        )


def downgrade() -> None:
    with op.batch_alter_table("loyalty_ledger_entry", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_loyalty_ledger_entry_member_lots",
            postgresql_where=sa.text("remaining > 0"),
            sqlite_where=sa.text("remaining > 0"),
        )
