"""What a rule reads: the resource as sent, or a view of it with its parts brought in.

The Welsh CTP rules (wales-measure/ctp.yaml) are written against the plan's Goals and CareTeam as
`contained` resources, the shape the RiO/SystmOne extracts are mapped to. (The English CPA rules
resolve a referenced CareTeam themselves, so an English care plan is judged as sent.) A
FHIR client may send the same plan with its Goals and CareTeam as resources of their own, referenced
from `CarePlan.goal` and `CarePlan.careTeam` (in the same transaction, or already stored). Judged as
sent, such a plan failed rules it meets (W-CTP-07 "no outcome in any area of life", W-CTP-22, W-CTP-04).
`care_plan_view` answers the rules with those referenced Goals and CareTeams appended to
`contained` (a copy: the resource stored is the resource sent). Referenced resources that do not
resolve, are of another type, or whose id is already taken by a contained one are left out.
"""

from __future__ import annotations

from typing import Final

from adapter.context import ValidationContext
from adapter.fhir.types import JsonObject

#: CarePlan element -> the type its references bring into the view.
_BROUGHT_IN: Final = {"goal": "Goal", "careTeam": "CareTeam"}
_PLAN_TYPE: Final = "https://fhir.cmh-adapter.example/CodeSystem/care-plan-type"


def _is_welsh_ctp(resource: JsonObject) -> bool:
    categories = resource.get("category")
    for category in categories if isinstance(categories, list) else ():
        codings = category.get("coding") if isinstance(category, dict) else None
        for coding in codings if isinstance(codings, list) else ():
            if (
                isinstance(coding, dict)
                and coding.get("system") == _PLAN_TYPE
                and coding.get("code") == "welsh-ctp"
            ):
                return True
    return False


def care_plan_view(resource: JsonObject, ctx: ValidationContext) -> JsonObject:
    if resource.get("resourceType") != "CarePlan" or not _is_welsh_ctp(resource):
        return resource
    contained = resource.get("contained")
    contained_list = contained if isinstance(contained, list) else []
    taken = {c.get("id") for c in contained_list if isinstance(c, dict)}
    brought: list[JsonObject] = []
    for element, resource_type in _BROUGHT_IN.items():
        references = resource.get(element)
        for reference in references if isinstance(references, list) else ():
            value = reference.get("reference") if isinstance(reference, dict) else None
            if not isinstance(value, str) or not value or value.startswith("#"):
                continue
            target = ctx.resolve(value)
            if not isinstance(target, dict) or target.get("resourceType") != resource_type:
                continue
            target_id = target.get("id")
            if not isinstance(target_id, str) or target_id in taken:
                continue
            taken.add(target_id)
            brought.append(target)
    if not brought:
        return resource
    return {**resource, "contained": [*contained_list, *brought]}
