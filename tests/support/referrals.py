"""Builds synthetic GP referral transaction Bundles (999-range NHS numbers, invented people)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from adapter.fhir.identifiers import nhs_number_with_check_digit

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def nhs_number(n: int) -> str:
    """The n-th valid 999-range test NHS number (prefixes with no valid check digit are skipped)."""
    while len(_VALID) <= n:
        candidate = nhs_number_with_check_digit(f"999{_NEXT[0]:06d}")
        _NEXT[0] += 1
        if candidate:
            _VALID.append(candidate)
    return _VALID[n]


_VALID: list[str] = []
_NEXT = [0]


def referral_bundle(
    nhs: str = "9990000018",
    *,
    priority: str | None = "urgent",
    ubrn: str | None = None,
    practice_ods: str = "Y12345",
    given: str = "Alex",
    family: str = "Testperson",
) -> dict[str, Any]:
    pat, prac, org, role, sr = (f"urn:uuid:{uuid.uuid4()}" for _ in range(5))
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [
            {
                "system": "https://fhir.cmh-adapter.example/Id/referral",
                "value": ubrn or str(uuid.uuid4()),
            }
        ],
        "status": "active",
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "3457005",
                        "display": "Patient referral",
                    },
                    {
                        "system": "https://fhir.cmh-adapter.example/CodeSystem/referral-type",
                        "code": "cmht-referral",
                        "display": "Referral to a community mental health team",
                    },
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "183524004",
                    "display": "Referral to psychiatry service",
                }
            ]
        },
        "extension": [
            {
                "url": "https://fhir.cmh-adapter.example/StructureDefinition/referral-source",
                "valueCoding": {
                    "system": "https://fhir.cmh-adapter.example/CodeSystem/referral-source",
                    "code": "gp",
                    "display": "General practitioner",
                },
            }
        ],
        "subject": {"reference": pat},
        "requester": {"reference": role},
        "authoredOn": "2026-11-20T10:00:00+00:00",
        "reasonCode": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "35489007",
                        "display": "Depressive disorder",
                    }
                ]
            }
        ],
        "performerType": {
            "coding": [
                {
                    "system": "https://fhir.cmh-adapter.example/CodeSystem/mhsds-team-type",
                    "code": "A06",
                    "display": "Community Mental Health Team - Functional",
                }
            ],
            "text": "Community mental health team",
        },
    }
    if priority is not None:
        service_request["priority"] = priority
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pat,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": NHS, "value": nhs}],
                    "name": [{"family": family, "given": [given]}],
                    "gender": "unknown",
                    "birthDate": "1980-01-01",
                    "generalPractitioner": [{"reference": org}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={NHS}|{nhs}",
                },
            },
            {
                "fullUrl": org,
                "resource": {
                    "resourceType": "Organization",
                    "identifier": [{"system": ODS, "value": practice_ods}],
                    "name": "Synthetic Surgery",
                },
                "request": {
                    "method": "POST",
                    "url": "Organization",
                    "ifNoneExist": f"identifier={ODS}|{practice_ods}",
                },
            },
            {
                "fullUrl": prac,
                "resource": {
                    "resourceType": "Practitioner",
                    "name": [{"family": "Example", "prefix": ["Dr"]}],
                },
                "request": {"method": "POST", "url": "Practitioner"},
            },
            {
                "fullUrl": role,
                "resource": {
                    "resourceType": "PractitionerRole",
                    "practitioner": {"reference": prac},
                    "organization": {"reference": org},
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            },
            {
                "fullUrl": sr,
                "resource": service_request,
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
        ],
    }


def entry_of(bundle: dict[str, Any], resource_type: str) -> tuple[int, dict[str, Any]]:
    for i, e in enumerate(bundle["entry"]):
        if e["resource"]["resourceType"] == resource_type:
            return i, e["resource"]
    raise KeyError(resource_type)


def with_change(bundle: dict[str, Any], resource_type: str, **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(bundle)
    _, res = entry_of(out, resource_type)
    for k, v in changes.items():
        if v is None:
            res.pop(k, None)
        else:
            res[k] = v
    return out
