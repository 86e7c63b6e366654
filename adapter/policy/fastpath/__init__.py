"""A fast evaluator for the simple FHIRPath shapes the rule packs use, run straight over the JSON.

fhirpathpy is exact but costs 0.1-1 ms per expression (it wraps every node and re-walks its
tables); the packs hold hundreds of expressions, so that alone broke the 1 ms per resource budget.
This package compiles fhirpathpy's own parse tree (so the grammar is the same) into closures for a
subset: member paths with choice types (`value` -> `valueCoding`), `$this`, literals, `=` `!=` `in`
`contains` `|` `<` `<=` `>` `>=`, `and` `or` `xor` `implies`, and exists/empty/count/where/all/
not/first/ofType/extension/startsWith/endsWith.

Two ways out to fhirpathpy, so a result is never guessed:
- `Unsupported` at compile time: the rule keeps only the fhirpathpy evaluator;
- `Fallback` at run time, when data falls outside the subset's certain semantics (a primitive
  carrying an `_element` extension, a date-like string compared, a complex value in `=`, a
  non-boolean where a boolean is expected); the engine then asks fhirpathpy for that resource.

The modules, from the bottom up: `errors` (the two ways out), `dispatch` (one node to its handler),
`focus` (the per-resource cache), `access` (members and choice types), `values` (certain value
semantics), `nodes` (reading the parse tree), `operators`, `criteria` (item predicates for
where/all/exists), `criterialoops` (the loops that apply them), `functions`, `compiler` (the tree
walk, `compile_fast`).

tests/unit/policy/test_fastpath.py runs every rule and guard over every fixture through both paths
and requires identical answers.
"""

from __future__ import annotations

from adapter.policy.fastpath.access import FHIR_TYPES
from adapter.policy.fastpath.compiler import compile_fast, is_true
from adapter.policy.fastpath.criteria import Predicate, _predicate
from adapter.policy.fastpath.dispatch import FastFn, _expr
from adapter.policy.fastpath.errors import Fallback, Unsupported
from adapter.policy.fastpath.focus import Focus

__all__ = [
    "FHIR_TYPES",
    "Fallback",
    "FastFn",
    "Focus",
    "Predicate",
    "Unsupported",
    "_expr",
    "_predicate",
    "compile_fast",
    "is_true",
]
