"""R4 `patch` (https://hl7.org/fhir/R4/http.html#patch) with JSON Patch (RFC 6902).

`PATCH /fhir/{type}/{id}` with `Content-Type: application/json-patch+json`. The patch is applied to
the current version by `Pipeline.patch`, and the result is judged and written exactly as an update
(structure 400, conformance and policy 422, `If-Match` 412). A document that is not JSON Patch is a
400; a patch that cannot be applied (a failed `test`, a missing path, a change of id) is a 422.
FHIRPath Patch (a Parameters body) is not supported: 415 says so. Scopes: a patch is an update.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from adapter.api.deps import BaseUrlDep, PipelineDep, known_type
from adapter.api.routers.crud import PreferHeader, check_existing, write_response
from adapter.api.security import GrantDep, audited, check_resource, require
from adapter.errors import UnsupportedMediaType
from adapter.fhir import jsonio
from adapter.fhir.parse import parse_json_bytes
from adapter.issue import Issue
from adapter.pipeline import parse_etag

router = APIRouter(tags=["patch"])

JSON_PATCH = "application/json-patch+json"


async def _patch_document(request: Request) -> object:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON_PATCH:
        raise UnsupportedMediaType(
            [
                Issue(
                    "error",
                    "not-supported",
                    f"PATCH takes a JSON Patch document ({JSON_PATCH}); "
                    f"{content_type or 'no Content-Type'} is not supported (no FHIRPath Patch)",
                )
            ]
        )
    raw = await request.body()
    if raw.strip().startswith(b"["):
        try:
            return jsonio.loads(raw)
        except jsonio.JsonSyntaxError:
            pass  # parse_json_bytes below gives the 400 with line and column
    return parse_json_bytes(raw, what="JSON Patch document")


PatchDocument = Annotated[object, Depends(_patch_document)]


@router.patch("/{resource_type}/{id}")
def patch(
    resource_type: str,
    id: str,
    request: Request,
    document: PatchDocument,
    pipeline: PipelineDep,
    base: BaseUrlDep,
    grant: GrantDep,
    prefer: PreferHeader = None,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    known_type(resource_type)
    with audited(request, grant, "patch", resource_type, id) as note:
        require(grant, "update", resource_type)
        check_existing(request, grant, "update", resource_type, id)
        result = pipeline.patch(
            resource_type,
            id,
            document,
            if_match=parse_etag(if_match),
            on_write=note.hook,
            authorise=lambda patched: check_resource(grant, "update", patched),
        )
        return write_response(result, base, prefer)
