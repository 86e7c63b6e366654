"""Backend error mapping of the remote store: `backend_errors` turns httpx errors and backend answers
into our error family, evening out backend quirks.

- a stale version is 412 (R4); HAPI JPA answers 409 (`HAPI-0989`) -> PreconditionFailed when we sent
  a precondition or the outcome says the version conflicts;
- invalid content is 400 (structural) or 422 (profile, invariant, business rule); HAPI's repository
  validator answers 412 and some servers answer 400 for profile failures -> sorted by issue code;
- 429 and 5xx keep the server's Retry-After; timeouts, resets and refused connections are 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, cast

import httpx

from adapter.errors import (
    AdapterError,
    Conflict,
    ConformanceError,
    Gone,
    InputError,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
    UpstreamUnavailable,
)
from adapter.issue import Issue, IssueCode

#: Issue codes that mean "valid JSON, but breaks a profile or rule": our 422, whatever status came.
_PROFILE_CODES: Final = frozenset({"invariant", "code-invalid", "business-rule", "extension"})
_ISSUE_CODES: Final = frozenset(IssueCode.__args__)  # type: ignore[attr-defined]  # Literal members


class _BackendStatus(Exception):
    """Internal: the backend answered with an error status; `backend_errors` maps it."""

    def __init__(self, response: httpx.Response):
        super().__init__(response.status_code)
        self.response = response


def check_status(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise _BackendStatus(response)
    return response


def outcome_issues(response: httpx.Response) -> list[Issue]:
    """Our Issues from the backend's OperationOutcome; a generic one when there is none."""
    issues: list[Issue] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        for raw in body.get("issue") or []:
            if not isinstance(raw, dict):
                continue
            severity = raw.get("severity")
            code = raw.get("code")
            issue_code = cast(IssueCode, code) if code in _ISSUE_CODES else "processing"
            text = (
                (raw.get("details") or {}).get("text") or raw.get("diagnostics") or "backend issue"
            )
            expression = raw.get("expression") or raw.get("location") or [None]
            issues.append(
                Issue(
                    severity
                    if severity in ("fatal", "error", "warning", "information")
                    else "error",
                    issue_code,
                    f"Backing server: {text}"[:500],
                    expression=expression[0]
                    if isinstance(expression, list) and expression
                    else None,
                )
            )
    if not issues:
        issues.append(
            Issue("error", "processing", f"Backing server answered HTTP {response.status_code}")
        )
    return issues


def _is_version_conflict(issues: list[Issue]) -> bool:
    return any(
        "version" in i.text.lower() or "HAPI-0989" in i.text or i.code == "conflict" for i in issues
    )


def _retry_after(response: httpx.Response) -> dict[str, str]:
    value = response.headers.get("Retry-After")
    return {"Retry-After": value} if value else {}


def map_status(response: httpx.Response, *, sent_precondition: bool) -> AdapterError:
    """The one table from a backend status (and its outcome) to our error family."""
    status = response.status_code
    issues = outcome_issues(response)
    blocking_codes = {i.code for i in issues if i.severity in ("fatal", "error")}
    is_profile_failure = bool(blocking_codes) and blocking_codes <= _PROFILE_CODES
    if status in (409, 412) and (
        sent_precondition or (status == 409 and _is_version_conflict(issues))
    ):
        return PreconditionFailed(issues)
    if status == 409:
        return Conflict(issues)
    if status in (400, 412, 422) and (status == 422 or is_profile_failure or status == 412):
        return ConformanceError(issues)
    if status == 400:
        return InputError(issues)
    if status == 404:
        return NotFound(issues)
    if status == 410:
        return Gone(issues)
    if status == 429:
        return TooManyRequests(issues, headers=_retry_after(response))
    if status in (401, 403):
        text = f"Backing server refused our credentials (HTTP {status})"
        return UpstreamUnavailable([Issue("error", "security", text)])
    return UpstreamUnavailable(issues, headers=_retry_after(response))


def answered_by_server(error: AdapterError) -> bool:
    """True when the backing server answered with this error status (its headers are its own);
    False for timeouts, resets and refused connections, whose Retry-After we made up."""
    return isinstance(error.__cause__, _BackendStatus)


@contextmanager
def backend_errors(*, sent_precondition: bool = False) -> Iterator[None]:
    """Maps httpx errors and backend error answers into our family; nothing foreign escapes."""
    try:
        yield
    except _BackendStatus as exc:
        raise map_status(exc.response, sent_precondition=sent_precondition) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamUnavailable(
            [Issue("error", "timeout", f"Backing server timed out ({type(exc).__name__})")],
            headers={"Retry-After": "5"},
        ) from exc
    except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
        raise UpstreamUnavailable(
            [Issue("error", "transient", f"Backing server unreachable ({type(exc).__name__})")],
            headers={"Retry-After": "5"},
        ) from exc
    except ValueError as exc:  # an answer that is not JSON where JSON was due
        raise UpstreamUnavailable(
            [Issue("error", "processing", "Backing server answered with malformed JSON")]
        ) from exc
