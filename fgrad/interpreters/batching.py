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
