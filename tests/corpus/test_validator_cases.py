"""Error/no-error agreement with the official validator test cases (fhir-test-cases).

Two slices: the R4 JSON cases with no package dependencies (base step, excluding the cases whose
expected errors all come from a terminology server), and the R4 JSON Questionnaire /
QuestionnaireResponse cases. The floors below are the agreement measured when they were set; a
drop below them, or any new false error, fails. The issue's target is 95%, met by the R4 JSON slice at 95.2%
(docs/conformance.md lists what is still missing).
"""

from __future__ import annotations

import pytest

from tests.corpus import agreement
from tests.corpus.harness import questionnaire_cases, r4_json_cases, require_corpora, run_case

pytestmark = pytest.mark.corpus

#: (minimum agreement, maximum false errors) per slice.
#: The R4 JSON false errors are deliberate: JSON with comments (refused by adapter.fhir.jsonio; the
#: cases set the reference validator's allow-comments option), malformed urn:uuid references (issue #3
#: requires rejecting malformed references) and two matchetype cases whose example.org extensions
#: the reference validator lets through although it rejects them elsewhere (pat-example-extensions),
#: and contained-resource-bad-id-ignore, whose validateContains=IGNORE setting we do not have (we
#: always validate contained resources, so the 65-character id is an error).
#: The reference validator's `noHtmlInMarkdown`, `security-checks`, `examples: false`,
#: `validateReference` and `for-publication` settings of a case are passed on to the validator
#: options (harness.configured_validator); other settings are not.
FLOORS = {"R4 JSON, no packages, no tx server": (0.951, 7), "R4 Questionnaire/QR": (0.977, 0)}


@pytest.mark.parametrize(
    ("name", "cases"),
    [
        ("R4 JSON, no packages, no tx server", r4_json_cases),
        ("R4 Questionnaire/QR", questionnaire_cases),
    ],
)
def test_agreement_with_the_reference_validator(name, cases) -> None:
    require_corpora()
    results = [run_case(c) for c in cases()]
    assert results
    s = agreement.record(name, results)
    floor, max_false = FLOORS[name]
    false_errors = [(r.key, r.ours[:2]) for r in results if r.got_error and not r.expected_error]
    assert s.ratio >= floor, f"agreement {s.ratio:.1%} below {floor:.0%}"
    assert len(false_errors) <= max_false, false_errors
