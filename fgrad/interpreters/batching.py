"""Batching (vmap): carry one batch axis beside every value, and apply each primitive
once to the whole batch.

A `BatchTracer` holds a value and the position of its batch axis (`None` when the
value is the same for every batch member). Each primitive's `batch` rule maps
`(values, batch_dims)` to `(outputs, output_batch_dims)`; no rule ever loops over
the batch in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..core import Interpreter, Tracer, get_aval, new_interpreter, using
from ..ir import ShapedArray

NOT_MAPPED = None


class BatchTracer(Tracer):
    __slots__ = ("val", "batch_dim")

    def __init__(self, interp: BatchInterpreter, val: Any, batch_dim: int | None):
        self._interp = interp
        self.val = val
        self.batch_dim = batch_dim

    @property
    def aval(self) -> ShapedArray:
        aval = get_aval(self.val)
        if self.batch_dim is None:
            return aval
        shape = aval.shape[: self.batch_dim] + aval.shape[self.batch_dim + 1:]
        return ShapedArray(shape, aval.dtype, aval.weak_type)


class BatchInterpreter(Interpreter):
    transform = "vmap"

    def __init__(self, parent: Interpreter, axis_size: int):
        super().__init__(parent)
        self.axis_size = axis_size

    def lift(self, x: Any) -> tuple[Any, int | None]:
        if self.owns(x):
            return x.val, x.batch_dim
        if isinstance(x, Tracer):
            self.check_foreign(x)
        return x, NOT_MAPPED

    def pack(self, val: Any, batch_dim: int | None) -> Any:
        return val if batch_dim is None else BatchTracer(self, val, batch_dim)

    def process_primitive(self, prim, args, params):
        if not any(self.owns(a) for a in args):
            with using(self.parent):
                return prim.bind(*args, **params)
        vals, dims = zip(*map(self.lift, args))
        if prim.batch is None:
            raise prim.missing("batching (vmap)")
        with using(self.parent):
            outs, out_dims = prim.batch(list(vals), list(dims), axis_size=self.axis_size,
                                        **params)
        if prim.multiple_results:
            return [self.pack(v, d) for v, d in zip(outs, out_dims)]
        return self.pack(outs, out_dims)


def batch_flat(
    fun: Callable[..., Sequence[Any]],
    axis_size: int,
    args: Sequence[Any],
    in_dims: Sequence[int | None],
) -> tuple[list[Any], list[int | None]]:
    """Run `fun` (flat list in, flat list out) on a batch; outputs with their batch dims."""
    with new_interpreter(BatchInterpreter, axis_size) as interp:
        with using(interp):
            outs = fun(*[interp.pack(a, d) for a, d in zip(args, in_dims)])
        pairs = [interp.lift(o) for o in outs]
    return [v for v, _ in pairs], [d for _, d in pairs]


def move_batch_axis(x: Any, src: int | None, dst: int, axis_size: int) -> Any:
    """x with its batch axis (at `src`, or absent when None) at position `dst`."""
    from ..lax import lax

    if src is None:
        aval = get_aval(x)
        shape = (*aval.shape[:dst], axis_size, *aval.shape[dst:])
        return lax.broadcast_in_dim(x, shape, tuple(i for i in range(len(shape)) if i != dst))
    if src == dst:
        return x
    perm = [i for i in range(get_aval(x).ndim) if i != src]
    perm.insert(dst, src)
    return lax.transpose(x, perm)


def batch_jaxpr(closed: Any, axis_size: int, batched: Sequence[bool],
                instantiate_out: bool | Sequence[bool]) -> tuple[Any, list[bool]]:
    """`closed` applied to a batch, as a jaxpr. Batched inputs and outputs carry the batch
    axis first; outputs are batched where they depend on a batched input or where
    `instantiate_out` asks (then broadcast). Returns the jaxpr and which outputs are batched."""
    from ..core import eval_jaxpr
    from .staging import trace_to_jaxpr

    n_out = len(closed.out_avals)
    force = ([instantiate_out] * n_out if isinstance(instantiate_out, bool)
             else list(instantiate_out))
    in_avals = [a.update(shape=(axis_size, *a.shape)) if b else a
                for a, b in zip(closed.in_avals, batched)]
    out_batched: list[bool] = []

    def batched_fun(*args):
        outs, dims = batch_flat(lambda *xs: eval_jaxpr(closed.jaxpr, closed.consts, *xs),
                                axis_size, args, [0 if b else None for b in batched])
        out_batched[:] = [d is not None or f for d, f in zip(dims, force)]
        return [move_batch_axis(o, d, 0, axis_size) if b else o
                for o, d, b in zip(outs, dims, out_batched)]

    jaxpr = trace_to_jaxpr(batched_fun, in_avals, "vmap")
    return jaxpr, out_batched
