"""The two ways out of the fast path to fhirpathpy, so a result is never guessed.

- `Unsupported` at compile time: the expression uses FHIRPath outside the subset, and the rule keeps
  only the fhirpathpy evaluator;
- `Fallback` at run time: this data falls outside the subset's certain semantics, and the engine
  asks fhirpathpy for that resource.
"""

from __future__ import annotations


class Unsupported(Exception):
    """The expression uses FHIRPath this module does not compile."""


class Fallback(Exception):
    """This data needs fhirpathpy's full semantics."""
