from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.wiring import build_services


@pytest.fixture
def services(settings):
    s = build_services(settings)
    yield s
    s.close()


@pytest.fixture
def client(settings, services) -> Iterator[TestClient]:
    app = create_app(settings, services=services)
    with TestClient(app, base_url="http://testserver") as c:
        yield c
