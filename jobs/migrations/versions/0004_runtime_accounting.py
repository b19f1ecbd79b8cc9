"""Runtime accounting: a run's execution mode and summed QPU usage, a job's live runtime state
and usage, the runtime job an M3 calibration was measured in

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("qldm_runs", sa.Column("execution_mode", sa.String(16), nullable=True))
    op.add_column("qldm_runs", sa.Column("usage_s", sa.Float, nullable=True))
    op.add_column("qldm_jobs", sa.Column("runtime_state", sa.String(32), nullable=True))
    op.add_column("qldm_jobs", sa.Column("usage_s", sa.Float, nullable=True))
    op.add_column(
        "qldm_m3_calibrations", sa.Column("runtime_job_id", sa.String(128), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("qldm_m3_calibrations") as batch:
        batch.drop_column("runtime_job_id")
    with op.batch_alter_table("qldm_jobs") as batch:
        batch.drop_column("usage_s")
        batch.drop_column("runtime_state")
    with op.batch_alter_table("qldm_runs") as batch:
        batch.drop_column("usage_s")
        batch.drop_column("execution_mode")
