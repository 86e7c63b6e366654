"""The authorisation server's SQL state: refresh-token rotation and family revocation, on both
database backends (the conditional UPDATE is what stops two workers using one token)."""

from __future__ import annotations

import time

from adapter.auth.state import AuthState


def _record(state: AuthState, token_id: str, kind: str, family: str | None = None) -> None:
    now = int(time.time())
    state.record_token(
        token_id,
        kind=kind,
        client_id="app",
        scope="patient/*.rs offline_access",
        context={"patient": "p1"},
        issued_at=now,
        expires_at=now + 600,
        family=family,
    )


def test_a_refresh_token_can_be_used_once(database):
    state = AuthState(database.engine)
    _record(state, "root", "refresh")
    assert state.use_refresh_token("root") is True
    assert state.use_refresh_token("root") is False  # the second worker, or a replay
    assert state.get_token("root").revoked is True
    assert state.use_refresh_token("no-such-token") is False


def test_revoking_a_later_member_revokes_the_whole_family_and_nothing_else(database):
    state = AuthState(database.engine)
    _record(state, "root", "refresh")
    _record(state, "access-1", "access", family="root")
    _record(state, "second", "refresh", family="root")
    _record(state, "access-2", "access", family="root")
    _record(state, "other-root", "refresh")
    _record(state, "other-access", "access", family="other-root")
    second = state.get_token("second")
    assert second is not None
    assert second.family_root == "root"
    state.revoke_family(second)
    for token_id in ("root", "access-1", "second", "access-2"):
        assert state.get_token(token_id).revoked is True, token_id
    for token_id in ("other-root", "other-access"):
        assert state.get_token(token_id).revoked is False, token_id
