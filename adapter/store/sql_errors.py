"""Database error translation for the embedded store: `translate_db_errors`.

Every SQLAlchemy or driver error becomes a member of the `AdapterError` family here, and the
statement and its data never leak into the message. Inside `SqlRepository`'s own write attempts a
lost race or a transient error (an integrity error, a locked SQLite database, a PostgreSQL
serialization failure or deadlock) becomes `_Retry` instead, and the write is simply rerun.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import exc as sa_exc

from adapter.errors import AdapterError, Conflict, UpstreamUnavailable
from adapter.issue import Issue, IssueCode

# The logger keeps the name it had when this code lived in adapter/store/sql.py.
log = logging.getLogger("adapter.store.sql")

#: PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock.
_RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01"})


class _Retry(Exception):
    """Internal: the transaction lost a race or met a transient error, and may simply be rerun."""


def _sqlstate(error: sa_exc.DBAPIError) -> str | None:
    state = getattr(error.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


@contextmanager
def translate_db_errors(*, may_retry: bool) -> Iterator[None]:
    """Turns SQLAlchemy and driver errors into our family; the statement and its data never leak."""
    try:
        yield
    except AdapterError:
        raise
    except sa_exc.IntegrityError as error:
        if may_retry:
            raise _Retry from error
        raise Conflict(
            [Issue("error", "conflict", "A concurrent write created the same resource")]
        ) from error
    except sa_exc.DBAPIError as error:
        state = _sqlstate(error)
        locked = "database is locked" in str(error.orig) or "database is busy" in str(error.orig)
        if may_retry and (locked or state in _RETRYABLE_SQLSTATES):
            raise _Retry from error
        log.warning("store error %s sqlstate=%s", type(error.orig).__name__, state)
        code: IssueCode = "lock-error" if locked else "transient"
        raise UpstreamUnavailable(
            [Issue("error", code, f"The database is unavailable ({type(error.orig).__name__})")]
        ) from error
    except sa_exc.SQLAlchemyError as error:
        log.warning("store error %s", type(error).__name__)
        raise UpstreamUnavailable(
            [Issue("error", "exception", f"The database failed ({type(error).__name__})")]
        ) from error
