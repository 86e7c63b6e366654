"""Builds the long-lived services (store, stages, pipeline) from Settings. No web framework here.

Both the HTTP app and the CLI call `build_services`, so a CLI import goes through exactly the
same pipeline as a REST write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from adapter.clock import Clock, SystemClock
from adapter.conformance import ConformanceValidator
from adapter.idempotency import IdempotencyStore
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
    #: The in-process outbox delivery thread (backend=remote), if any; stopped by close().
    delivery: Any = None
    #: Stored Idempotency-Key responses, in the embedded store's database.
    idempotency: IdempotencyStore | None = None

    def close(self) -> None:
        if self.delivery is not None:
            self.delivery.stop()
        close = getattr(self.repo, "close", None)
        if callable(close):
            close()


def build_repository(settings: Settings) -> Repository:
    """backend=embedded: the SQL store. backend=remote: the SQL store plus the outbox (writes commit
    locally with their outbox message, then go to FHIR_BASE_URL; reads stay local)."""
    from adapter.store.sql import SqlRepository

    if settings.auto_migrate:
        from adapter.store.migrate import upgrade

        upgrade(settings.database_url, schema=settings.database_schema)
    sql = SqlRepository.from_settings(settings.model_copy(update={"auto_migrate": False}))
    if settings.backend != "remote":
        return sql
    from adapter.store.outbox import CircuitBreaker, Outbox, OutboxRepository

    if not settings.fhir_base_url:
        from adapter.errors import InputError

        raise InputError("ADAPTER_BACKEND=remote needs FHIR_BASE_URL")
    breaker = CircuitBreaker(
        settings.outbox_breaker_threshold, settings.outbox_breaker_reset_seconds
    )
    return OutboxRepository(
        sql,
        Outbox(sql.engine),
        breaker=breaker,
        refuse_when_down=settings.outbox_when_down == "refuse",
    )


def build_delivery(settings: Settings, repo: Repository) -> Any:
    """The in-process delivery worker for an OutboxRepository (None otherwise, or when disabled)."""
    from adapter.store.outbox import (
        BackgroundDelivery,
        DeliveryWorker,
        OutboxRepository,
        RetryPolicy,
    )
    from adapter.store.remote import AsyncFhirClient

    if not isinstance(repo, OutboxRepository) or not settings.outbox_worker_in_process:
        return None
    policy = RetryPolicy(
        settings.outbox_max_attempts,
        settings.outbox_backoff_base_seconds,
        settings.outbox_backoff_max_seconds,
    )
    worker = DeliveryWorker(
        repo.outbox,
        AsyncFhirClient.from_settings(settings),
        policy=policy,
        breaker=repo.breaker,
        batch_size=settings.outbox_batch_size,
        messages_per_bundle=settings.outbox_messages_per_bundle,
    )
    delivery = BackgroundDelivery(worker, poll_seconds=settings.outbox_poll_seconds)
    delivery.start()
    return delivery


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
        settings=settings,
        repo=repo,
        pipeline=pipeline,
        policy=policy,
        conformance=conformance,
        delivery=build_delivery(settings, repo),
        idempotency=build_idempotency(settings, repo),
    )


def build_idempotency(settings: Settings, repo: Repository) -> IdempotencyStore:
    """On the store's own engine (its database is migrated by build_repository)."""
    from datetime import timedelta

    from adapter.store.outbox import OutboxRepository
    from adapter.store.sql import SqlRepository, build_engine

    sql = repo.sql if isinstance(repo, OutboxRepository) else repo
    if isinstance(sql, SqlRepository):
        engine = sql.engine
    else:
        engine = build_engine(settings.database_url, settings.database_schema)
    return IdempotencyStore(
        engine,
        window=timedelta(hours=settings.idempotency_window_hours),
        in_flight_timeout=timedelta(seconds=settings.idempotency_in_flight_seconds),
    )
