"""fgrad.numpy.linalg: norms (inv, solve, det and friends come with the linear-algebra issue)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..lax import lax
from ._core import Array, aval_of, convert, normalize_axis, value
from ._math import absolute, power
from ._reductions import max as amax
from ._reductions import min as amin
from ._reductions import sum as asum


def norm(x: Any, ord: Any = None, axis: int | Sequence[int] | None = None,  # noqa: A002
         keepdims: bool = False) -> Array:
    """Vector norms (`ord` in None, 2, 1, inf, -inf, 0, p) and matrix norms ('fro', 1, -1,
    inf, -inf), as NumPy's `linalg.norm`."""
    x = value(x, "linalg.norm")
    aval = aval_of(x)
    if aval.dtype.kind != "f":
        x = convert(x, np.float64)
    if axis is None:
        axes = tuple(range(aval.ndim))
        if ord is not None and aval.ndim not in (1, 2):
            raise ValueError("linalg.norm: improper number of dimensions to norm")
    else:
        listed = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
        axes = tuple(normalize_axis("linalg.norm", a, aval.ndim) for a in listed)
    if ord is None or (len(axes) != 2 and ord == 2) or ord == "fro":
        if ord == "fro" and len(axes) != 2:
            raise ValueError("linalg.norm: 'fro' is a matrix norm; give a 2-d array or two axes")
        return lax.sqrt(asum(lax.square(x), axis=axes, keepdims=keepdims))
    if len(axes) == 1:
        return _vector_norm(x, ord, axes, keepdims)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims)
    raise ValueError("linalg.norm: improper number of dimensions to norm")


def _vector_norm(x: Array, ord: Any, axes: tuple[int, ...], keepdims: bool) -> Array:  # noqa: A002
    if ord == np.inf:
        return amax(absolute(x), axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return amin(absolute(x), axis=axes, keepdims=keepdims)
    if ord == 0:
        nonzero = convert(lax.ne(x, lax.full_like(x, 0)), aval_of(x).dtype)
        return asum(nonzero, axis=axes, keepdims=keepdims)
    if ord == 1:
        return asum(absolute(x), axis=axes, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"linalg.norm: invalid norm order {ord!r} for vectors")
    p = float(ord)
    return power(asum(power(absolute(x), p), axis=axes, keepdims=keepdims), 1.0 / p)


def _matrix_norm(x: Array, ord: Any, axes: tuple[int, ...], keepdims: bool) -> Array:  # noqa: A002
    row_axis, col_axis = axes
    if ord in (1, -1):
        sums = asum(absolute(x), axis=row_axis, keepdims=True)
        pick = amax if ord == 1 else amin
        out = pick(sums, axis=col_axis, keepdims=True)
    elif ord in (np.inf, -np.inf):
        sums = asum(absolute(x), axis=col_axis, keepdims=True)
        pick = amax if ord == np.inf else amin
        out = pick(sums, axis=row_axis, keepdims=True)
    elif ord in (2, -2, "nuc"):
        raise NotImplementedError(
            f"linalg.norm: the matrix norm ord={ord!r} needs singular values, which come "
            "with the linear-algebra issue; use ord='fro', 1 or inf"
        )
    else:
        raise ValueError(f"linalg.norm: invalid norm order {ord!r} for matrices")
    if keepdims:
        return out
    return lax.squeeze(out, tuple(sorted(axes)))
