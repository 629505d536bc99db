"""Basic indexing `x[...]`: integers, slices (any step), None and Ellipsis,
lowered to `rev`, `slice`, `squeeze` and `expand_dims`.

Integer-array and boolean-mask indexing, and `x.at[...]` updates, belong to the
gather/scatter issue; they raise a clear error until then.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import Tracer
from ..lax import lax
from ._core import Array, aval_of, value


def _is_int(i: Any) -> bool:
    if isinstance(i, (bool, np.bool_)):
        return False
    if isinstance(i, (int, np.integer)):
        return True
    return isinstance(i, Tracer) and i.shape == () and i.dtype.kind in "iu" \
        and i.to_concrete() is not None


def getitem(x: Any, index: Any) -> Array:
    """`x[index]` for basic indices."""
    x = value(x, "indexing")
    shape = aval_of(x).shape
    entries = index if isinstance(index, tuple) else (index,)
    for e in entries:
        if not (e is None or e is Ellipsis or isinstance(e, slice) or _is_int(e)):
            kind = type(e).__name__
            raise IndexError(
                f"indexing with a {kind} is not supported yet: basic indexing takes integers, "
                "slices, None and ...; integer-array and boolean-mask indexing come with "
                "gather/scatter (use fgrad.numpy.where for masks)"
            )
    n_real = sum(1 for e in entries if e is not None and e is not Ellipsis)
    if sum(1 for e in entries if e is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_real > len(shape):
        raise IndexError(f"too many indices for array: array is {len(shape)}-dimensional, "
                         f"but {n_real} were indexed")
    expanded: list[Any] = []
    for e in entries:
        if e is Ellipsis:
            expanded.extend([slice(None)] * (len(shape) - n_real))
        else:
            expanded.append(e)
    if not any(e is Ellipsis for e in entries):
        expanded.extend([slice(None)] * (len(shape) - n_real))

    starts, limits, strides = [], [], []
    flips, squeezes, new_axes = [], [], []
    axis = out_pos = 0
    for e in expanded:
        if e is None:
            new_axes.append(out_pos)
            out_pos += 1
            continue
        n = shape[axis]
        if isinstance(e, slice):
            start, stop, step = e.indices(n)
            if step < 0:  # walk the reversed axis forwards
                flips.append(axis)
                start, stop, step = n - 1 - start, n - 1 - stop, -step
            starts.append(start)
            limits.append(max(start, stop))
            strides.append(step)
            out_pos += 1
        else:
            i = int(e)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            i %= n
            starts.append(i)
            limits.append(i + 1)
            strides.append(1)
            squeezes.append(axis)
        axis += 1

    out = lax.rev(x, flips) if flips else x
    if (tuple(starts), tuple(limits), set(strides)) != ((0,) * len(shape), shape, {1}) and shape:
        out = lax.slice(out, starts, limits, strides)
    if squeezes:
        out = lax.squeeze(out, squeezes)
    if new_axes:
        out = lax.expand_dims(out, new_axes)
    return out
