"""Reductions with NumPy's `axis`, `keepdims` and `dtype` rules."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..lax import lax
from ._core import Array, aval_of, convert, normalize_axes, normalize_axis, value
from ._math import subtract

Axis = None | int | Sequence[int]


@functools.cache
def _accumulator_dtype(numpy_fn: Callable, dtype: np.dtype) -> np.dtype:
    """The dtype NumPy's sum/prod returns for `dtype` (small integers widen to int64)."""
    return numpy_fn(np.ones(1, dtype)).dtype


def _keep(x: Array, axes: tuple[int, ...], keepdims: bool) -> Array:
    return lax.expand_dims(x, axes) if keepdims and axes else x


def _reduction(name: str, lax_fn: Callable, numpy_fn: Callable) -> Callable:
    def fn(a: Any, axis: Axis = None, dtype: Any = None, keepdims: bool = False) -> Array:
        a = value(a, name)
        aval = aval_of(a)
        axes = normalize_axes(name, axis, aval.ndim)
        out_dtype = np.dtype(dtype) if dtype is not None else _accumulator_dtype(numpy_fn,
                                                                                  aval.dtype)
        return _keep(lax_fn(convert(a, out_dtype), axes), axes, keepdims)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"NumPy's {name} over `axis` (all axes if None)."
    return fn


sum = _reduction("sum", lax.reduce_sum, np.sum)  # noqa: A001 (NumPy's name)
prod = _reduction("prod", lax.reduce_prod, np.prod)


def _extremum(name: str, lax_fn: Callable) -> Callable:
    def fn(a: Any, axis: Axis = None, keepdims: bool = False) -> Array:
        a = value(a, name)
        aval = aval_of(a)
        axes = normalize_axes(name, axis, aval.ndim)
        if builtins.any(aval.shape[i] == 0 for i in axes):
            raise ValueError(f"{name}: zero-size array to reduction operation {name} which has "
                             "no identity")
        if aval.dtype == np.bool_:
            a = convert(a, np.uint8)
            return convert(_keep(lax_fn(a, axes), axes, keepdims), np.bool_)
        return _keep(lax_fn(a, axes), axes, keepdims)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"The {name}imum over `axis`; ties share the derivative equally."
    return fn


max = _extremum("max", lax.reduce_max)  # noqa: A001 (NumPy's name)
min = _extremum("min", lax.reduce_min)  # noqa: A001 (NumPy's name)
amax, amin = max, min


def all(a: Any, axis: Axis = None, keepdims: bool = False) -> Array:  # noqa: A001
    """True where every element along `axis` is nonzero (True for empty)."""
    a = value(a, "all")
    axes = normalize_axes("all", axis, aval_of(a).ndim)
    nonzero = _as_uint8_bool(a)
    return convert(_keep(lax.reduce_prod(nonzero, axes), axes, keepdims), np.bool_)


def any(a: Any, axis: Axis = None, keepdims: bool = False) -> Array:  # noqa: A001
    """True where some element along `axis` is nonzero (False for empty)."""
    a = value(a, "any")
    axes = normalize_axes("any", axis, aval_of(a).ndim)
    nonzero = _as_uint8_bool(a)
    return convert(_keep(lax.reduce_sum(nonzero, axes), axes, keepdims), np.bool_)


def _as_uint8_bool(a: Array) -> Array:
    if aval_of(a).dtype != np.bool_:
        a = lax.ne(a, lax.full_like(a, 0))
    return convert(a, np.int64)


def _count(aval, axes: tuple[int, ...]) -> int:
    return int(np.prod([aval.shape[i] for i in axes], dtype=np.int64))


def _float_dtype(aval, dtype: Any) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    return aval.dtype if aval.dtype.kind == "f" else np.dtype(np.float64)


def mean(a: Any, axis: Axis = None, dtype: Any = None, keepdims: bool = False) -> Array:
    """Arithmetic mean over `axis` (float64 for integer input, as NumPy)."""
    a = value(a, "mean")
    aval = aval_of(a)
    axes = normalize_axes("mean", axis, aval.ndim)
    out_dtype = _float_dtype(aval, dtype)
    total = lax.reduce_sum(convert(a, out_dtype), axes)
    return _keep(lax.div(total, _count(aval, axes)), axes, keepdims)


def var(a: Any, axis: Axis = None, dtype: Any = None, ddof: int = 0,
        keepdims: bool = False) -> Array:
    """Variance: mean squared deviation, divided by N - ddof."""
    a = value(a, "var")
    aval = aval_of(a)
    axes = normalize_axes("var", axis, aval.ndim)
    out_dtype = _float_dtype(aval, dtype)
    a = convert(a, out_dtype)
    centered = subtract(a, mean(a, axes, keepdims=True))
    total = lax.reduce_sum(lax.square(centered), axes)
    return _keep(lax.div(total, _count(aval, axes) - ddof), axes, keepdims)


def std(a: Any, axis: Axis = None, dtype: Any = None, ddof: int = 0,
        keepdims: bool = False) -> Array:
    """Standard deviation: sqrt(var)."""
    return lax.sqrt(var(a, axis, dtype, ddof, keepdims))


def _arg_extremum(name: str, lax_fn: Callable) -> Callable:
    def fn(a: Any, axis: int | None = None, keepdims: bool = False) -> Array:
        a = value(a, name)
        aval = aval_of(a)
        if axis is None:
            out = lax_fn(lax.reshape(a, (aval.size,)), 0)
            return lax.reshape(out, (1,) * aval.ndim) if keepdims else out
        ax = normalize_axis(name, axis, aval.ndim)
        if aval.shape[ax] == 0:
            raise ValueError(f"{name}: attempt to get {name} of an empty sequence")
        return _keep(lax_fn(a, ax), (ax,), keepdims)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Index of the {name[3:]}imum along `axis` (of the flattened array if None)."
    return fn


argmax = _arg_extremum("argmax", lax.argmax)
argmin = _arg_extremum("argmin", lax.argmin)


# ============================================================================ cumulative


def _cumulative(name: str, numpy_fn: Callable, a: Any, axis: int | None, dtype: Any):
    a = value(a, name)
    if axis is None:
        a = lax.reshape(a, (aval_of(a).size,))
        axis = 0
    aval = aval_of(a)
    ax = normalize_axis(name, axis, aval.ndim)
    out_dtype = np.dtype(dtype) if dtype is not None else _accumulator_dtype(numpy_fn,
                                                                              aval.dtype)
    if out_dtype == np.bool_:
        raise TypeError(f"{name}: dtype=bool is not supported; use an integer dtype")
    return convert(a, out_dtype), ax


def cumsum(a: Any, axis: int | None = None, dtype: Any = None) -> Array:
    """Running sums along `axis` (of the flattened array if None); NumPy's dtypes (small
    integers and bools accumulate in int64)."""
    x, ax = _cumulative("cumsum", np.cumsum, a, axis, dtype)
    return lax.cumsum(x, ax)


def cumprod(a: Any, axis: int | None = None, dtype: Any = None) -> Array:
    """Running products along `axis` (of the flattened array if None). Computed as
    `x * (product of the elements before)` by log-depth doubling: exact derivatives
    when elements are zero, at any order."""
    x, ax = _cumulative("cumprod", np.cumprod, a, axis, dtype)
    ndim = aval_of(x).ndim
    perm = (*[i for i in range(ndim) if i != ax], ax)
    last = lax.transpose(x, perm)
    out = lax.mul(last, lax.exclusive_cumprod(last))
    return lax.transpose(out, tuple(np.argsort(perm)))
