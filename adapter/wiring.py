"""Builds the long-lived services (store, stages, pipeline) from Settings. No web framework here.

Both the HTTP app and the CLI call `build_services`, so a CLI import goes through exactly the
same pipeline as a REST write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from adapter.clock import Clock, SystemClock
from adapter.conformance import ConformanceValidator
from adapter.pipeline import Pipeline
from adapter.policy import PolicyEngine, load_packs
from adapter.settings import Settings
from adapter.store.repository import Repository

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Services:
    settings: Settings
    repo: Repository
    pipeline: Pipeline
    policy: PolicyEngine
    conformance: ConformanceValidator

    def close(self) -> None:
        close = getattr(self.repo, "close", None)
        if callable(close):
            close()


def build_repository(settings: Settings) -> Repository:
    from adapter.store.sql import SqlRepository

    if settings.auto_migrate:
        from adapter.store.migrate import upgrade

        upgrade(settings.database_url, schema=settings.database_schema)
    return SqlRepository.from_settings(settings)


def build_policy(settings: Settings) -> PolicyEngine:
    from_settings = getattr(PolicyEngine, "from_settings", None)
    if callable(from_settings):
        engine: PolicyEngine = from_settings(settings)
        return engine
    return PolicyEngine(load_packs(settings.profiles_dir / "policy", list(settings.policy_packs)))


def build_services(
    settings: Settings, *, clock: Clock | None = None, repo: Repository | None = None
) -> Services:
    repo = repo if repo is not None else build_repository(settings)
    conformance = ConformanceValidator()
    policy = build_policy(settings)
    pipeline = Pipeline(
        repo, conformance, policy, clock=clock or SystemClock(), packs=tuple(settings.policy_packs)
    )
    return Services(
        settings=settings, repo=repo, pipeline=pipeline, policy=policy, conformance=conformance
    )
