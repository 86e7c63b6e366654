"""The only road to storage: prepare -> structural parse -> conformance -> policy -> store.

Every write (REST create/update/delete, transaction and batch Bundles, mapped feeds, CLI imports,
outbox replays) goes through `Pipeline`. A unit of work (one resource, or one transaction Bundle) is
judged whole *as it will be stored* (urn:uuid references rewritten, ids assigned) and is written
whole or not at all. Stages return issues; only this module decides to reject:

- structural errors (native, from the R4 core tables) -> InputError 400
- conformance errors (R4 rules, profiles)         -> ConformanceError 422
- policy errors (MUST rules, not overridden)      -> PolicyViolation 422
"""

from adapter.pipeline.core import Pipeline, WriteResult, references_in
from adapter.pipeline.entries import METHOD_ORDER, parse_etag
from adapter.pipeline.hooks import WriteHook

__all__ = ["METHOD_ORDER", "Pipeline", "WriteHook", "WriteResult", "parse_etag", "references_in"]
