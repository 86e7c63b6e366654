"""Dependencies, each named once as an Annotated alias, so endpoint signatures stay short and typed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from adapter.errors import NotFound, UnsupportedMediaType
from adapter.fhir.parse import parse_json_bytes
from adapter.fhir.resource_types import SUPPORTED
from adapter.fhir.types import JsonObject
from adapter.issue import Issue
from adapter.pipeline import Pipeline
from adapter.settings import Settings
from adapter.store.repository import Repository
from adapter.wiring import Services

ACCEPTED_BODY_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_pipeline(request: Request) -> Pipeline:
    return get_services(request).pipeline


def get_repo(request: Request) -> Repository:
    return get_services(request).repo


def get_settings_dep(request: Request) -> Settings:
    return get_services(request).settings


def base_url(request: Request) -> str:
    """The facade's base URL, for Location headers and Bundle links (no trailing slash)."""
    configured = get_services(request).settings.public_base_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"


async def fhir_body(request: Request) -> JsonObject:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in ACCEPTED_BODY_TYPES:
        raise UnsupportedMediaType(
            [
                Issue(
                    "error",
                    "not-supported",
                    f"Content-Type {content_type} is not supported; send application/fhir+json",
                )
            ]
        )
    return parse_json_bytes(await request.body())


def known_type(resource_type: str) -> str:
    if resource_type not in SUPPORTED:
        raise NotFound(
            [
                Issue(
                    "error",
                    "not-supported",
                    f"Resource type '{resource_type}' is not supported here",
                    expression="resourceType",
                )
            ]
        )
    return resource_type


ServicesDep = Annotated[Services, Depends(get_services)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
RepoDep = Annotated[Repository, Depends(get_repo)]
BaseUrlDep = Annotated[str, Depends(base_url)]
BodyDep = Annotated[JsonObject, Depends(fhir_body)]
