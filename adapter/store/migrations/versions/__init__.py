"""Alembic revisions, oldest first. Each one is tested on SQLite and PostgreSQL."""
