"""Operations endpoints for the platform, outside /fhir: liveness, readiness and metrics.

- `GET /healthz`: the process answers (liveness); touches nothing.
- `GET /readyz`: the store answers a query and the policy packs are loaded (readiness); 503 with an
  OperationOutcome otherwise, so a load balancer stops sending writes the adapter cannot judge or
  keep.
- `GET /metrics`: Prometheus text (prometheus_client): AuditEvents the store refused, the outbox's
  pending, delivered and dead messages and open dead letters (backend=remote), stored resources by
  type, the loaded policy packs. Counts and names only: never patient data, so these need no token;
  expose them on the platform's internal network only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.responses import Response

from adapter.api.deps import get_services
from adapter.api.responses import FhirResponse
from adapter.errors import AdapterError
from adapter.fhir.resource_types import SUPPORTED_TYPES
from adapter.issue import Issue
from adapter.outcome import operation_outcome

router = APIRouter(tags=["operations"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Response:
    services = get_services(request)
    problems: list[Issue] = []
    try:
        services.repo.count("Patient")
    except AdapterError as exc:
        problems += exc.issues or [Issue("error", "transient", "The store does not answer")]
    if not services.policy.stamps():
        problems.append(Issue("error", "exception", "No policy pack is loaded"))
    if problems:
        return FhirResponse(operation_outcome(problems), status_code=503)
    return FhirResponse({"status": "ready", "policy_packs": services.policy.stamps()})


class _AdapterCollector:
    """Reads the numbers when scraped; nothing is kept between scrapes."""

    def __init__(self, request: Request):
        self.request = request

    def collect(self) -> Iterator[Metric]:
        services = get_services(self.request)
        smart: Any = getattr(self.request.app.state, "smart", None)
        failures = GaugeMetricFamily(
            "cmh_audit_failures",
            "AuditEvents the store refused since the process started (counted and logged)",
        )
        failures.add_metric([], smart.audit_failures.count if smart is not None else 0)
        yield failures
        resources = GaugeMetricFamily(
            "cmh_stored_resources", "Current stored resources by type", labels=["type"]
        )
        for resource_type in SUPPORTED_TYPES:
            resources.add_metric([resource_type], services.repo.count(resource_type))
        yield resources
        packs = GaugeMetricFamily(
            "cmh_policy_pack_info", "Loaded policy packs (name@version+sha256)", labels=["stamp"]
        )
        for stamp in services.policy.stamps():
            packs.add_metric([stamp], 1)
        yield packs
        outbox = getattr(services.repo, "outbox", None)
        if outbox is not None:
            status = outbox.status()
            messages = GaugeMetricFamily(
                "cmh_outbox_messages", "Outbox messages by status", labels=["status"]
            )
            for name in ("pending", "delivered", "dead"):
                messages.add_metric([name], status[name])
            yield messages
            dead = GaugeMetricFamily(
                "cmh_outbox_dead_letters_open", "Dead letters not yet replayed"
            )
            dead.add_metric([], status["dead_letters_open"])
            yield dead


@router.get("/metrics")
def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AdapterCollector(request))
    try:
        body = generate_latest(registry)
    except AdapterError as exc:
        return FhirResponse(operation_outcome(exc.issues), status_code=503)
    return Response(body, media_type=PROMETHEUS_TEXT)
