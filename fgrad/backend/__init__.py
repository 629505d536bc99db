"""The jit backend: lower a closed jaxpr to compiled code.

`compile_jaxpr(closed)` returns a callable taking the jaxpr's inputs (flat) and
returning its outputs as a list of NumPy values; it also offers `as_text()` and
`kernels()` for `jit(f).lower(...)`.

The pipeline, one module per stage:

    passes.py    inline nested calls, fold constants, CSE, DCE
    fusion.py    group elementwise ops (and one reduction) into loop nests
    codegen.py   Python source of one Numba function per program (loops, BLAS, control flow)
    cache.py     source stored by content on disk, imported, compiled or loaded by Numba
    executor.py  the host function: one call into compiled code
    runtime.py   what kernels import: BLAS (NumPy's OpenBLAS), argmax loops

Numba is imported only when the first program is compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ir import ClosedJaxpr


def compile_jaxpr(closed: ClosedJaxpr, name: str | None = None) -> Callable[..., list[Any]]:
    """The compiled program for `closed` (see `executor.compile_jaxpr`)."""
    from . import executor

    return executor.compile_jaxpr(closed, name)


def stats() -> dict[str, int]:
    """Kernel cache counters: compiled, loaded (from disk), memory_hits, rewritten."""
    from . import cache

    return cache.stats()
