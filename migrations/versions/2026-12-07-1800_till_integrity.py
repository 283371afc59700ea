"""till integrity: fuel plausibility settings, claim codes, stored earning inputs, verified plates

Revision ID: 0011_till
Revises: 0010_auth
Create Date: 2026-12-07 18:00:00+00:00

Plates registered before this revision stay claims: they identify their member at a fuel till
only once staff confirm them (`POST /v1/pos/vehicles/confirm`) or a receipt identified by the
member's rotating QR code carries the plate. Receipts posted before it have no claim code and
cannot be claimed in the app (the shopper asks the store).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.core.db

revision: str = "0011_till"
down_revision: str | None = "0010_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = api.core.db.UTCDateTime(timezone=True)
GRADES = {
    grade: {"min_price": 400, "max_price": 1500}
    for grade in ("92#", "95#", "98#", "0#", "-10#", "-20#", "-35#")
}
VERIFIED = sa.text("verified_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("loyalty_program", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fuel_grades", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "max_fuel_ml_per_line", sa.BigInteger(), nullable=False, server_default="200000"
            )
        )
        batch_op.add_column(
            sa.Column(
                "max_points_per_receipt", sa.BigInteger(), nullable=False, server_default="100000"
            )
        )
    program = sa.table("loyalty_program", sa.column("fuel_grades", sa.JSON()))
    op.execute(program.update().values(fuel_grades=GRADES))
    with op.batch_alter_table("loyalty_program", schema=None) as batch_op:
        batch_op.alter_column("fuel_grades", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("max_fuel_ml_per_line", server_default=None)
        batch_op.alter_column("max_points_per_receipt", server_default=None)

    with op.batch_alter_table("loyalty_purchase", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_code_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("earning_inputs", sa.JSON(), nullable=True))

    with op.batch_alter_table("member_vehicle", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verified_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("verified_by", sa.String(length=64), nullable=True))
        batch_op.drop_constraint("uq_member_vehicle_plate", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_member_vehicle_member_id_plate"), ["member_id", "plate"]
        )
        batch_op.create_index(
            "uq_member_vehicle_verified_plate",
            ["plate"],
            unique=True,
            sqlite_where=VERIFIED,
            postgresql_where=VERIFIED,
        )


def downgrade() -> None:
    # Claims beyond the first of each plate cannot survive the old one-member-per-plate rule.
    op.execute(
        sa.text(
            "DELETE FROM member_vehicle WHERE id NOT IN "
            "(SELECT MIN(id) FROM member_vehicle GROUP BY plate)"
        )
    )
    with op.batch_alter_table("member_vehicle", schema=None) as batch_op:
        batch_op.drop_index("uq_member_vehicle_verified_plate")
        batch_op.drop_constraint("uq_member_vehicle_member_id_plate", type_="unique")
        batch_op.create_unique_constraint("uq_member_vehicle_plate", ["plate"])
        batch_op.drop_column("verified_by")
        batch_op.drop_column("verified_at")

    with op.batch_alter_table("loyalty_purchase", schema=None) as batch_op:
        batch_op.drop_column("earning_inputs")
        batch_op.drop_column("claim_code_hash")

    with op.batch_alter_table("loyalty_program", schema=None) as batch_op:
        batch_op.drop_column("max_points_per_receipt")
        batch_op.drop_column("max_fuel_ml_per_line")
        batch_op.drop_column("fuel_grades")
