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


# ============================================================================ data movement


def _concrete_ints(x: Any, fname: str, what: str) -> np.ndarray:
    """A concrete integer array (shapes depend on it): NumPy values, or tracers that have
    a concrete value (under jvp and grad)."""
    from ..core import Tracer
    from ..errors import concretization_error

    if isinstance(x, Tracer):
        c = x.to_concrete()
        if c is None:
            raise concretization_error(f"{fname}: `{what}` (it decides the result's shape)",
                                       x.aval, x._interp.transform)
        x = c
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu" and arr.size:  # (an empty list is float64)
        raise TypeError(f"{fname}: `{what}` must be integers, got {arr.dtype}")
    return arr.astype(np.int64)


def _slice_along(a: Array, axis: int, start: int, stop: int) -> Array:
    from ._indexing import getitem

    return getitem(a, (slice(None),) * axis + (slice(start, stop),))


def array_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Array]:
    """Split into sub-arrays along `axis`: N nearly equal parts (the first n % N one longer)
    or at the given indices (Python slice rules: negative counts from the end)."""
    ary = value(ary, "array_split")
    shape = aval_of(ary).shape
    ax = normalize_axis("array_split", axis, len(shape))
    n = shape[ax]
    if np.ndim(indices_or_sections) == 0:
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("array_split: number sections must be larger than 0.")
        each, extra = divmod(n, sections)
        sizes = [each + 1] * extra + [each] * (sections - extra)
        bounds = np.cumsum([0, *sizes]).tolist()
    else:
        points = _concrete_ints(indices_or_sections, "array_split", "indices_or_sections")
        bounds = [0, *points.tolist(), n]
    return [_slice_along(ary, ax, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Array]:
    """`array_split`, but N sections must divide the axis equally."""
    ary = value(ary, "split")
    if np.ndim(indices_or_sections) == 0:
        shape = aval_of(ary).shape
        n = shape[normalize_axis("split", axis, len(shape))]
        sections = int(indices_or_sections)
        if sections <= 0 or n % sections:
            raise ValueError(f"split: array split does not result in an equal division "
                             f"({n} elements into {sections} sections)")
    return array_split(ary, indices_or_sections, axis)


def flip(m: Any, axis: None | int | Sequence[int] = None) -> Array:
    """Reverse the order of elements along `axis` (all axes if None)."""
    m = value(m, "flip")
    axes = normalize_axes("flip", axis, aval_of(m).ndim)
    return lax.rev(m, axes) if axes else m


def fliplr(m: Any) -> Array:
    return flip(m, 1)


def flipud(m: Any) -> Array:
    return flip(m, 0)


def tile(A: Any, reps: int | Sequence[int]) -> Array:
    """A repeated `reps` times along each axis (NumPy's rank rules: the shorter of A's
    shape and reps is padded with leading 1s)."""
    A = value(A, "tile")
    reps = [int(r) for r in np.atleast_1d(_concrete_ints(reps, "tile", "reps"))]
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: negative repetitions {tuple(reps)}")
    shape = aval_of(A).shape
    d = max(len(reps), len(shape))
    reps = [1] * (d - len(reps)) + reps
    shape = (1,) * (d - len(shape)) + shape
    A = lax.reshape(A, shape)
    interleaved = [s for pair in zip(reps, shape) for s in pair]
    out = lax.broadcast_in_dim(A, interleaved, tuple(range(1, 2 * d, 2)))
    return lax.reshape(out, [r * n for r, n in zip(reps, shape)])


def repeat(a: Any, repeats: Any, axis: int | None = None) -> Array:
    """Each element repeated `repeats` times along `axis` (of the flattened array if
    None); `repeats` is an integer or one count per element, concrete (the result's shape
    depends on it)."""
    a = value(a, "repeat")
    if axis is None:
        a = ravel(a)
        axis = 0
    shape = aval_of(a).shape
    ax = normalize_axis("repeat", axis, len(shape))
    n = shape[ax]
    counts = _concrete_ints(repeats, "repeat", "repeats")
    if np.any(counts < 0):
        raise ValueError("repeat: repeats may not contain negative values")
    if counts.ndim > 1 or counts.ndim == 1 and counts.shape[0] not in (1, n):
        raise ValueError(f"repeat: operands could not be broadcast together with shape "
                         f"({n},) {counts.shape}")
    if counts.size == 1:  # one count for all: broadcast along a new axis, then merge
        r = int(counts.reshape(()))
        spread = (*shape[:ax + 1], r, *shape[ax + 1:])
        dims = tuple(i if i <= ax else i + 1 for i in range(len(shape)))
        out = lax.broadcast_in_dim(a, spread, dims)
        return lax.reshape(out, (*shape[:ax], n * r, *shape[ax + 1:]))
    return lax.gather(a, np.repeat(np.arange(n, dtype=np.int64), counts), ax)


def roll(a: Any, shift: int | Sequence[int], axis: None | int | Sequence[int] = None) -> Array:
    """Elements shifted cyclically by `shift` places along `axis` (the flattened array if
    None); several axes take several shifts."""
    a = value(a, "roll")
    shifts = _concrete_ints(shift, "roll", "shift")
    if axis is None:
        flat = roll(ravel(a), int(shifts.sum()), 0)
        return lax.reshape(flat, aval_of(a).shape)
    shape = aval_of(a).shape
    try:
        pairs = np.broadcast(shifts, np.asarray(axis))
    except ValueError:
        raise ValueError("roll: 'shift' and 'axis' should be scalars or 1D sequences of the "
                         "same length") from None
    total = [0] * len(shape)
    for s, ax in pairs:
        total[normalize_axis("roll", int(ax), len(shape))] += int(s)
    out = a
    for ax, s in enumerate(total):
        n = shape[ax]
        if n == 0 or s % n == 0:
            continue
        s %= n
        out = concatenate([_slice_along(out, ax, n - s, n), _slice_along(out, ax, 0, n - s)],
                          ax)
    return out


def _pad_widths(pad_width: Any, ndim: int) -> list[tuple[int, int]]:
    widths = _concrete_ints(pad_width, "pad", "pad_width")
    try:
        widths = np.broadcast_to(widths, (ndim, 2)) if widths.ndim <= 2 else None
    except ValueError:
        widths = None
    if widths is None:
        raise ValueError(f"pad: pad_width {np.asarray(pad_width).tolist()} does not fit an "
                         f"array of dimension {ndim} (give one (before, after) pair per axis)")
    if np.any(widths < 0):
        raise ValueError("pad: index can't contain negative values")
    return [(int(b), int(e)) for b, e in widths]


_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def pad(array: Any, pad_width: Any, mode: str = "constant", **kwargs: Any) -> Array:
    """Pad with `mode` 'constant' (`constant_values`, a scalar or (before, after) pairs per
    axis, may be traced and is differentiable), 'edge', 'reflect', 'symmetric' or 'wrap'."""
    array = value(array, "pad")
    aval = aval_of(array)
    widths = _pad_widths(pad_width, aval.ndim)
    if mode not in _PAD_MODES:
        raise NotImplementedError(f"pad: mode {mode!r} is not supported; use one of "
                                  f"{', '.join(_PAD_MODES)}")
    allowed = {"constant_values"} if mode == "constant" else set()
    if set(kwargs) - allowed:
        raise TypeError(f"pad: unsupported keyword arguments {sorted(set(kwargs) - allowed)} "
                        f"for mode {mode!r}")
    if mode == "constant":
        return _pad_constant(array, widths, kwargs.get("constant_values", 0))
    out = array
    for ax, (before, after) in enumerate(widths):
        if before == after == 0:
            continue
        n = aval.shape[ax]
        if n == 0:
            raise ValueError(f"pad: can't extend empty axis {ax} using modes other than "
                             "'constant' or 'empty'")
        index = np.pad(np.arange(n, dtype=np.int64), (before, after), mode=mode)
        out = lax.gather(out, index, ax)
    return out


def _pad_constant(array: Array, widths: list[tuple[int, int]], values: Any) -> Array:
    from ..core import Tracer

    dtype = aval_of(array).dtype
    if isinstance(values, Tracer) or np.ndim(values) == 0:
        v = value(values, "pad")
        if aval_of(v).ndim:  # a traced (1,)-shaped or similar value
            v = lax.reshape(v, ())
        return lax.pad(array, convert(v, dtype), [(b, e, 0) for b, e in widths])
    pairs = np.broadcast_to(np.asarray(values), (len(widths), 2))
    out = array
    for ax, ((b, e), (vb, ve)) in enumerate(zip(widths, pairs)):
        for width, v, side in ((b, vb, 0), (e, ve, 1)):
            if width:
                config = [(0, 0, 0)] * len(widths)
                config[ax] = (width, 0, 0) if side == 0 else (0, width, 0)
                out = lax.pad(out, np.asarray(v, dtype), config)
    return out


# ============================================================================ diagonals


def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Array:
    """The diagonal `a[..., i, i + offset]` of the (axis1, axis2) planes, as a new last
    axis (NumPy's layout)."""
    a = value(a, "diagonal")
    shape = aval_of(a).shape
    if len(shape) < 2:
        raise ValueError("diagonal: diag requires an array of at least two dimensions")
    ax1 = normalize_axis("diagonal", axis1, len(shape))
    ax2 = normalize_axis("diagonal", axis2, len(shape))
    if ax1 == ax2:
        raise ValueError("diagonal: axis1 and axis2 cannot be the same")
    offset = int(offset)
    rest = [i for i in range(len(shape)) if i not in (ax1, ax2)]
    n1, n2 = shape[ax1], shape[ax2]
    lead = [shape[i] for i in rest]
    planes = lax.reshape(lax.transpose(a, (*rest, ax1, ax2)), (*lead, n1 * n2))
    if offset >= 0:
        k, start = max(0, min(n1, n2 - offset)), offset
    else:
        k, start = max(0, min(n1 + offset, n2)), -offset * n2
    if k == 0:
        start = limit = 0
    else:
        limit = start + (k - 1) * (n2 + 1) + 1
    return lax.slice(planes, [0] * len(lead) + [start], [*lead, limit],
                     [1] * len(lead) + [n2 + 1])


def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None) -> Array:
    """Sum along the diagonal (`diagonal(...).sum(-1)`, NumPy's sum dtypes)."""
    from ._reductions import sum as _sum

    return _sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


def _triangle(m: Any, k: int, lower: bool, fname: str) -> Array:
    m = value(m, fname)
    shape = aval_of(m).shape
    if len(shape) == 0:
        raise ValueError(f"{fname}: input must be at least 1-d")
    rows, cols = shape[-2:] if len(shape) >= 2 else (shape[0], shape[0])
    k = int(k)
    keep = np.tri(rows, cols, k, dtype=np.bool_) if lower else \
        ~np.tri(rows, cols, k - 1, dtype=np.bool_)
    out_shape = shape if len(shape) >= 2 else (rows, cols)
    m = broadcast_to_shape(m, out_shape)
    keep = broadcast_to_shape(keep, out_shape)
    return lax.select_n(keep, lax.full(out_shape, 0, aval_of(m).dtype), m)


def tril(m: Any, k: int = 0) -> Array:
    """The lower triangle of the last two axes (elements with j <= i + k), zeros above."""
    return _triangle(m, k, True, "tril")


def triu(m: Any, k: int = 0) -> Array:
    """The upper triangle of the last two axes (elements with j >= i + k), zeros below."""
    return _triangle(m, k, False, "triu")
