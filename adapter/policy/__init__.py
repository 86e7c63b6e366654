"""Policy: service rules from the seed documents, as cited rule packs. Judges; never persists."""

from __future__ import annotations

from adapter.policy.engine import Evaluation, PolicyEngine
from adapter.policy.rulepack import Rule, RulePack, load_pack, load_packs

__all__ = ["Evaluation", "PolicyEngine", "Rule", "RulePack", "load_pack", "load_packs"]
