"""`settle_heap` freezes the start-up heap once per process (checked in a fresh interpreter, so
the test suite's own process is not what is measured)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_settle_heap_freezes_once_and_raises_the_young_threshold() -> None:
    script = textwrap.dedent(
        """
        import gc
        from adapter.runtime import GC_THRESHOLDS, settle_heap
        from adapter.wiring import build_services  # start-up imports: a real heap to freeze
        assert gc.get_freeze_count() == 0
        first, second = settle_heap(), settle_heap()
        print(first, second, gc.get_freeze_count() > 50_000, gc.get_threshold() == GC_THRESHOLDS)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["True", "False", "True", "True"]
