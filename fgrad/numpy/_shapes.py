"""Shape manipulation: reshape, transpose, axes, broadcasting, joining."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..lax import lax
from ._core import (
    Array,
    aval_of,
    broadcast_shapes,
    broadcast_to_shape,
    convert,
    normalize_axes,
    normalize_axis,
    result_type,
    value,
)


def shape(a: Any) -> tuple[int, ...]:
    return aval_of(value(a, "shape")).shape


def ndim(a: Any) -> int:
    return aval_of(value(a, "ndim")).ndim


def size(a: Any) -> int:
    return aval_of(value(a, "size")).size


def reshape(a: Any, shape: int | Sequence[int] | None = None, order: str = "C", *,
            newshape: int | Sequence[int] | None = None) -> Array:
    """A new shape for the same elements, in C order; one entry may be -1.
    (`newshape` is NumPy's older name for `shape`.)"""
    if (shape is None) == (newshape is None):
        raise TypeError("reshape: give the new shape once, as `shape`")
    newshape = shape if newshape is None else newshape
    if order != "C":
        raise NotImplementedError("reshape: only order='C' is supported")
    a = value(a, "reshape")
    aval = aval_of(a)
    if isinstance(newshape, (int, np.integer)):
        newshape = (newshape,)
    dims = [int(d) for d in newshape]
    if dims.count(-1) > 1:
        raise ValueError("reshape: can only specify one unknown dimension (-1)")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
        if known == 0 or aval.size % known:
            raise ValueError(f"reshape: cannot reshape array of size {aval.size} into shape "
                             f"{tuple(newshape) if not isinstance(newshape, int) else newshape}")
        dims[dims.index(-1)] = aval.size // known
    if int(np.prod(dims, dtype=np.int64)) != aval.size:
        raise ValueError(f"reshape: cannot reshape array of size {aval.size} into shape "
                         f"{tuple(dims)}")
    return lax.reshape(a, dims)


def ravel(a: Any) -> Array:
    a = value(a, "ravel")
    return lax.reshape(a, (aval_of(a).size,))


def transpose(a: Any, axes: Sequence[int] | None = None) -> Array:
    """Permute the axes (reverse them if `axes` is None)."""
    a = value(a, "transpose")
    n = aval_of(a).ndim
    if axes is None:
        perm = tuple(reversed(range(n)))
    else:
        perm = tuple(normalize_axis("transpose", ax, n) for ax in axes)
        if sorted(perm) != list(range(n)):
            raise ValueError(f"transpose: axes {tuple(axes)} don't match an array of "
                             f"dimension {n}")
    return lax.transpose(a, perm)


def swapaxes(a: Any, axis1: int, axis2: int) -> Array:
    a = value(a, "swapaxes")
    n = aval_of(a).ndim
    i, j = normalize_axis("swapaxes", axis1, n), normalize_axis("swapaxes", axis2, n)
    perm = list(range(n))
    perm[i], perm[j] = perm[j], perm[i]
    return lax.transpose(a, perm)


def _axis_list(name: str, axes: int | Sequence[int], n: int) -> list[int]:
    axes = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    return [normalize_axis(name, a, n) for a in axes]


def moveaxis(a: Any, source: int | Sequence[int], destination: int | Sequence[int]) -> Array:
    """Move axes to new positions; the other axes keep their order."""
    a = value(a, "moveaxis")
    n = aval_of(a).ndim
    src, dst = _axis_list("moveaxis", source, n), _axis_list("moveaxis", destination, n)
    if len(src) != len(dst):
        raise ValueError("moveaxis: `source` and `destination` must have the same number of "
                         "elements")
    order = [i for i in range(n) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return lax.transpose(a, order)


def squeeze(a: Any, axis: int | Sequence[int] | None = None) -> Array:
    a = value(a, "squeeze")
    aval = aval_of(a)
    if axis is None:
        axes = tuple(i for i, d in enumerate(aval.shape) if d == 1)
    else:
        axes = normalize_axes("squeeze", axis, aval.ndim)
        bad = [i for i in axes if aval.shape[i] != 1]
        if bad:
            raise ValueError(f"squeeze: cannot select an axis to squeeze out which has size "
                             f"not equal to one (axis {bad[0]} of shape {aval.shape})")
    return lax.squeeze(a, axes) if axes else a


def expand_dims(a: Any, axis: int | Sequence[int]) -> Array:
    a = value(a, "expand_dims")
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out_ndim = aval_of(a).ndim + len(axes)
    return lax.expand_dims(a, normalize_axes("expand_dims", axes, out_ndim))


def broadcast_to(array: Any, shape: int | Sequence[int]) -> Array:
    array = value(array, "broadcast_to")
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    in_shape = aval_of(array).shape
    if len(in_shape) > len(shape) or broadcast_shapes("broadcast_to", in_shape, shape) != shape:
        raise ValueError(f"broadcast_to: cannot broadcast an array of shape {in_shape} to "
                         f"shape {shape}")
    return broadcast_to_shape(array, shape)


def broadcast_arrays(*args: Any) -> list[Array]:
    args = [value(a, "broadcast_arrays") for a in args]
    shape = broadcast_shapes("broadcast_arrays", *[aval_of(a).shape for a in args])
    return [broadcast_to_shape(a, shape) for a in args]


def atleast_1d(a: Any) -> Array:
    a = value(a, "atleast_1d")
    return lax.reshape(a, (1,)) if aval_of(a).ndim == 0 else a


def atleast_2d(a: Any) -> Array:
    a = atleast_1d(a)
    return lax.expand_dims(a, (0,)) if aval_of(a).ndim == 1 else a


def concatenate(arrays: Sequence[Any], axis: int | None = 0) -> Array:
    """Join arrays along an existing axis (flattened first if axis is None)."""
    arrays = [value(a, "concatenate") for a in arrays]
    if not arrays:
        raise ValueError("concatenate: need at least one array to concatenate")
    if axis is None:
        arrays = [ravel(a) for a in arrays]
        axis = 0
    ndims = {aval_of(a).ndim for a in arrays}
    if len(ndims) != 1 or 0 in ndims:
        shapes = ", ".join(str(aval_of(a).shape) for a in arrays)
        raise ValueError(f"concatenate: all input arrays must have the same number of "
                         f"dimensions (at least 1), got shapes {shapes}")
    n = ndims.pop()
    ax = normalize_axis("concatenate", axis, n)
    shapes = [aval_of(a).shape for a in arrays]
    for s in shapes[1:]:
        if any(x != y for i, (x, y) in enumerate(zip(s, shapes[0])) if i != ax):
            listed = ", ".join(str(t) for t in shapes)
            raise ValueError(f"concatenate: shapes {listed} must match except along axis {ax}")
    dtype, weak = result_type(*arrays)
    return lax.concatenate([convert(a, dtype, weak) for a in arrays], ax)


def stack(arrays: Sequence[Any], axis: int = 0) -> Array:
    """Join arrays of one shape along a new axis."""
    arrays = [value(a, "stack") for a in arrays]
    if not arrays:
        raise ValueError("stack: need at least one array to stack")
    shapes = {aval_of(a).shape for a in arrays}
    if len(shapes) != 1:
        listed = ", ".join(str(aval_of(a).shape) for a in arrays)
        raise ValueError(f"stack: all input arrays must have the same shape, got {listed}")
    n = aval_of(arrays[0]).ndim + 1
    ax = normalize_axis("stack", axis, n)
    return concatenate([lax.expand_dims(a, (ax,)) for a in arrays], ax)


def hstack(arrays: Sequence[Any]) -> Array:
    arrays = [atleast_1d(a) for a in arrays]
    return concatenate(arrays, 0 if aval_of(arrays[0]).ndim == 1 else 1)


def vstack(arrays: Sequence[Any]) -> Array:
    return concatenate([atleast_2d(a) for a in arrays], 0)
