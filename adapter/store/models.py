"""Tables of the embedded store: every version in `resource_version`, a pointer to the current one in
`resource_current`, and the `search_index` rows of each current version.

The schema is created only by the Alembic migrations in `migrations/versions/`; these classes
describe it for queries and for the drift test that compares them with the migrated database.
Resource JSON is text written by `adapter.fhir.jsonio`, so decimals keep their precision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

#: FHIR ids are at most 64 characters; resource type names are shorter still.
ID_LENGTH: Final = 64


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`. SQLite has no time zones, so the value is stored as naive UTC
    text in SQLAlchemy's fixed-width format, which sorts and compares correctly as text.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"unexpected datetime value {value!r}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ResourceVersion(SQLModel, table=True):
    """Every version ever written, including delete tombstones (`deleted`, minimal JSON)."""

    __tablename__ = "resource_version"
    __table_args__ = (sa.Index("ix_resource_version_last_updated", "last_updated"),)

    resource_type: str = Field(sa_type=sa.String(ID_LENGTH), primary_key=True)
    id: str = Field(sa_type=sa.String(ID_LENGTH), primary_key=True)
    version_id: int = Field(
        sa_type=sa.Integer, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    last_updated: datetime = Field(sa_type=UtcDateTime, nullable=False)
    deleted: bool = Field(sa_type=sa.Boolean, nullable=False)
    content: str = Field(sa_type=sa.Text, nullable=False)


class ResourceCurrent(SQLModel, table=True):
    """One row per logical resource: which version is current. The compare-and-set target of writes."""

    __tablename__ = "resource_current"
    __table_args__ = (
        sa.Index("ix_resource_current_type_last_updated", "resource_type", "last_updated", "id"),
    )

    resource_type: str = Field(sa_type=sa.String(ID_LENGTH), primary_key=True)
    id: str = Field(sa_type=sa.String(ID_LENGTH), primary_key=True)
    version_id: int = Field(sa_type=sa.Integer, nullable=False)
    last_updated: datetime = Field(sa_type=UtcDateTime, nullable=False)
    deleted: bool = Field(sa_type=sa.Boolean, nullable=False)


class SearchIndexRow(SQLModel, table=True):
    """One searchable value of a current, non-deleted resource.

    Tokens fill `system`/`value`. References fill `ref_type`/`ref_id` and, for a logical reference
    carrying `identifier`, also `system`/`value`. `_id` and `_lastUpdated` are served from
    `resource_current` instead. Each index leads with its most selective column (the id or the
    value), so the planner picks the right one even before the table has statistics.
    """

    __tablename__ = "search_index"
    __table_args__ = (
        sa.Index("ix_search_index_resource", "resource_id", "resource_type"),
        sa.Index("ix_search_index_token", "value", "param", "resource_type", "system"),
        sa.Index("ix_search_index_reference", "ref_id", "param", "resource_type", "ref_type"),
    )

    row_id: int | None = Field(default=None, sa_type=sa.Integer, primary_key=True)
    resource_type: str = Field(sa_type=sa.String(ID_LENGTH), nullable=False)
    resource_id: str = Field(sa_type=sa.String(ID_LENGTH), nullable=False)
    param: str = Field(sa_type=sa.String(ID_LENGTH), nullable=False)
    system: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    value: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    ref_type: str | None = Field(default=None, sa_type=sa.String(ID_LENGTH), nullable=True)
    ref_id: str | None = Field(default=None, sa_type=sa.String(ID_LENGTH), nullable=True)


def _table(model: type[SQLModel]) -> sa.Table:
    table = model.__table__  # type: ignore[attr-defined]  # SQLModel sets __table__ at class creation
    assert isinstance(table, sa.Table)
    return table


VERSION_TABLE: Final = _table(ResourceVersion)
CURRENT_TABLE: Final = _table(ResourceCurrent)
INDEX_TABLE: Final = _table(SearchIndexRow)
#: The store's tables, children first (the order to empty them in).
STORE_TABLES: Final = (INDEX_TABLE, CURRENT_TABLE, VERSION_TABLE)
