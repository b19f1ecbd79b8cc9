"""initial schema: jobs, job results, runs, API keys

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qldm_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("backend", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("request_json", sa.Text, nullable=False),
        sa.Column("request_arrays", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("runtime_job_id", sa.String(128), nullable=True),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.UniqueConstraint(
            "tenant", "idempotency_key", name="uq_qldm_jobs_tenant_idempotency_key"
        ),
    )
    op.create_index("ix_qldm_jobs_status_created", "qldm_jobs", ["status", "created_at"])
    op.create_index("ix_qldm_jobs_tenant_created", "qldm_jobs", ["tenant", "created_at"])
    op.create_index("ix_qldm_jobs_run_id", "qldm_jobs", ["run_id"])

    op.create_table(
        "qldm_job_results",
        sa.Column(
            "job_id",
            sa.String(32),
            sa.ForeignKey("qldm_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("arrays", sa.LargeBinary, nullable=False),
        sa.Column("counts_json", sa.Text, nullable=True),
        sa.Column("metadata_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "qldm_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("backend", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_qldm_runs_tenant_created", "qldm_runs", ["tenant", "created_at"])

    op.create_table(
        "qldm_api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("prefix", name="uq_qldm_api_keys_prefix"),
    )
    op.create_index("ix_qldm_api_keys_tenant", "qldm_api_keys", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_qldm_api_keys_tenant", table_name="qldm_api_keys")
    op.drop_table("qldm_api_keys")
    op.drop_index("ix_qldm_runs_tenant_created", table_name="qldm_runs")
    op.drop_table("qldm_runs")
    op.drop_table("qldm_job_results")
    op.drop_index("ix_qldm_jobs_run_id", table_name="qldm_jobs")
    op.drop_index("ix_qldm_jobs_tenant_created", table_name="qldm_jobs")
    op.drop_index("ix_qldm_jobs_status_created", table_name="qldm_jobs")
    op.drop_table("qldm_jobs")
