"""Merge the SMART (0002) and outbox (0003) branches, so the tree has one head again.

Revision ID: 0004
Revises: 0002, 0003
"""

from __future__ import annotations

revision: str = "0004"
down_revision: tuple[str, ...] = ("0002", "0003")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: both branches' tables already exist once both are applied."""


def downgrade() -> None:
    """Back to the two branch heads."""
