"""The jit backend: lower a closed jaxpr to compiled code.

`compile_jaxpr(closed)` returns a callable taking the jaxpr's inputs (flat) and
returning its outputs as a list of NumPy arrays; it may also offer `as_text()` and
`kernels()` for `jit(f).lower(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import eval_jaxpr
from ..ir import ClosedJaxpr


def compile_jaxpr(closed: ClosedJaxpr) -> Callable[..., list[Any]]:
    """For now the IR interpreter over the NumPy implementations; the Numba code
    generator replaces this."""

    def run(*args: Any) -> list[Any]:
        return eval_jaxpr(closed.jaxpr, closed.consts, *args)

    return run
