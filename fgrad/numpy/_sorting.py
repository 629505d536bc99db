"""Sorting: `sort` (differentiable: the values are gathered through the sorting
permutation, so each output slot's derivative flows to the element it came from) and
`argsort` (stable: ties keep their order, as NumPy's kind='stable')."""

from __future__ import annotations

from typing import Any

from ..lax import lax
from ._core import Array, aval_of, normalize_axis, value
from ._indexing import take_along_axis

_KINDS = (None, "quicksort", "mergesort", "heapsort", "stable")


def _check(fname: str, kind: Any, order: Any) -> None:
    if order is not None:
        raise NotImplementedError(f"{fname}: `order` (structured arrays) is not supported")
    if kind not in _KINDS:
        raise ValueError(f"{fname}: sort kind must be one of {_KINDS[1:]}, got {kind!r}")


def argsort(a: Any, axis: int | None = -1, kind: str | None = None, order: Any = None, *,
            stable: bool | None = None) -> Array:
    """Indices that sort `a` along `axis` (the flattened array if None). Always stable,
    whatever `kind` (NaNs sort last)."""
    _check("argsort", kind, order)
    a = value(a, "argsort")
    if axis is None:
        a = lax.reshape(a, (aval_of(a).size,))
        axis = 0
    return lax.argsort(a, normalize_axis("argsort", axis, aval_of(a).ndim))


def sort(a: Any, axis: int | None = -1, kind: str | None = None, order: Any = None, *,
         stable: bool | None = None) -> Array:
    """`a` sorted along `axis` (the flattened array if None), differentiable."""
    _check("sort", kind, order)
    a = value(a, "sort")
    if axis is None:
        a = lax.reshape(a, (aval_of(a).size,))
        axis = 0
    ax = normalize_axis("sort", axis, aval_of(a).ndim)
    return take_along_axis(a, lax.argsort(a, ax), ax)
