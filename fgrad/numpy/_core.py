"""How NumPy's rules map onto strict lax primitives: values, promotion, broadcasting, axes."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import dtypes
from ..core import Tracer, get_aval
from ..ir import ShapedArray
from ..lax import lax

Array = Any


def is_array(x: Any) -> bool:
    return isinstance(x, (Tracer, np.ndarray, np.generic))


def _contains_tracer(x: Any) -> bool:
    if isinstance(x, Tracer):
        return True
    if isinstance(x, (list, tuple)):
        return any(_contains_tracer(e) for e in x)
    return False


def value(x: Any, fname: str = "fgrad.numpy") -> Any:
    """An operand as lax accepts it: tracers, NumPy arrays and Python scalars pass;
    lists become arrays (stacking any tracers inside them)."""
    if isinstance(x, (Tracer, np.ndarray, np.generic, bool, int, float, complex)):
        return x
    if isinstance(x, (list, tuple)):
        if _contains_tracer(x):
            from ._shapes import stack

            return stack([value(e, fname) for e in x])
        return np.asarray(x)
    try:
        return np.asarray(x)
    except Exception:
        raise TypeError(f"{fname}: cannot use a {type(x).__name__} as an array") from None


def aval_of(x: Any) -> ShapedArray:
    return get_aval(x)


def shape_of(x: Any) -> tuple[int, ...]:
    return get_aval(value(x)).shape


def dtype_of(x: Any) -> np.dtype:
    return get_aval(value(x)).dtype


@functools.cache
def ufunc_result_dtype(ufunc: np.ufunc, *in_dtypes: np.dtype) -> np.dtype:
    """The dtype NumPy's `ufunc` computes for inputs of these dtypes (its loop selection)."""
    with np.errstate(all="ignore"):
        return ufunc(*[np.ones(1, d) for d in in_dtypes]).dtype


def result_type(*args: Any) -> tuple[np.dtype, bool]:
    """NumPy's promotion with Python scalars (and values traced from them) weak."""
    return dtypes.result_type(*[(a.dtype, a.weak_type) for a in map(aval_of, args)])


def broadcast_shapes(fname: str, *shapes: Sequence[int]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " ".join(str(tuple(s)) for s in shapes)
        raise ValueError(
            f"{fname}: operands could not be broadcast together with shapes {listed}"
        ) from None


def broadcast_to_shape(x: Array, shape: Sequence[int]) -> Array:
    shape = tuple(shape)
    x_shape = aval_of(x).shape
    if x_shape == shape:
        return x
    lead = len(shape) - len(x_shape)
    dims = tuple(range(lead, len(shape)))
    return lax.broadcast_in_dim(x, shape, dims)


def convert(x: Any, dtype: np.dtype, weak: bool = False) -> Array:
    """`x` as `dtype`. Python scalars stay inline constants."""
    dtype = np.dtype(dtype)
    if dtypes.python_scalar_dtype(x) is not None:
        if weak and dtypes.python_scalar_dtype(x) == dtype:
            return x  # staged as a weak literal
        return np.asarray(x, dtype)
    aval = aval_of(x)
    if aval.dtype == dtype and aval.weak_type == weak:
        return x
    if not isinstance(x, Tracer):
        return np.asarray(x).astype(dtype)
    return lax.convert_element_type(x, dtype, weak)


def promote(fname: str, *args: Any, to: np.dtype | None = None) -> list[Array]:
    """Operands of one dtype (NumPy's promotion, or `to`) and one broadcast shape."""
    args = [value(a, fname) for a in args]
    dtype, weak = result_type(*args)
    if to is not None:
        dtype, weak = np.dtype(to), False
    shape = broadcast_shapes(fname, *[aval_of(a).shape for a in args])
    return [broadcast_to_shape(convert(a, dtype, weak), shape) for a in args]


def normalize_axis(fname: str, axis: int, ndim: int) -> int:
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(
            f"{fname}: axis {axis} is out of bounds for an array of dimension {ndim}"
        )
    return axis % ndim


def normalize_axes(fname: str, axis: None | int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """`axis` as a sorted tuple of non-negative axes; None means all of them."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        return (normalize_axis(fname, axis, ndim),)
    axes = tuple(normalize_axis(fname, a, ndim) for a in axis)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{fname}: repeated axis in {tuple(axis)}")
    return tuple(sorted(axes))
