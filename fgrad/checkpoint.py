"""`checkpoint` (alias `remat`): trade compute for memory in reverse mode.

The function is bound as one `checkpoint` primitive. When reverse mode splits it,
the known (forward) part runs as usual but keeps none of its intermediates: the
linear part is staged together with a copy of the whole forward computation, so
the backward pass recomputes what it needs from the function's inputs alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .core import Primitive, eval_jaxpr, get_aval, using
from .interpreters.batching import batch_jaxpr, move_batch_axis
from .interpreters.jvp import Zero, instantiate, jvp_jaxpr
from .interpreters.staging import (
    convert_constvars,
    dce_call_eqn,
    dce_closed_jaxpr,
    partial_eval_jaxpr,
    trace_to_jaxpr,
)
from .interpreters.transpose import is_undefined, transpose_jaxpr
from .ir import ClosedJaxpr
from .tree_util import tree_flatten, tree_unflatten


def checkpoint(fun: Callable) -> Callable:
    """`fun`, but reverse mode recomputes its forward pass instead of storing residuals."""

    @functools.wraps(fun)
    def remat_fun(*args: Any) -> Any:
        flat, in_tree = tree_flatten(args)
        out_tree: list[Any] = []

        def flat_fun(*flat_args):
            leaves, tree = tree_flatten(fun(*tree_unflatten(in_tree, list(flat_args))))
            out_tree.append(tree)
            return leaves

        closed = trace_to_jaxpr(flat_fun, [get_aval(x) for x in flat], "checkpoint")
        jaxpr, consts = convert_constvars(closed)
        outs = checkpoint_p.bind(*consts, *flat, jaxpr=ClosedJaxpr(jaxpr, []))
        return tree_unflatten(out_tree[0], outs)

    return remat_fun


remat = checkpoint


def _checkpoint_impl(*args, jaxpr):
    return eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, *args)


def _checkpoint_jvp(primals, tangents, *, jaxpr):
    nonzeros = [not isinstance(t, Zero) for t in tangents]
    jvp, out_nz = jvp_jaxpr(jaxpr, nonzeros, False)
    given = [t for t in tangents if not isinstance(t, Zero)]
    outs = checkpoint_p.bind(*primals, *given, jaxpr=jvp)
    n = len(jaxpr.out_avals)
    t_out = iter(outs[n:])
    return outs[:n], [next(t_out) if nz else Zero(a.strip_weak())
                      for nz, a in zip(out_nz, jaxpr.out_avals)]


def _checkpoint_partial_eval(interp, args, unknown, *, jaxpr):
    known, _, out_uk, n_res = partial_eval_jaxpr(jaxpr, unknown)
    # The known outputs now, without keeping any residual...
    n_known_out = len(known.out_avals) - n_res
    kept, _ = dce_closed_jaxpr(known, [True] * n_known_out + [False] * n_res)
    known_args = [a for a, u in zip(args, unknown) if not u]
    with using(interp.parent):
        known_outs = checkpoint_p.bind(*known_args, jaxpr=kept)
    # ...and the unknown outputs recomputed from all the inputs.
    unknown_outs = interp.stage(checkpoint_p, list(args),
                                {"jaxpr": dce_closed_jaxpr(jaxpr, out_uk)[0]})
    k, u = iter(known_outs), iter(unknown_outs)
    return [next(u) if is_uk else next(k) for is_uk in out_uk]


def _checkpoint_transpose(cts, *args, jaxpr):
    linear = [is_undefined(a) for a in args]
    cts = [instantiate(ct) if not isinstance(ct, Zero) else instantiate(Zero(a.strip_weak()))
           for ct, a in zip(cts, jaxpr.out_avals)]
    transposed = transpose_jaxpr(jaxpr, linear)
    nonlinear = [a for a, lin in zip(args, linear) if not lin]
    cts_in = iter(eval_jaxpr(transposed.jaxpr, transposed.consts, *nonlinear, *cts))
    return [next(cts_in) if lin else None for lin in linear]


def _checkpoint_batch(vals, dims, *, axis_size, jaxpr):
    batched = [d is not None for d in dims]
    vals = [move_batch_axis(v, d, 0, axis_size) if d is not None else v
            for v, d in zip(vals, dims)]
    body, out_batched = batch_jaxpr(jaxpr, axis_size, batched, False)
    outs = checkpoint_p.bind(*vals, jaxpr=body)
    return outs, [0 if b else None for b in out_batched]


checkpoint_p = Primitive("checkpoint", multiple_results=True)
checkpoint_p.impl = _checkpoint_impl
checkpoint_p.abstract_eval_rule = lambda *avals, jaxpr: jaxpr.out_avals
checkpoint_p.jvp = _checkpoint_jvp
checkpoint_p.partial_eval = _checkpoint_partial_eval
checkpoint_p.transpose = _checkpoint_transpose
checkpoint_p.batch = _checkpoint_batch
checkpoint_p.dce = dce_call_eqn
