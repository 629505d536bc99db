"""Array creation. Shapes and dtypes are static, so these make plain NumPy arrays;
only values computed from traced inputs (`asarray` of a tracer, `full_like` with a
traced fill value) stay traced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import Tracer
from ..lax import lax
from ._core import Array, _contains_tracer, aval_of, convert, value

Shape = int | Sequence[int]


def array(object: Any, dtype: Any = None, copy: bool = True) -> Array:  # noqa: A002
    """An array from an array, a scalar or nested lists (which may hold traced values)."""
    if isinstance(object, Tracer) or _contains_tracer(object):
        out = value(object, "array")
        return convert(out, dtype) if dtype is not None else out
    return np.array(object, dtype=dtype, copy=copy)


def asarray(a: Any, dtype: Any = None) -> Array:
    """Like `array`, without copying a NumPy array that already fits."""
    if isinstance(a, Tracer) or _contains_tracer(a):
        return array(a, dtype)
    return np.asarray(a, dtype=dtype)


def copy(a: Any) -> Array:
    return a if isinstance(a, Tracer) else np.array(a, copy=True)


def zeros(shape: Shape, dtype: Any = float) -> np.ndarray:
    return np.zeros(shape, dtype)


def ones(shape: Shape, dtype: Any = float) -> np.ndarray:
    return np.ones(shape, dtype)


def empty(shape: Shape, dtype: Any = float) -> np.ndarray:
    return np.zeros(shape, dtype)  # never uninitialised memory: results must be reproducible


def full(shape: Shape, fill_value: Any, dtype: Any = None) -> Array:
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if isinstance(fill_value, Tracer):
        return lax.full(shape, fill_value, dtype or fill_value.dtype)
    return np.full(shape, fill_value, dtype)


def _like(a: Any, dtype: Any, shape: Shape | None) -> tuple[tuple[int, ...], np.dtype]:
    aval = aval_of(value(a, "zeros_like"))
    out_shape = aval.shape if shape is None else (
        (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape))
    return out_shape, np.dtype(dtype) if dtype is not None else aval.dtype


def zeros_like(a: Any, dtype: Any = None, shape: Shape | None = None) -> np.ndarray:
    return np.zeros(*_like(a, dtype, shape))


def ones_like(a: Any, dtype: Any = None, shape: Shape | None = None) -> np.ndarray:
    return np.ones(*_like(a, dtype, shape))


def empty_like(a: Any, dtype: Any = None, shape: Shape | None = None) -> np.ndarray:
    return zeros_like(a, dtype, shape)


def full_like(a: Any, fill_value: Any, dtype: Any = None, shape: Shape | None = None) -> Array:
    out_shape, out_dtype = _like(a, dtype, shape)
    return full(out_shape, fill_value, out_dtype)


def arange(start: Any, stop: Any = None, step: Any = None, dtype: Any = None) -> np.ndarray:
    for v in (start, stop, step):
        if isinstance(v, Tracer) and v.to_concrete() is None:
            raise TypeError("arange: the bounds must be concrete (the length of the result "
                            "must be known while tracing); pass them as static arguments")
    args = [v for v in (start, stop, step) if v is not None]
    return np.arange(*[np.asarray(v.to_concrete() if isinstance(v, Tracer) else v)
                       for v in args], dtype=dtype)


def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True,
             dtype: Any = None) -> Array:
    """`num` evenly spaced values from start to stop (differentiable in start and stop)."""
    if not isinstance(start, Tracer) and not isinstance(stop, Tracer):
        return np.linspace(start, stop, num, endpoint=endpoint, dtype=dtype)
    from ._core import result_type
    from ._math import add, multiply, subtract

    # NumPy computes in result_type(start, stop, float(num)): float32 bounds stay float32.
    computed, _ = result_type(value(start, "linspace"), value(stop, "linspace"), float(num))
    steps = np.linspace(0.0, 1.0, num, endpoint=endpoint).astype(
        computed if computed.kind == "f" else np.float64)
    out = add(start, multiply(subtract(stop, start), steps))
    return convert(out, dtype) if dtype is not None else out


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = float) -> np.ndarray:
    return np.eye(N, M, k, dtype=dtype)


def identity(n: int, dtype: Any = float) -> np.ndarray:
    return np.identity(n, dtype)
