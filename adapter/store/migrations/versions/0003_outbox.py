"""The outbox of the remote backing store, its dead letters, and stored Idempotency-Key responses.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26

A branch parallel to 0002 (SMART clients): both start from 0001, and `upgrade` targets "heads".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_outbox_message_status_available", "outbox_message", ["status", "available_at"]
    )
    op.create_table(
        "outbox_key",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("resource_key", sa.String(130), nullable=False),
        sa.Column("is_write", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "resource_key"),
        sa.ForeignKeyConstraint(["message_id"], ["outbox_message.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_outbox_key_resource", "outbox_key", ["resource_key", "message_id"])
    op.create_table(
        "outbox_dead_letter",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_dead_letter_message", "outbox_dead_letter", ["message_id"])
    op.create_table(
        "idempotency_record",
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_hash"),
    )
    op.create_index("ix_idempotency_record_created", "idempotency_record", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_record")
    op.drop_table("outbox_dead_letter")
    op.drop_table("outbox_key")
    op.drop_table("outbox_message")
