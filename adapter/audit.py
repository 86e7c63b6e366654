"""AuditEvent builders (one per access or write) and log redaction.

An AuditEvent says who (client id, fhirUser), did what (RESTful interaction), to what (resource
type and id), with what outcome. It never carries clinical content: no resource bodies, no search
strings (they may hold NHS numbers), no names. AuditEvents are the one write that does not go
through the pipeline: they are the adapter's own records, built here from known-safe values, and
stored with `repo.create` so that an audit write cannot be rejected by clinical policy.

An AuditEvent that cannot be stored is never dropped in silence: `AuditFailures` counts it, and
the caller logs it at ERROR with a correlation id and the event itself (which holds no patient
data by construction), so it can be recovered from the log.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Final, Literal

from adapter.fhir.types import JsonObject

Action = Literal["C", "R", "U", "D", "E"]
OUTCOME_SUCCESS: Final = "0"
OUTCOME_MINOR_FAILURE: Final = "4"
OUTCOME_SERIOUS_FAILURE: Final = "8"
CLIENT_SYSTEM: Final = "https://fhir.cmh-adapter.example/Id/smart-client"
_ACTIONS: Final[dict[str, Action]] = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "search": "E",
    "history-instance": "R",
    "history-type": "E",
    "history-system": "E",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}
_NHS_LIKE: Final = re.compile(r"\b\d{3}\s?\d{3}\s?\d{4}\b")


class AuditFailures:
    """How many AuditEvents this process could not store (thread-safe; read `count`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def increment(self) -> int:
        with self._lock:
            self._count += 1
            return self._count


_CORRELATION_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def correlation_id(supplied: str | None) -> str:
    """The caller's X-Request-ID (or X-Correlation-ID) if it is a plain token, else a new UUID."""
    if supplied and _CORRELATION_ID.fullmatch(supplied):
        return supplied
    return str(uuid.uuid4())


def redact(text: str) -> str:
    """Masks anything shaped like an NHS number, for log lines that must quote user input."""
    return _NHS_LIKE.sub("[redacted]", text)


def audit_event(
    *,
    interaction: str,
    outcome: str,
    client_id: str | None,
    fhir_user: str | None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    operation: str | None = None,
    recorded: datetime | None = None,
    status: int | None = None,
) -> JsonObject:
    moment = (recorded or datetime.now(UTC)).astimezone(UTC)
    agents: list[JsonObject] = [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                        "code": "datacollector",
                        "display": "data collector",
                    }
                ]
            },
            "who": {"identifier": {"system": CLIENT_SYSTEM, "value": client_id or "unknown"}},
            "requestor": fhir_user is None,
        }
    ]
    if fhir_user:
        agents.append(
            {
                "who": {"reference": fhir_user} if "/" in fhir_user else {"display": fhir_user},
                "requestor": True,
            }
        )
    subtype = {"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}
    event: JsonObject = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [subtype],
        "action": _ACTIONS.get(interaction, "E"),
        "recorded": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": outcome,
        "agent": agents,
        "source": {"observer": {"display": "cmh-fhir-adapter"}},
    }
    if status is not None:
        event["outcomeDesc"] = f"HTTP {status}"
    if operation:
        event["subtype"].append(
            {
                "system": "http://hl7.org/fhir/restful-interaction",
                "code": "operation",
                "display": operation,
            }
        )
    if resource_type:
        what: JsonObject = (
            {"reference": f"{resource_type}/{resource_id}"}
            if resource_id
            else {"type": resource_type}
        )
        event["entity"] = [{"what": what}]
    return event
