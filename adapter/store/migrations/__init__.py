"""Alembic migrations of the embedded store. Run them with `adapter.store.migrate.upgrade`."""
