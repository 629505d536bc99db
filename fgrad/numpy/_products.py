"""Products: dot, vdot, inner, outer, matmul, tensordot, einsum, all through `lax.dot_general`."""

from __future__ import annotations

import string
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
    normalize_axis,
    result_type,
    value,
)
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


def _axis_list(axes: Any) -> list[int]:
    if isinstance(axes, (int, np.integer)):
        return [int(axes)]
    return [int(a) for a in axes]


def tensordot(a: Any, b: Any, axes: int | Sequence[Any] = 2) -> Array:
    """Sum products over the given axes: the last `axes` of a with the first of b, or
    the pair `(a_axes, b_axes)` of axes (ints, or sequences of ints of equal length)."""
    a, b = _same_dtype("tensordot", a, b)
    a_shape, b_shape = aval_of(a).shape, aval_of(b).shape
    if isinstance(axes, (int, np.integer)):
        axes = int(axes)
        if axes < 0 or axes > min(len(a_shape), len(b_shape)):
            raise ValueError(f"tensordot: axes={axes} is invalid for shapes {a_shape} and "
                             f"{b_shape}")
        a_axes = list(range(len(a_shape) - axes, len(a_shape)))
        b_axes = list(range(axes))
    else:
        try:
            a_spec, b_spec = axes
            a_axes, b_axes = _axis_list(a_spec), _axis_list(b_spec)
        except (TypeError, ValueError):
            raise ValueError(f"tensordot: axes must be an int or a pair (a_axes, b_axes), got "
                             f"{axes!r}") from None
        if len(a_axes) != len(b_axes):
            raise ValueError(f"tensordot: axes lists {a_axes} and {b_axes} differ in length")
        a_axes = [normalize_axis("tensordot", x, len(a_shape)) for x in a_axes]
        b_axes = [normalize_axis("tensordot", x, len(b_shape)) for x in b_axes]
        if len(set(a_axes)) != len(a_axes) or len(set(b_axes)) != len(b_axes):
            raise ValueError(f"tensordot: repeated axis in {axes!r}")
    for i, j in zip(a_axes, b_axes):
        if a_shape[i] != b_shape[j]:
            raise _mismatch("tensordot", a_shape, b_shape, i, j)
    return lax.dot_general(a, b, ((tuple(a_axes), tuple(b_axes)), ((), ())))


# ============================================================================ einsum

_LETTERS = string.ascii_uppercase + string.ascii_lowercase  # in NumPy's (ASCII) order


def _sublist_to_subscripts(sublist: Any) -> str:
    out = []
    for s in sublist:
        if s is Ellipsis:
            out.append("...")
        elif isinstance(s, (int, np.integer)) and 0 <= s < len(_LETTERS):
            out.append(_LETTERS[int(s)])
        else:
            raise ValueError(f"einsum: subscript {s!r} in a sublist must be an int in "
                             f"[0, {len(_LETTERS)}) or Ellipsis")
    return "".join(out)


def _interleaved(args: Sequence[Any]) -> tuple[str, list[Any]]:
    """NumPy's other form einsum(op0, sublist0, op1, sublist1, ..., [sublist_out])."""
    operands = list(args[0::2])
    subs = [_sublist_to_subscripts(s) for s in args[1::2]]
    if len(args) % 2:  # an output sublist at the end
        out = _sublist_to_subscripts(operands.pop())
        return ",".join(subs) + "->" + out, operands
    return ",".join(subs), operands


def _parse_term(spec: str, term: str, shape: tuple[int, ...], which: str) -> list[str]:
    """The labels of one operand's axes; ellipsis axes get labels '.0', '.1', ... counted
    so that the last ellipsis axis of every operand has the same label (they broadcast)."""
    if term.count("...") > 1 or "." in term.replace("...", ""):
        raise ValueError(f"einsum: subscripts {spec!r}: {which} {term!r} has an invalid "
                         "ellipsis")
    head, dots, tail = term.partition("...")
    for ch in head + tail:
        if ch not in _LETTERS:
            raise ValueError(f"einsum: subscripts {spec!r}: {ch!r} in {which} {term!r} is not "
                             "a letter")
    n_ellipsis = len(shape) - len(head) - len(tail)
    if (not dots and n_ellipsis != 0) or n_ellipsis < 0:
        raise ValueError(f"einsum: subscripts {spec!r}: {which} {term!r} names "
                         f"{len(head) + len(tail)} axes but the operand has shape {shape}")
    return [*head, *[f".{-(n_ellipsis - i)}" for i in range(n_ellipsis)], *tail]


def _einsum_diagonal(x: Array, labels: list[str], spec: str, which: str) -> tuple[Array, list]:
    """A label repeated within one operand: keep the diagonal of those axes."""
    while len(set(labels)) != len(labels):
        label = next(lab for lab in labels if labels.count(lab) > 1)
        p = labels.index(label)
        q = labels.index(label, p + 1)
        shape = aval_of(x).shape
        if shape[p] != shape[q]:
            raise ValueError(f"einsum: subscripts {spec!r}: the repeated label {label!r} of "
                             f"{which} has sizes {shape[p]} and {shape[q]} (shape {shape})")
        eye = lax.broadcast_in_dim(np.eye(shape[p], dtype=aval_of(x).dtype), shape, (p, q))
        x = lax.reduce_sum(lax.mul(x, eye), (q,))
        labels = labels[:q] + labels[q + 1:]
    return x, labels


def einsum(subscripts: Any, *operands: Any, out: Any = None, dtype: Any = None,
           optimize: Any = None, **kwargs: Any) -> Array:
    """Einstein summation, as NumPy's: `einsum("ij,jk->ik", a, b)`, implicit output
    (labels seen once, alphabetically), `...` for broadcast (batch) axes, a label
    repeated in one operand for its diagonal, and the interleaved form
    `einsum(a, [0, 1], b, [1, 2], [0, 2])`.

    Contractions go left to right, pairwise, each one `lax.dot_general` (labels shared by
    the pair and needed later are its batch axes); labels needed nowhere else are summed
    first. `optimize` is accepted and ignored.
    """
    del optimize
    if out is not None:
        raise TypeError("einsum: out= cannot be written into; use the result")
    if kwargs:
        raise TypeError(f"einsum: unsupported keyword arguments {sorted(kwargs)}")
    if not isinstance(subscripts, str):
        subscripts, operands = _interleaved((subscripts, *operands))
    spec = subscripts
    if not operands:
        raise ValueError("einsum: needs at least one operand")
    text = subscripts.replace(" ", "")
    if text.count("->") > 1:
        raise ValueError(f"einsum: subscripts {spec!r} have more than one '->'")
    lhs, arrow, out_term = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: subscripts {spec!r} name {len(terms)} operand(s), got "
                         f"{len(operands)}")

    args = [value(x, "einsum") for x in operands]
    if dtype is not None:
        args = [convert(x, np.dtype(dtype)) for x in args]
    common, weak = result_type(*args)
    if common.kind == "b":
        raise TypeError("einsum: boolean operands are not supported; convert them to int or "
                        "float")
    args = [convert(x, common, weak) for x in args]
    shapes = [aval_of(x).shape for x in args]
    labels = [_parse_term(spec, t, s, f"operand {i}")
              for i, (t, s) in enumerate(zip(terms, shapes))]
    args_labels = [_einsum_diagonal(x, lab, spec, f"operand {i}")
                   for i, (x, lab) in enumerate(zip(args, labels))]

    # Each label's size; 1 broadcasts against any size, as in NumPy.
    sizes: dict[str, int] = {}
    for i, (shape, labs) in enumerate(zip(shapes, labels)):
        for axis, (lab, n) in enumerate(zip(labs, shape)):
            if sizes.get(lab, 1) not in (1, n) and n != 1:
                which = "the ellipsis" if lab.startswith(".") else f"label {lab!r}"
                listed = " ".join(str(s) for s in shapes)
                raise ValueError(f"einsum: subscripts {spec!r}: {which} has sizes "
                                 f"{sizes[lab]} and {n} (axis {axis} of operand {i}); "
                                 f"operand shapes {listed}")
            sizes[lab] = max(sizes.get(lab, 1), n)

    ellipsis = sorted({lab for labs in labels for lab in labs if lab.startswith(".")},
                      key=lambda lab: int(lab[1:]))
    if arrow:
        if out_term.count("...") > 1 or "." in out_term.replace("...", ""):
            raise ValueError(f"einsum: subscripts {spec!r}: invalid ellipsis in the output")
        head, dots, tail = out_term.partition("...")
        if ellipsis and not dots:
            raise ValueError(f"einsum: subscripts {spec!r}: the operands have '...' axes; "
                             "the output must have '...' too")
        out_labels = [*head, *ellipsis, *tail]
        for lab in head + tail:
            if lab not in sizes:
                raise ValueError(f"einsum: subscripts {spec!r}: the output label {lab!r} "
                                 "never appears in an operand")
        if len(set(out_labels)) != len(out_labels):
            raise ValueError(f"einsum: subscripts {spec!r}: a label repeats in the output")
    else:
        counts: dict[str, int] = {}
        for labs in labels:
            for lab in labs:
                counts[lab] = counts.get(lab, 0) + 1
        out_labels = [*ellipsis, *sorted(lab for lab, c in counts.items()
                                         if c == 1 and not lab.startswith("."))]

    def sum_unneeded(x, labs, keep):
        drop = [i for i, lab in enumerate(labs) if lab not in keep]
        if not drop:
            return x, labs
        return lax.reduce_sum(x, drop), [lab for lab in labs if lab in keep]

    def stretch(x, labs, wanted):
        """Broadcast size-1 axes whose label has a larger size in the other operand."""
        shape = aval_of(x).shape
        target = tuple(sizes[lab] if lab in wanted and shape[i] == 1 else shape[i]
                       for i, lab in enumerate(labs))
        return lax.broadcast_in_dim(x, target, range(len(shape))) if target != shape else x

    acc, acc_labels = args_labels[0]
    for i in range(1, len(args_labels)):
        x, x_labels = args_labels[i]
        later = {lab for _, labs in args_labels[i + 1:] for lab in labs} | set(out_labels)
        acc, acc_labels = sum_unneeded(acc, acc_labels, later | set(x_labels))
        x, x_labels = sum_unneeded(x, x_labels, later | set(acc_labels))
        shared = [lab for lab in acc_labels if lab in x_labels]
        acc = stretch(acc, acc_labels, shared)
        x = stretch(x, x_labels, shared)
        batch = [lab for lab in shared if lab in later]
        contract = [lab for lab in shared if lab not in later]
        dims = ((tuple(acc_labels.index(lab) for lab in contract),
                 tuple(x_labels.index(lab) for lab in contract)),
                (tuple(acc_labels.index(lab) for lab in batch),
                 tuple(x_labels.index(lab) for lab in batch)))
        acc = lax.dot_general(acc, x, dims)
        acc_labels = (batch + [lab for lab in acc_labels if lab not in shared]
                      + [lab for lab in x_labels if lab not in shared])
    acc, acc_labels = sum_unneeded(acc, acc_labels, set(out_labels))
    acc = lax.transpose(acc, [acc_labels.index(lab) for lab in out_labels])
    return stretch(acc, out_labels, out_labels)
