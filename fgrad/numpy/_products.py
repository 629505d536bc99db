"""Products: dot, vdot, inner, outer, matmul, tensordot, all through `lax.dot_general`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..lax import lax
from ._core import Array, aval_of, broadcast_shapes, broadcast_to_shape, convert, result_type, value
from ._math import multiply
from ._shapes import ravel


def _same_dtype(name: str, a: Any, b: Any) -> tuple[Array, Array]:
    a, b = value(a, name), value(b, name)
    dtype, weak = result_type(a, b)
    if dtype.kind == "b":
        raise TypeError(f"{name}: boolean operands are not supported; convert them to int "
                        "or float")
    return convert(a, dtype, weak), convert(b, dtype, weak)


def _mismatch(name: str, a_shape, b_shape, i: int, j: int) -> ValueError:
    return ValueError(
        f"{name}: shapes {a_shape} and {b_shape} not aligned: {a_shape[i]} (dim {i} of the "
        f"first) != {b_shape[j]} (dim {j} of the second)"
    )


def matmul(a: Any, b: Any) -> Array:
    """Matrix product with NumPy's rules: 1-d operands are promoted, batch axes broadcast."""
    a, b = _same_dtype("matmul", a, b)
    a_shape, b_shape = aval_of(a).shape, aval_of(b).shape
    if not a_shape or not b_shape:
        raise ValueError("matmul: operands must be at least 1-dimensional (use multiply for "
                         "scalars)")
    if len(a_shape) <= 2 and len(b_shape) <= 2:  # no batch axes: a plain contraction
        i = len(a_shape) - 1
        if a_shape[i] != b_shape[0]:
            raise _mismatch("matmul", a_shape, b_shape, i, 0)
        return lax.dot_general(a, b, (((i,), (0,)), ((), ())))
    a2 = lax.expand_dims(a, (0,)) if len(a_shape) == 1 else a
    b2 = lax.expand_dims(b, (1,)) if len(b_shape) == 1 else b
    sa, sb = aval_of(a2).shape, aval_of(b2).shape
    if sa[-1] != sb[-2]:
        raise _mismatch("matmul", a_shape, b_shape, len(a_shape) - 1, max(len(b_shape) - 2, 0))
    batch = broadcast_shapes("matmul", sa[:-2], sb[:-2])
    a2 = broadcast_to_shape(a2, batch + sa[-2:])
    b2 = broadcast_to_shape(b2, batch + sb[-2:])
    nb = len(batch)
    dims = (((nb + 1,), (nb,)), (tuple(range(nb)), tuple(range(nb))))
    out = lax.dot_general(a2, b2, dims)
    squeeze = ([nb] if len(a_shape) == 1 else []) + ([nb + 1] if len(b_shape) == 1 else [])
    return lax.squeeze(out, squeeze) if squeeze else out


def dot(a: Any, b: Any) -> Array:
    """NumPy's dot: scalar product, inner product, matrix product, or sum over a's last
    axis and b's second-to-last."""
    a, b = _same_dtype("dot", a, b)
    a_shape, b_shape = aval_of(a).shape, aval_of(b).shape
    if not a_shape or not b_shape:
        return multiply(a, b)
    j = 0 if len(b_shape) == 1 else len(b_shape) - 2
    i = len(a_shape) - 1
    if a_shape[i] != b_shape[j]:
        raise _mismatch("dot", a_shape, b_shape, i, j)
    return lax.dot_general(a, b, (((i,), (j,)), ((), ())))


def vdot(a: Any, b: Any) -> Array:
    """Dot product of the flattened arrays."""
    a, b = _same_dtype("vdot", a, b)
    return dot(ravel(a), ravel(b))


def inner(a: Any, b: Any) -> Array:
    """Sum product over the last axes."""
    a, b = _same_dtype("inner", a, b)
    a_shape, b_shape = aval_of(a).shape, aval_of(b).shape
    if not a_shape or not b_shape:
        return multiply(a, b)
    if a_shape[-1] != b_shape[-1]:
        raise _mismatch("inner", a_shape, b_shape, len(a_shape) - 1, len(b_shape) - 1)
    return lax.dot_general(a, b, (((len(a_shape) - 1,), (len(b_shape) - 1,)), ((), ())))


def outer(a: Any, b: Any) -> Array:
    """Outer product of the flattened arrays."""
    a, b = _same_dtype("outer", a, b)
    a, b = ravel(a), ravel(b)
    return multiply(lax.expand_dims(a, (1,)), lax.expand_dims(b, (0,)))


def tensordot(a: Any, b: Any, axes: int | Sequence[Any] = 2) -> Array:
    """Sum products over the given axes: the last `axes` of a with the first of b, or
    the pair of axis lists `(a_axes, b_axes)`."""
    a, b = _same_dtype("tensordot", a, b)
    a_shape, b_shape = aval_of(a).shape, aval_of(b).shape
    if isinstance(axes, int):
        if axes < 0 or axes > min(len(a_shape), len(b_shape)):
            raise ValueError(f"tensordot: axes={axes} is invalid for shapes {a_shape} and "
                             f"{b_shape}")
        a_axes = list(range(len(a_shape) - axes, len(a_shape)))
        b_axes = list(range(axes))
    else:
        a_axes, b_axes = axes
        a_axes = [a_axes] if isinstance(a_axes, int) else list(a_axes)
        b_axes = [b_axes] if isinstance(b_axes, int) else list(b_axes)
        if len(a_axes) != len(b_axes):
            raise ValueError(f"tensordot: axes lists {a_axes} and {b_axes} differ in length")
        a_axes = [x % len(a_shape) for x in a_axes]
        b_axes = [x % len(b_shape) for x in b_axes]
    for i, j in zip(a_axes, b_axes):
        if a_shape[i] != b_shape[j]:
            raise _mismatch("tensordot", a_shape, b_shape, i, j)
    return lax.dot_general(a, b, ((tuple(a_axes), tuple(b_axes)), ((), ())))
