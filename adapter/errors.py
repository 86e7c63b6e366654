"""The exception family. Every AdapterError carries Issues and renders to an OperationOutcome.

AdapterError                 carries list[Issue]; `status` is a class attribute
├── InputError          400  unparseable bytes, wrong media type, structurally invalid FHIR
│   └── SourceParseError     HL7 v2 / CSV framing; expression names the segment/field or row/column
├── UnprocessableError  422
│   ├── ConformanceError     profile, binding, invariant, reference and questionnaire failures
│   └── PolicyViolation      every issue carries its rule id and citation
├── PreconditionFailed  412  stale If-Match, ambiguous conditional match
├── Conflict            409  a create that collides with an existing id
├── NotFound 404 · Gone 410 · MethodNotAllowed 405 · NotAcceptable 406 · UnsupportedMediaType 415
├── AccessDenied 401 / Forbidden 403
├── TooManyRequests     429
└── UpstreamUnavailable 503  backing server down on a read; outbox unable to accept a write
ArtefactLoadError            not an AdapterError: a bad mapping/profile/rule pack stops start-up
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, cast

from adapter.issue import Issue, IssueCode


class AdapterError(Exception):
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "exception"

    def __init__(self, issues: Iterable[Issue] | str, *, headers: dict[str, str] | None = None):
        if isinstance(issues, str):
            issues = [Issue("error", cast(IssueCode, self.default_code), issues)]
        self.issues: list[Issue] = list(issues)
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__("; ".join(i.text for i in self.issues) or type(self).__name__)


class InputError(AdapterError):
    status = 400
    default_code = "structure"


class SourceParseError(InputError):
    pass


class UnprocessableError(AdapterError):
    status = 422
    default_code = "processing"


class ConformanceError(UnprocessableError):
    default_code = "invalid"


class PolicyViolation(UnprocessableError):
    default_code = "business-rule"


class PreconditionFailed(AdapterError):
    status = 412
    default_code = "conflict"


class Conflict(AdapterError):
    status = 409
    default_code = "conflict"


class NotFound(AdapterError):
    status = 404
    default_code = "not-found"


class Gone(AdapterError):
    status = 410
    default_code = "deleted"


class MethodNotAllowed(AdapterError):
    status = 405
    default_code = "not-supported"


class NotAcceptable(AdapterError):
    status = 406
    default_code = "not-supported"


class UnsupportedMediaType(AdapterError):
    status = 415
    default_code = "not-supported"


class AccessDenied(AdapterError):
    status = 401
    default_code = "login"


class Forbidden(AdapterError):
    status = 403
    default_code = "forbidden"


class TooManyRequests(AdapterError):
    status = 429
    default_code = "throttled"


class UpstreamUnavailable(AdapterError):
    status = 503
    default_code = "transient"


class ArtefactLoadError(Exception):
    """A mapping, profile or rule pack failed to load. Names the file; stops start-up."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
