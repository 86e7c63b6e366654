"""Writes our FHIR conformance artefacts into profiles/ (StructureDefinitions with differentials,
CodeSystems, ValueSets and the DIALOG Questionnaire).

The artefacts are the source of truth once written; this script exists so that they stay consistent
(canonicals, versions, the DIALOG item table) and are reviewed as one diff. Sources: UK Core R4 profile
canonicals and DIALOG SNOMED CT concepts as recorded in ../shared/research/standards.md §1 and §5.

    .venv/bin/python tools/gen_profiles.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "profiles"
BASE = "https://fhir.cmh-adapter.example"
VERSION = "0.1.0"
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"
R4 = "http://hl7.org/fhir/StructureDefinition/"
SCT = "http://snomed.info/sct"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"

#: DIALOG items keyed by SNOMED CT concept (standards.md §5.1: MHSDS order, verified check digits).
DIALOG_ITEMS: list[tuple[str, str, str]] = [
    ("1037651000000100", "mental health", "life"),
    ("1037661000000102", "physical health", "life"),
    ("1037671000000109", "job situation", "life"),
    ("1037681000000106", "accommodation", "life"),
    ("1037691000000108", "leisure activities", "life"),
    ("1037701000000108", "friendships", "life"),
    ("1037711000000105", "partner/family", "life"),
    ("1037721000000104", "personal safety", "life"),
    ("1037731000000102", "medication", "treatment"),
    ("1037741000000106", "the practical help you receive", "treatment"),
    ("1037751000000109", "consultations with mental health professionals", "treatment"),
]
DIALOG_SCALE = [
    "totally dissatisfied",
    "very dissatisfied",
    "fairly dissatisfied",
    "in the middle",
    "fairly satisfied",
    "very satisfied",
    "totally satisfied",
]


def cs(cid: str, title: str, concepts: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": cid,
        "url": f"{BASE}/CodeSystem/{cid}",
        "version": VERSION,
        "name": cid.title().replace("-", ""),
        "title": title,
        "status": "draft",
        "content": "complete",
        "caseSensitive": True,
        "concept": [{"code": c, "display": d} for c, d in concepts],
    }


def vs(vid: str, title: str, includes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": vid,
        "url": f"{BASE}/ValueSet/{vid}",
        "version": VERSION,
        "name": vid.title().replace("-", ""),
        "title": title,
        "status": "draft",
        "compose": {"include": includes},
    }


def sd(
    sid: str, title: str, rtype: str, base: str, elements: list[dict[str, Any]], purpose: str
) -> dict[str, Any]:
    root: dict[str, Any] = {"id": rtype, "path": rtype}
    rest = []
    for e in elements:
        e.setdefault("id", e["path"])
        if e["id"] == rtype:
            root.update(e)
        else:
            rest.append(e)
    return {
        "resourceType": "StructureDefinition",
        "id": sid,
        "url": f"{BASE}/StructureDefinition/{sid}",
        "version": VERSION,
        "name": sid.replace("-", ""),
        "title": title,
        "status": "draft",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": rtype,
        "baseDefinition": base,
        "derivation": "constraint",
        "purpose": purpose,
        "differential": {"element": [root, *rest]},
    }


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def ours(kind: str, name: str) -> str:
    return f"{BASE}/{kind}/{name}"


def code_systems() -> list[dict[str, Any]]:
    return [
        cs(
            "care-plan-type",
            "Mental health care plan types",
            [
                ("cpa-care-plan", "Care Programme Approach care plan"),
                ("welsh-ctp", "Care and Treatment Plan (Mental Health (Wales) Measure 2010)"),
                ("crisis-contingency-plan", "Crisis and contingency plan"),
            ],
        ),
        cs(
            "welsh-ctp-life-area",
            "Care and Treatment Plan outcome areas (Measure s18)",
            [
                ("finance-and-money", "Finance and money"),
                ("accommodation", "Accommodation"),
                ("personal-care-and-physical-wellbeing", "Personal care and physical well-being"),
                ("education-and-training", "Education and training"),
                ("work-and-occupation", "Work and occupation"),
                ("parenting-or-caring-relationships", "Parenting or caring relationships"),
                ("social-cultural-or-spiritual", "Social, cultural or spiritual"),
                ("medical-and-other-treatment", "Medical and other forms of treatment"),
            ],
        ),
        cs(
            "mh-risk-type",
            "Mental health clinical risk types",
            [
                ("risk-to-self", "Risk to self (self-harm or suicide)"),
                ("risk-to-others", "Risk to others"),
                ("risk-from-others", "Risk from others (exploitation, abuse)"),
                ("self-neglect", "Self-neglect"),
            ],
        ),
        cs(
            "mh-risk-level",
            "Mental health risk level",
            [
                ("low", "Low"),
                ("moderate", "Moderate"),
                ("high", "High"),
            ],
        ),
        cs(
            "dialog-score",
            "DIALOG mean scores (no SNOMED or LOINC codes exist; standards.md §5.4)",
            [
                (
                    "subjective-quality-of-life",
                    "DIALOG subjective quality of life (mean of items 1-8)",
                ),
                ("treatment-satisfaction", "DIALOG treatment satisfaction (mean of items 9-11)"),
            ],
        ),
        cs(
            "cmh-service-request-category",
            "Community mental health referral categories",
            [
                ("cmht-referral", "Referral to a community mental health team"),
            ],
        ),
    ]


def value_sets() -> list[dict[str, Any]]:
    return [
        vs(
            "care-plan-type",
            "Mental health care plan types",
            [{"system": ours("CodeSystem", "care-plan-type")}],
        ),
        vs(
            "welsh-ctp-life-area",
            "Care and Treatment Plan outcome areas",
            [{"system": ours("CodeSystem", "welsh-ctp-life-area")}],
        ),
        vs(
            "mh-risk-type",
            "Mental health clinical risk types",
            [{"system": ours("CodeSystem", "mh-risk-type")}],
        ),
        vs(
            "mh-risk-level",
            "Mental health risk level",
            [{"system": ours("CodeSystem", "mh-risk-level")}],
        ),
        vs(
            "dialog-item",
            "DIALOG item concepts (SNOMED CT)",
            [
                {
                    "system": SCT,
                    "concept": [
                        {"code": c, "display": f"DIALOG item score - {d}"}
                        for c, d, _ in DIALOG_ITEMS
                    ],
                }
            ],
        ),
        vs("dialog-score", "DIALOG mean scores", [{"system": ours("CodeSystem", "dialog-score")}]),
    ]


def structure_definitions() -> list[dict[str, Any]]:
    cat = ours("CodeSystem", "care-plan-type")
    req = "required"
    dialog_q = ours("Questionnaire", "dialog")
    score_elements = lambda code: [  # noqa: E731
        {"path": "Observation.status", "fixedCode": "final"},
        {
            "path": "Observation.code",
            "patternCodeableConcept": {
                "coding": [coding(ours("CodeSystem", "dialog-score"), code)]
            },
        },
        {
            "path": "Observation.subject",
            "min": 1,
            "type": [{"code": "Reference", "targetProfile": [R4 + "Patient"]}],
        },
        {"path": "Observation.effective[x]", "min": 1},
        {"path": "Observation.value[x]", "min": 1, "type": [{"code": "Quantity"}]},
        {"path": "Observation.derivedFrom", "min": 1},
        {
            "path": "Observation",
            "constraint": [
                {
                    "key": "dialog-score-1",
                    "severity": "error",
                    "human": "A DIALOG mean score lies between 1 and 7",
                    "expression": "value.ofType(Quantity).value.all($this >= 1 and $this <= 7)",
                }
            ],
        },
    ]
    return [
        sd(
            "CMH-Patient",
            "Patient with UK Core identifiers",
            "Patient",
            UKCORE + "Patient",
            [
                {
                    "path": "Patient.identifier",
                    "min": 1,
                    "slicing": {
                        "discriminator": [{"type": "value", "path": "system"}],
                        "rules": "open",
                    },
                },
                {
                    "id": "Patient.identifier:nhsNumber",
                    "path": "Patient.identifier",
                    "sliceName": "nhsNumber",
                    "min": 0,
                    "max": "1",
                },
                {
                    "id": "Patient.identifier:nhsNumber.system",
                    "path": "Patient.identifier.system",
                    "min": 1,
                    "fixedUri": NHS_NUMBER,
                },
                {
                    "id": "Patient.identifier:nhsNumber.value",
                    "path": "Patient.identifier.value",
                    "min": 1,
                },
                {"path": "Patient.name", "min": 1},
                {"path": "Patient.birthDate", "min": 1},
            ],
            "A patient of a community mental health service, identified by NHS number where known.",
        ),
        sd(
            "CMHT-Referral",
            "Referral to a community mental health team",
            "ServiceRequest",
            UKCORE + "ServiceRequest",
            [
                {"path": "ServiceRequest.identifier", "min": 1},
                {"path": "ServiceRequest.intent", "fixedCode": "order"},
                {
                    "path": "ServiceRequest.category",
                    "min": 1,
                    "patternCodeableConcept": {
                        "coding": [
                            coding(
                                ours("CodeSystem", "cmh-service-request-category"), "cmht-referral"
                            )
                        ]
                    },
                },
                {"path": "ServiceRequest.priority", "min": 1},
                {
                    "path": "ServiceRequest.subject",
                    "type": [{"code": "Reference", "targetProfile": [R4 + "Patient"]}],
                },
                {"path": "ServiceRequest.authoredOn", "min": 1},
                {"path": "ServiceRequest.requester", "min": 1},
                {"path": "ServiceRequest.reasonCode", "min": 1},
            ],
            "A referral into a CMHT (GP, self or other source).",
        ),
        sd(
            "CPA-CarePlan",
            "Care Programme Approach care plan",
            "CarePlan",
            UKCORE + "CarePlan",
            [
                {
                    "path": "CarePlan.category",
                    "min": 1,
                    "patternCodeableConcept": {"coding": [coding(cat, "cpa-care-plan")]},
                },
                {"path": "CarePlan.period", "min": 1},
                {"path": "CarePlan.careTeam", "min": 1},
                {"path": "CarePlan.goal", "min": 1},
                {"path": "CarePlan.author", "min": 1},
            ],
            "The CPA care plan (England; legacy but still in use).",
        ),
        sd(
            "Welsh-CTP",
            "Care and Treatment Plan (Mental Health (Wales) Measure 2010)",
            "CarePlan",
            UKCORE + "CarePlan",
            [
                {
                    "path": "CarePlan.category",
                    "min": 1,
                    "patternCodeableConcept": {"coding": [coding(cat, "welsh-ctp")]},
                },
                {"path": "CarePlan.period", "min": 1},
                {"path": "CarePlan.careTeam", "min": 1},
                {"path": "CarePlan.goal", "min": 1},
                {
                    "path": "CarePlan",
                    "constraint": [
                        {
                            "key": "ctp-1",
                            "severity": "error",
                            "human": "A CTP is recorded in writing with a review date (period.end)",
                            "expression": "period.end.exists()",
                        }
                    ],
                },
            ],
            "Statutory written plan under Part 2 of the Measure; reviewed at least yearly.",
        ),
        sd(
            "Crisis-Contingency-Plan",
            "Crisis and contingency plan",
            "CarePlan",
            UKCORE + "CarePlan",
            [
                {
                    "path": "CarePlan.category",
                    "min": 1,
                    "patternCodeableConcept": {"coding": [coding(cat, "crisis-contingency-plan")]},
                },
                {"path": "CarePlan.addresses", "min": 1},
                {"path": "CarePlan.activity", "min": 1},
            ],
            "What to do, and whom to contact, in a crisis; addresses the identified risks.",
        ),
        sd(
            "MH-CareTeam",
            "Mental health care team",
            "CareTeam",
            UKCORE + "CareTeam",
            [
                {"path": "CareTeam.subject", "min": 1},
                {"path": "CareTeam.participant", "min": 1},
                {"path": "CareTeam.participant.role", "min": 1},
                {"path": "CareTeam.participant.member", "min": 1},
            ],
            "The team around a CPA plan or CTP, including the care coordinator.",
        ),
        sd(
            "MH-Goal",
            "Care plan goal (with CTP outcome area)",
            "Goal",
            R4 + "Goal",
            [
                {
                    "path": "Goal.category",
                    "binding": {
                        "strength": req,
                        "valueSet": ours("ValueSet", "welsh-ctp-life-area"),
                    },
                },
                {
                    "path": "Goal.subject",
                    "type": [{"code": "Reference", "targetProfile": [R4 + "Patient"]}],
                },
            ],
            "No UK Core Goal exists; derives from base R4 Goal.",
        ),
        sd(
            "MH-RiskAssessment",
            "Mental health risk assessment",
            "RiskAssessment",
            R4 + "RiskAssessment",
            [
                {"path": "RiskAssessment.status", "fixedCode": "final"},
                {
                    "path": "RiskAssessment.subject",
                    "type": [{"code": "Reference", "targetProfile": [R4 + "Patient"]}],
                },
                {"path": "RiskAssessment.occurrence[x]", "min": 1},
                {"path": "RiskAssessment.performer", "min": 1},
                {"path": "RiskAssessment.prediction", "min": 1},
                {
                    "path": "RiskAssessment.prediction.outcome",
                    "min": 1,
                    "binding": {"strength": req, "valueSet": ours("ValueSet", "mh-risk-type")},
                },
                {
                    "path": "RiskAssessment.prediction.qualitativeRisk",
                    "min": 1,
                    "binding": {"strength": req, "valueSet": ours("ValueSet", "mh-risk-level")},
                },
            ],
            "No UK Core RiskAssessment exists (standards.md §1.13); derives from base R4.",
        ),
        sd(
            "DIALOG-QuestionnaireResponse",
            "DIALOG response",
            "QuestionnaireResponse",
            UKCORE + "QuestionnaireResponse",
            [
                {
                    "path": "QuestionnaireResponse.questionnaire",
                    "min": 1,
                    "fixedCanonical": dialog_q,
                },
                {
                    "path": "QuestionnaireResponse.subject",
                    "min": 1,
                    "type": [{"code": "Reference", "targetProfile": [R4 + "Patient"]}],
                },
                {"path": "QuestionnaireResponse.authored", "min": 1},
            ],
            "A completed DIALOG; answers are checked against the DIALOG Questionnaire.",
        ),
        sd(
            "DIALOG-SubjectiveQualityOfLife",
            "DIALOG subjective quality of life score",
            "Observation",
            UKCORE + "Observation",
            score_elements("subjective-quality-of-life"),
            "Mean of DIALOG items 1-8.",
        ),
        sd(
            "DIALOG-TreatmentSatisfaction",
            "DIALOG treatment satisfaction score",
            "Observation",
            UKCORE + "Observation",
            score_elements("treatment-satisfaction"),
            "Mean of DIALOG items 9-11.",
        ),
        sd(
            "MH-DischargeSummary",
            "Mental health discharge summary",
            "Composition",
            UKCORE + "Composition",
            [
                {
                    "path": "Composition.type",
                    "patternCodeableConcept": {"coding": [coding(SCT, "373942005")]},
                },
                {"path": "Composition.subject", "min": 1},
                {"path": "Composition.encounter", "min": 1},
                {"path": "Composition.custodian", "min": 1},
                {"path": "Composition.section", "min": 1},
                {"path": "Composition.section.code", "min": 1},
            ],
            "PRSB mental health discharge summary as a UK Core Composition.",
        ),
        sd(
            "MH-Encounter",
            "Mental health encounter (admission or discharge)",
            "Encounter",
            UKCORE + "Encounter",
            [
                {
                    "path": "Encounter.subject",
                    "min": 1,
                    "type": [{"code": "Reference", "targetProfile": [R4 + "Patient"]}],
                },
                {"path": "Encounter.period", "min": 1},
                {"path": "Encounter.serviceProvider", "min": 1},
                {
                    "path": "Encounter",
                    "constraint": [
                        {
                            "key": "mh-enc-1",
                            "severity": "error",
                            "human": "A finished encounter has an end date",
                            "expression": "status = 'finished' implies period.end.exists()",
                        }
                    ],
                },
            ],
            "The encounter a discharge summary is about.",
        ),
    ]


def dialog_questionnaire() -> dict[str, Any]:
    items = []
    for n, (code, area, domain) in enumerate(DIALOG_ITEMS, start=1):
        items.append(
            {
                "linkId": f"dialog-{n}",
                "code": [coding(SCT, code)],
                "text": f"How satisfied are you with {area}?",
                "type": "integer",
                "required": True,
                "answerOption": [{"valueInteger": i} for i in range(1, 8)],
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl",
                        "valueCodeableConcept": {
                            "coding": [
                                coding(
                                    "http://hl7.org/fhir/questionnaire-item-control", "radio-button"
                                )
                            ]
                        },
                    }
                ],
                "prefix": domain,
            }
        )
        items.append(
            {
                "linkId": f"dialog-{n}-help",
                "text": "Do you need more help in this area?",
                "type": "boolean",
            }
        )
    return {
        "resourceType": "Questionnaire",
        "id": "dialog",
        "url": ours("Questionnaire", "dialog"),
        "version": VERSION,
        "name": "DIALOG",
        "title": "DIALOG",
        "status": "draft",
        "subjectType": ["Patient"],
        "meta": {"profile": [UKCORE + "Questionnaire"]},
        "description": "DIALOG: 8 life-domain and 3 treatment items rated 1 ("
        + DIALOG_SCALE[0]
        + ") to 7 ("
        + DIALOG_SCALE[-1]
        + "), each with a yes/no additional-help question.",
        "item": items,
    }


def main() -> None:
    groups = {
        "code-systems": code_systems(),
        "value-sets": value_sets(),
        "structure-definitions": structure_definitions(),
        "questionnaires": [dialog_questionnaire()],
    }
    for folder, artefacts in groups.items():
        (OUT / folder).mkdir(parents=True, exist_ok=True)
        for a in artefacts:
            path = OUT / folder / f"{a['resourceType']}-{a['id']}.json"
            path.write_text(json.dumps(a, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
