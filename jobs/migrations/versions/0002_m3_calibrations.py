"""M3 readout calibrations in the store

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qldm_m3_calibrations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("qubits", sa.String(2048), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("shots", sa.Integer, nullable=False),
        sa.Column("device_calibration", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("matrices", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ix_qldm_m3_calibrations_key",
        "qldm_m3_calibrations",
        ["device", "qubits", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_qldm_m3_calibrations_key", table_name="qldm_m3_calibrations")
    op.drop_table("qldm_m3_calibrations")
