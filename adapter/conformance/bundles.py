"""Bundle rules the R4 invariants do not express: absolute fullUrls, search results with ids,
link relations used once, and Attachment sizes that match their data.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

from adapter.fhir.types import JsonObject
from adapter.issue import Issue

_ABSOLUTE: Final = re.compile(r"^[a-z][a-z0-9+.\-]*:\S+$")


def bundle_issues(bundle: JsonObject) -> list[Issue]:
    issues: list[Issue] = []
    seen_relations: set[str] = set()
    for i, link in enumerate(bundle.get("link") or []):
        relation = link.get("relation") if isinstance(link, dict) else None
        if isinstance(relation, str):
            if relation in seen_relations:
                issues.append(
                    Issue(
                        "error",
                        "invalid",
                        f"The link relation '{relation}' can only occur once",
                        f"Bundle.link[{i}]",
                    )
                )
            seen_relations.add(relation)
    for i, entry in enumerate(bundle.get("entry") or []):
        if not isinstance(entry, dict):
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and not _ABSOLUTE.match(full_url):
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    "The fullUrl must be an absolute URL",
                    f"Bundle.entry[{i}].fullUrl",
                )
            )
        res = entry.get("resource")
        if (
            bundle.get("type") == "searchset"
            and isinstance(res, dict)
            and res.get("resourceType") != "OperationOutcome"  # search-mode "outcome" entries
            and not res.get("id")
        ):
            issues.append(
                Issue(
                    "error",
                    "required",
                    "Search results must have ids",
                    f"Bundle.entry[{i}].resource",
                )
            )
    return issues


def attachment_problem(attachment: JsonObject) -> str | None:
    """Why an Attachment's stated size disagrees with its data, or None."""
    data, size = attachment.get("data"), attachment.get("size")
    if not isinstance(data, str) or isinstance(size, bool) or not isinstance(size, int):
        return None
    try:
        actual = len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return None
    if actual != size:
        return "The stated Attachment size does not match the size of its data"
    return None
