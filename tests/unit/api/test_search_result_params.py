"""Search result parameters: `_summary`, `_elements`, `_revinclude` (R4 search.html §3.1.1.5), and
`_summary`/`_elements` on read; `_contained` stays reported as ignored. SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from adapter.api import revinclude
from tests.support.referrals import NHS, nhs_number, referral_bundle

FHIR_JSON = {"Content-Type": "application/fhir+json"}
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}


def _seed(client, nhs: str) -> dict[str, str]:
    """One referral through the pipeline; returns type -> id of what it created."""
    r = client.post("/fhir", content=json.dumps(referral_bundle(nhs)), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    return {
        e["response"]["location"].split("/")[0]: e["response"]["location"].split("/")[1]
        for e in r.json()["entry"]
    }


def _matches(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _included(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"]


def _outcome_issues(bundle: dict) -> list[dict]:
    outcomes = [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]
    return [i for o in outcomes for i in o["issue"]]


def _is_subsetted(resource: dict) -> bool:
    return SUBSETTED in resource.get("meta", {}).get("tag", [])


def _patient_search(client, nhs: str, **params: str) -> dict:
    r = client.get("/fhir/Patient", params={"identifier": f"{NHS}|{nhs}", **params})
    assert r.status_code == 200, r.text
    return r.json()


# --- _summary ---------------------------------------------------------------------------------


def test_summary_true_keeps_only_summary_and_mandatory_elements_and_tags_subsetted(client):
    _seed(client, nhs_number(0))
    (patient,) = _matches(_patient_search(client, nhs_number(0), _summary="true"))
    # generalPractitioner is not isSummary in R4 Patient; identifier, name, gender, birthDate are
    assert "generalPractitioner" not in patient
    assert {"identifier", "name", "gender", "birthDate", "id", "meta"} <= set(patient)
    assert _is_subsetted(patient)
    # the stored record is untouched
    full = client.get(f"/fhir/Patient/{patient['id']}").json()
    assert "generalPractitioner" in full
    assert not _is_subsetted(full)


def test_summary_true_prunes_backbone_elements_to_their_summary_children(client):
    ids = _seed(client, nhs_number(1))
    # Patient.contact is not summary; Patient.link is, and so are link.other and link.type
    patient = client.get(f"/fhir/Patient/{ids['Patient']}").json()
    patient["contact"] = [{"name": {"family": "Contactperson"}}]
    assert (
        client.put(
            f"/fhir/Patient/{ids['Patient']}", content=json.dumps(patient), headers=FHIR_JSON
        ).status_code
        == 200
    )
    sr = _matches(
        client.get(
            "/fhir/ServiceRequest", params={"_id": ids["ServiceRequest"], "_summary": "true"}
        ).json()
    )[0]
    # ServiceRequest: subject, status, intent, code are summary; extension and text are not
    assert {"subject", "status", "intent", "code", "category", "priority"} <= set(sr)
    assert "extension" not in sr
    (summary,) = _matches(_patient_search(client, nhs_number(1), _summary="true"))
    assert "contact" not in summary


def test_summary_text_keeps_text_id_meta_and_mandatory_elements(client):
    ids = _seed(client, nhs_number(2))
    sr = _matches(
        client.get(
            "/fhir/ServiceRequest", params={"_id": ids["ServiceRequest"], "_summary": "text"}
        ).json()
    )[0]
    # status, intent and subject are mandatory (1..1) in R4 ServiceRequest; code is not
    assert set(sr) - {"text"} == {"resourceType", "id", "meta", "status", "intent", "subject"}
    assert _is_subsetted(sr)


def test_summary_data_removes_text_only(client):
    ids = _seed(client, nhs_number(3))
    full = client.get(f"/fhir/ServiceRequest/{ids['ServiceRequest']}").json()
    full["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
    }
    r = client.put(
        f"/fhir/ServiceRequest/{ids['ServiceRequest']}", content=json.dumps(full), headers=FHIR_JSON
    )
    assert r.status_code == 200, r.text
    (sr,) = _matches(
        client.get(
            "/fhir/ServiceRequest", params={"_id": ids["ServiceRequest"], "_summary": "data"}
        ).json()
    )
    assert "text" not in sr
    stored = client.get(f"/fhir/ServiceRequest/{ids['ServiceRequest']}").json()
    assert set(sr) == set(stored) - {"text"}
    assert _is_subsetted(sr)


def test_summary_false_returns_the_whole_resource_untagged(client):
    _seed(client, nhs_number(4))
    (patient,) = _matches(_patient_search(client, nhs_number(4), _summary="false"))
    assert "generalPractitioner" in patient
    assert not _is_subsetted(patient)
    assert _outcome_issues(_patient_search(client, nhs_number(4), _summary="false")) == []


def test_summary_count_answers_the_total_without_entries(client):
    for nhs in (nhs_number(5), nhs_number(6)):
        _seed(client, nhs)
    r = client.get("/fhir/Patient", params={"_summary": "count"})
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 2
    assert "entry" not in bundle
    narrowed = client.get(
        "/fhir/Patient", params={"_summary": "count", "identifier": f"{NHS}|9990000069"}
    ).json()
    assert narrowed["total"] == 1
    # _total=accurate is what count gives anyway; _total=none contradicts it
    assert (
        client.get("/fhir/Patient", params={"_summary": "count", "_total": "accurate"}).json()[
            "total"
        ]
        == 2
    )
    r = client.get("/fhir/Patient", params={"_summary": "count", "_total": "none"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["_total"]


def test_unknown_summary_value_is_400_naming_summary(client):
    r = client.get("/fhir/Patient", params={"_summary": "brief"})
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["code"] == "value"
    assert issue["expression"] == ["_summary"]


# --- _elements --------------------------------------------------------------------------------


def test_elements_keeps_named_and_mandatory_elements_and_tags_subsetted(client):
    ids = _seed(client, nhs_number(7))
    bundle = client.get(
        "/fhir/ServiceRequest", params={"_id": ids["ServiceRequest"], "_elements": "priority,code"}
    ).json()
    (sr,) = _matches(bundle)
    assert set(sr) == {
        "resourceType",
        "id",
        "meta",
        "priority",
        "code",
        "status",
        "intent",
        "subject",
    }
    assert _is_subsetted(sr)
    assert _outcome_issues(bundle) == []


def test_elements_reports_unknown_names_and_ignores_them(client):
    _seed(client, nhs_number(8))
    bundle = _patient_search(client, nhs_number(8), _elements="name,shoeSize,name.given")
    (patient,) = _matches(bundle)
    assert set(patient) == {"resourceType", "id", "meta", "name"}
    (issue,) = _outcome_issues(bundle)
    assert issue["severity"] == "warning"
    assert issue["expression"] == ["_elements"]
    assert "shoeSize" in issue["details"]["text"]
    assert "name.given" in issue["details"]["text"]


def test_elements_takes_precedence_over_summary_and_says_so(client):
    _seed(client, nhs_number(9))
    bundle = _patient_search(client, nhs_number(9), _elements="gender", _summary="true")
    (patient,) = _matches(bundle)
    assert set(patient) == {"resourceType", "id", "meta", "gender"}
    assert [i["expression"] for i in _outcome_issues(bundle)] == [["_summary"]]


def test_elements_apply_to_matches_not_to_included_resources(client):
    _seed(client, nhs_number(10))
    bundle = _patient_search(
        client, nhs_number(10), _elements="gender", _revinclude="ServiceRequest:subject"
    )
    (included,) = _included(bundle)
    assert "reasonCode" in included
    assert not _is_subsetted(included)


# --- read ---------------------------------------------------------------------------------------


def test_read_with_summary_and_elements(client):
    ids = _seed(client, nhs_number(11))
    url = f"/fhir/Patient/{ids['Patient']}"
    summary = client.get(url, params={"_summary": "true"})
    assert summary.status_code == 200
    assert "generalPractitioner" not in summary.json()
    assert _is_subsetted(summary.json())
    assert summary.headers["etag"] == 'W/"1"'
    elements = client.get(url, params={"_elements": "birthDate"}).json()
    assert set(elements) == {"resourceType", "id", "meta", "birthDate"}
    assert _is_subsetted(elements)
    whole = client.get(url).json()
    assert "generalPractitioner" in whole
    assert not _is_subsetted(whole)
    r = client.get(url, params={"_summary": "count"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["_summary"]
    vread = client.get(f"{url}/_history/1", params={"_elements": "gender"}).json()
    assert set(vread) == {"resourceType", "id", "meta", "gender"}


# --- _revinclude --------------------------------------------------------------------------------


def test_revinclude_adds_the_referrers_of_the_matches_and_only_them(client):
    a = _seed(client, nhs_number(12))
    b = _seed(client, nhs_number(13))
    bundle = _patient_search(client, nhs_number(12), _revinclude="ServiceRequest:subject")
    assert [p["id"] for p in _matches(bundle)] == [a["Patient"]]
    assert [(r["resourceType"], r["id"]) for r in _included(bundle)] == [
        ("ServiceRequest", a["ServiceRequest"])
    ]
    assert b["ServiceRequest"] not in json.dumps(bundle)
    assert bundle["total"] == 1  # includes do not count
    assert _outcome_issues(bundle) == []


def test_revinclude_through_provenance_target(client):
    a = _seed(client, nhs_number(14))
    b = _seed(client, nhs_number(15))
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": f"ServiceRequest/{a['ServiceRequest']}"}],
        "recorded": "2026-11-20T10:00:00+00:00",
        "agent": [{"who": {"reference": f"Practitioner/{a['Practitioner']}"}}],
    }
    r = client.post("/fhir/Provenance", content=json.dumps(provenance), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    prov_id = r.json()["id"]
    both = f"{a['ServiceRequest']},{b['ServiceRequest']}"
    bundle = client.get(
        "/fhir/ServiceRequest", params={"_id": both, "_revinclude": "Provenance:target"}
    ).json()
    assert {s["id"] for s in _matches(bundle)} == {a["ServiceRequest"], b["ServiceRequest"]}
    assert [(x["resourceType"], x["id"]) for x in _included(bundle)] == [("Provenance", prov_id)]
    only_b = client.get(
        "/fhir/ServiceRequest",
        params={"_id": b["ServiceRequest"], "_revinclude": "Provenance:target"},
    ).json()
    assert _included(only_b) == []


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("ServiceRequest", "Type:parameter"),  # no parameter
        ("ServiceRequest:requester", "requester"),  # not an indexed reference parameter
        ("ServiceRequest:status", "status"),  # indexed, but a token
        ("Spaceship:subject", "Spaceship"),  # not a type we hold
        ("PractitionerRole:practitioner", "practitioner"),  # cannot point at a Patient
        ("ServiceRequest:subject:Group", "Group"),  # target type is not the searched one
    ],
)
def test_unsupported_revinclude_is_400_naming_revinclude(client, services, value, named):
    _seed(client, nhs_number(16))
    before = services.repo.count()
    r = client.get("/fhir/Patient", params={"_revinclude": value})
    assert r.status_code == 400
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    assert issue["severity"] == "error"
    assert issue["code"] == "value"
    assert issue["expression"] == ["_revinclude"]
    assert named in issue["details"]["text"]
    assert services.repo.count() == before  # refused before anything ran


def test_revinclude_stops_at_the_bound_and_says_so(client, monkeypatch):
    for _ in range(3):  # one Patient (conditional create), three referrals
        ids = _seed(client, nhs_number(17))
    monkeypatch.setattr(revinclude, "MAX_REVINCLUDED", 2)
    bundle = _patient_search(client, nhs_number(17), _revinclude="ServiceRequest:subject")
    assert [p["id"] for p in _matches(bundle)] == [ids["Patient"]]
    assert len(_included(bundle)) == 2
    (issue,) = _outcome_issues(bundle)
    assert issue["code"] == "incomplete"
    assert issue["expression"] == ["_revinclude"]
    assert "2" in issue["details"]["text"]
    monkeypatch.setattr(revinclude, "MAX_REVINCLUDED", 3)
    exact = _patient_search(client, nhs_number(17), _revinclude="ServiceRequest:subject")
    assert len(_included(exact)) == 3
    assert _outcome_issues(exact) == []


# --- what stays ignored, and what the CapabilityStatement says ---------------------------------


def test_contained_is_still_reported_as_ignored(client):
    _seed(client, nhs_number(18))
    bundle = _patient_search(client, nhs_number(18), _contained="true", _summary="false")
    (issue,) = _outcome_issues(bundle)
    assert issue["code"] == "not-supported"
    assert issue["expression"] == ["_contained"]
    assert len(_matches(bundle)) == 1


def test_capability_statement_lists_revincludes_and_result_parameters(client):
    cs = client.get("/fhir/metadata").json()
    rest = cs["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert "ServiceRequest:subject" in patient["searchRevInclude"]
    assert "PractitionerRole:practitioner" not in patient["searchRevInclude"]
    sr = next(r for r in rest["resource"] if r["type"] == "ServiceRequest")
    assert "Provenance:target" in sr["searchRevInclude"]
    assert {"_summary", "_elements"} <= {p["name"] for p in rest["searchParam"]}
    # every advertised revinclude is accepted
    for spec in patient["searchRevInclude"]:
        assert client.get("/fhir/Patient", params={"_revinclude": spec}).status_code == 200, spec
