"""The embedded store: resource versions, the current-version pointer and the search index.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resource_version",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "id", "version_id"),
    )
    op.create_index("ix_resource_version_last_updated", "resource_version", ["last_updated"])
    op.create_table(
        "resource_current",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "id"),
    )
    op.create_index(
        "ix_resource_current_type_last_updated",
        "resource_current",
        ["resource_type", "last_updated", "id"],
    )
    op.create_table(
        "search_index",
        sa.Column("row_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("system", sa.Text(), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("ref_type", sa.String(64), nullable=True),
        sa.Column("ref_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("row_id"),
    )
    op.create_index("ix_search_index_resource", "search_index", ["resource_id", "resource_type"])
    op.create_index(
        "ix_search_index_token", "search_index", ["value", "param", "resource_type", "system"]
    )
    op.create_index(
        "ix_search_index_reference",
        "search_index",
        ["ref_id", "param", "resource_type", "ref_type"],
    )


def downgrade() -> None:
    op.drop_table("search_index")
    op.drop_table("resource_current")
    op.drop_table("resource_version")
