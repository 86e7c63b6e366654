"""A small real FHIR server for the backing side of the outbox tests and bench, with no validation.

Starlette over its own SqlRepository: metadata, read, search, POST, PUT (with If-Match), transaction
Bundles of PUT/POST/DELETE entries. It stores whatever it is sent: the backing server's validation
is not what the fault tests and the bench measure, and our full facade as a backing server spends
most of its time validating. Run it as a killable process:

    python -m tests.support.loopback_fhir --port 8099 --database-url sqlite:///backing.sqlite3
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapter.errors import AdapterError, InputError
from adapter.fhir.search import parse_search
from adapter.outcome import operation_outcome
from adapter.pipeline import parse_etag
from adapter.store.migrate import upgrade
from adapter.store.sql import SqlRepository, build_engine

FHIR = "application/fhir+json"
Handler = Callable[[Request], Awaitable[Response]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers=headers, media_type=FHIR)


def build_app(repo: SqlRepository) -> Starlette:
    def fhir_errors(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except AdapterError as exc:
                return _json(operation_outcome(exc.issues), exc.status, exc.headers)

        return wrapped

    async def metadata(request: Request) -> Response:
        return _json(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "kind": "instance",
                "fhirVersion": "4.0.1",
                "format": ["json"],
            }
        )

    async def read(request: Request) -> Response:
        stored = repo.read(request.path_params["type"], request.path_params["id"])
        return _json(stored.resource, headers={"ETag": stored.etag})

    async def search(request: Request) -> Response:
        query, _ = parse_search(
            list(request.query_params.multi_items()), default_count=50, max_count=1000
        )
        page = repo.search(request.path_params["type"], query)
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": s.resource, "search": {"mode": "match"}} for s in page.resources
            ],
            "link": [],
        }
        if page.has_next:
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]
            params.append(("_offset", str(query.offset + query.count)))
            url = request.url.replace_query_params(**dict(params))
            bundle["link"].append({"relation": "next", "url": str(url)})
        return _json(bundle)

    async def put(request: Request) -> Response:
        body = json.loads(await request.body())
        body["id"] = request.path_params["id"]
        stored, created = repo.update(body, if_match=parse_etag(request.headers.get("if-match")))
        return _json(stored.resource, 201 if created else 200, {"ETag": stored.etag})

    async def create(request: Request) -> Response:
        body = json.loads(await request.body())
        stored = repo.create(body, id=str(uuid.uuid4()))
        location = f"{request.url}/{stored.id}/_history/{stored.version_id}"
        return _json(stored.resource, 201, {"ETag": stored.etag, "Location": location})

    async def transaction(request: Request) -> Response:
        bundle = json.loads(await request.body())
        if bundle.get("type") != "transaction":
            raise InputError("Only transaction Bundles are supported here")
        responses: list[dict[str, Any]] = []
        with repo.unit_of_work() as unit:
            for entry in bundle.get("entry") or []:
                req = entry["request"]
                method, url = req["method"], req["url"]
                if method == "DELETE":
                    resource_type, id = url.split("/")
                    unit.delete(resource_type, id, if_match=parse_etag(req.get("ifMatch")))
                    responses.append({"response": {"status": "204 No Content"}})
                    continue
                resource = dict(entry["resource"])
                if method == "PUT":
                    resource["id"] = url.split("/")[1]
                    stored, created = unit.update(resource, if_match=parse_etag(req.get("ifMatch")))
                else:
                    stored, created = unit.create(resource, id=str(uuid.uuid4())), True
                status = "201 Created" if created else "200 OK"
                responses.append(
                    {
                        "response": {
                            "status": status,
                            "etag": stored.etag,
                            "location": f"{stored.resource_type}/{stored.id}",
                        }
                    }
                )
        return _json({"resourceType": "Bundle", "type": "transaction-response", "entry": responses})

    routes = [
        Route("/fhir/metadata", fhir_errors(metadata), methods=["GET"]),
        Route("/fhir", fhir_errors(transaction), methods=["POST"]),
        Route("/fhir/", fhir_errors(transaction), methods=["POST"]),
        Route("/fhir/{type}", fhir_errors(search), methods=["GET"]),
        Route("/fhir/{type}", fhir_errors(create), methods=["POST"]),
        Route("/fhir/{type}/{id}", fhir_errors(read), methods=["GET"]),
        Route("/fhir/{type}/{id}", fhir_errors(put), methods=["PUT"]),
    ]
    return Starlette(routes=routes)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    upgrade(args.database_url)
    repo = SqlRepository(build_engine(args.database_url))
    uvicorn.run(
        build_app(repo), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
