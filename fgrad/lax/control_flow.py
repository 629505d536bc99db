"""Structured control flow: `cond`/`switch`, `scan`, `fori_loop`, `while_loop`.

Each is a higher-order primitive whose parameters hold closed jaxprs (the traced
branches or loop body). Values the body closes over are hoisted into ordinary
operands, so every transform sees them. Each primitive has the full set of rules:
impl, abstract eval, JVP, partial evaluation (so reverse mode can split the known
primal loop from the linear tangent loop), transpose, batching and DCE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import dtypes
from ..core import Primitive, Tracer, eval_jaxpr, get_aval, using
from ..interpreters.batching import batch_jaxpr, move_batch_axis
from ..interpreters.jvp import Zero, instantiate, jvp_jaxpr
from ..interpreters.staging import (
    convert_constvars,
    dce_closed_jaxpr,
    dce_jaxpr,
    partial_eval_jaxpr,
    trace_to_jaxpr,
)
from ..interpreters.transpose import is_undefined, transpose_jaxpr
from ..ir import ClosedJaxpr, Eqn, Jaxpr, ShapedArray, Var
from ..tree_util import tree_flatten, tree_unflatten
from . import lax

# ============================================================================ helpers


def _trace(fun: Callable, in_tree: Any, in_avals: Sequence[ShapedArray], what: str
           ) -> tuple[ClosedJaxpr, Any]:
    """Trace a pytree function on abstract values; its flat jaxpr and output tree."""
    out_tree: list[Any] = []

    def flat_fun(*flat_args):
        out = fun(*tree_unflatten(in_tree, list(flat_args)))
        leaves, tree = tree_flatten(out)
        out_tree.append(tree)
        return leaves

    closed = trace_to_jaxpr(flat_fun, in_avals, what)
    return closed, out_tree[0]


def _avals_str(avals: Sequence[ShapedArray]) -> str:
    return "(" + ", ".join(a.str_short() for a in avals) + ")"


def _same_types(a: Sequence[ShapedArray], b: Sequence[ShapedArray]) -> bool:
    return len(a) == len(b) and all(
        (x.shape, x.dtype) == (y.shape, y.dtype) for x, y in zip(a, b))


def _promote_weak(init_flat: Sequence[Any], in_avals: Sequence[ShapedArray],
                  out_avals: Sequence[ShapedArray]) -> list[Any] | None:
    """JAX's rule for loop carries: a weakly typed initial value (a Python scalar) takes
    the dtype the body gives it (`0.0` summing float32 values becomes float32). The new
    initial values, or None when nothing changes."""
    if len(in_avals) != len(out_avals):
        return None
    new, changed = list(init_flat), False
    for i, (a, b) in enumerate(zip(in_avals, out_avals)):
        if a.weak_type and a.shape == b.shape and a.dtype != b.dtype:
            dtype, _ = dtypes.result_type((a.dtype, True), (b.dtype, b.weak_type))
            new[i] = lax.convert_element_type(new[i], dtype)
            changed = True
    return new if changed else None


def _closed(jaxpr: Jaxpr) -> ClosedJaxpr:
    return ClosedJaxpr(jaxpr, [])


def _hoisted(closed: ClosedJaxpr) -> tuple[ClosedJaxpr, list[Any]]:
    """The jaxpr with its constants turned into leading inputs, and those constants."""
    jaxpr, consts = convert_constvars(closed)
    return _closed(jaxpr), list(consts)


def _permute_invars(closed: ClosedJaxpr, order: Sequence[int]) -> ClosedJaxpr:
    j = closed.jaxpr
    return ClosedJaxpr(Jaxpr(j.constvars, [j.invars[i] for i in order], j.outvars, j.eqns),
                       closed.consts)


def _permute_outvars(closed: ClosedJaxpr, order: Sequence[int]) -> ClosedJaxpr:
    j = closed.jaxpr
    return ClosedJaxpr(Jaxpr(j.constvars, j.invars, [j.outvars[i] for i in order], j.eqns),
                       closed.consts)


def _groups_order(sizes: Sequence[int], interleave: Sequence[Sequence[int]]) -> list[int]:
    """Index order that takes the groups (given by sizes, in order) as `interleave` lists."""
    starts = np.cumsum([0, *sizes])
    return [int(i) for g in interleave for gi in g for i in range(starts[gi], starts[gi + 1])]


def _split(seq: Sequence[Any], *sizes: int) -> list[list[Any]]:
    out, start = [], 0
    for n in sizes:
        out.append(list(seq[start:start + n]))
        start += n
    out.append(list(seq[start:]))
    return out


def _mask_select(values: Sequence[Any], mask: Sequence[bool], keep: bool) -> list[Any]:
    return [v for v, m in zip(values, mask) if m == keep]


def _merge(mask: Sequence[bool], if_true: Sequence[Any], if_false: Sequence[Any]) -> list[Any]:
    t, f = iter(if_true), iter(if_false)
    return [next(t) if m else next(f) for m in mask]


def _instantiate_all(values: Sequence[Any]) -> list[Any]:
    return [instantiate(v) for v in values]


# ============================================================================ cond / switch


def switch(index: Any, branches: Sequence[Callable], *operands: Any) -> Any:
    """Apply `branches[index](*operands)`; the index is clamped into range."""
    return _switch(index, branches, operands, "switch")


def _switch(index: Any, branches: Sequence[Callable], operands: Sequence[Any], what: str
            ) -> Any:
    branches = list(branches)
    if not branches:
        raise ValueError("switch: needs at least one branch")
    names = (["false_fun", "true_fun"] if what == "cond"
             else [f"branch {i}" for i in range(len(branches))])
    index_aval = get_aval(index)
    if index_aval.shape != () or index_aval.dtype.kind not in "iub":
        raise TypeError(f"{what}: the {'predicate' if what == 'cond' else 'index'} must be a "
                        f"scalar boolean or integer, got {index_aval.str_short()}")
    flat_ops, in_tree = tree_flatten(operands)
    in_avals = [get_aval(x) for x in flat_ops]
    traced = [_trace(b, in_tree, in_avals, what) for b in branches]
    ref = 1 if what == "cond" else 0  # for cond, true_fun comes first in the message
    ref_jaxpr, out_tree = traced[ref]
    for i, (jaxpr, tree) in enumerate(traced):
        if tree != out_tree or not _same_types(jaxpr.out_avals, ref_jaxpr.out_avals):
            raise TypeError(
                f"{what}: the branches must return the same structure, shapes and dtypes, "
                f"but {names[ref]} returns {out_tree} with types "
                f"{_avals_str(ref_jaxpr.out_avals)} and {names[i]} returns {tree} with "
                f"types {_avals_str(jaxpr.out_avals)}"
            )
    if what == "cond" and index_aval.dtype.kind != "b":  # an integer predicate: nonzero
        index = lax.ne(index, np.zeros((), index_aval.dtype))
    jaxprs, consts = _join_consts([j for j, _ in traced])
    if get_aval(index).dtype.kind != "b":  # clamp before narrowing, so 2**32 stays large
        index = lax.max(lax.min(index, len(branches) - 1), 0)
    index = lax.convert_element_type(index, np.int32)
    outs = cond_p.bind(index, *consts, *flat_ops, branches=tuple(jaxprs))
    return tree_unflatten(out_tree, outs)


def cond(pred: Any, true_fun: Callable, false_fun: Callable, *operands: Any) -> Any:
    """`true_fun(*operands)` if `pred` else `false_fun(*operands)`, as one primitive:
    both branches are traced; under vmap with a batched `pred` both run and are selected."""
    return _switch(pred, [false_fun, true_fun], operands, "cond")


def _join_consts(closeds: Sequence[ClosedJaxpr]) -> tuple[list[ClosedJaxpr], list[Any]]:
    """Hoist every branch's constants into shared leading operands."""
    all_consts = [c for cl in closeds for c in cl.consts]
    const_avals = [v.aval for cl in closeds for v in cl.jaxpr.constvars]
    joined, start = [], 0
    for cl in closeds:
        n = len(cl.consts)
        before = [Var(a) for a in const_avals[:start]]
        after = [Var(a) for a in const_avals[start + n:]]
        j = cl.jaxpr
        joined.append(_closed(Jaxpr([], [*before, *j.constvars, *after, *j.invars], j.outvars,
                                    j.eqns)))
        start += n
    return joined, all_consts


def _cond_impl(index, *args, branches):
    branch = branches[int(np.clip(int(index), 0, len(branches) - 1))]
    return eval_jaxpr(branch.jaxpr, branch.consts, *args)


def _cond_abstract_eval(index, *avals, branches):
    if index.shape != () or index.dtype.kind not in "iu":
        raise TypeError(f"cond: the index must be a scalar integer, got {index.str_short()}")
    if not _same_types(avals, branches[0].in_avals):
        raise TypeError(f"cond: operands {_avals_str(avals)} do not match the branches' "
                        f"inputs {_avals_str(branches[0].in_avals)}")
    return branches[0].out_avals


def _cond_jvp(primals, tangents, *, branches):
    index, ops = primals[0], primals[1:]
    nonzeros = [not isinstance(t, Zero) for t in tangents[1:]]
    out_nz = [False] * len(branches[0].out_avals)
    for br in branches:
        _, nz = jvp_jaxpr(br, nonzeros, False)
        out_nz = [a or b for a, b in zip(out_nz, nz)]
    jvp_branches = tuple(jvp_jaxpr(br, nonzeros, out_nz)[0] for br in branches)
    given = [t for t, nz in zip(tangents[1:], nonzeros) if nz]
    outs = cond_p.bind(index, *ops, *given, branches=jvp_branches)
    n = len(out_nz)
    primal_out, tangent_iter = outs[:n], iter(outs[n:])
    tangent_out = [next(tangent_iter) if nz else Zero(a.strip_weak())
                   for nz, a in zip(out_nz, branches[0].out_avals)]
    return primal_out, tangent_out


def _cond_partial_eval(interp, args, unknown, *, branches):
    if unknown[0]:  # an unknown index: nothing can be computed ahead
        return interp.stage(cond_p, args, {"branches": branches})
    index, ops = args[0], args[1:]
    ops_unknown = unknown[1:]
    out_uk = [False] * len(branches[0].out_avals)
    for br in branches:
        _, _, uk, _ = partial_eval_jaxpr(br, ops_unknown)
        out_uk = [a or b for a, b in zip(out_uk, uk)]
    splits = [partial_eval_jaxpr(br, ops_unknown, instantiate=out_uk) for br in branches]
    # Every known branch returns every branch's residuals (zeros for the others'),
    # so that the unknown branches agree on their inputs.
    res_avals = [known.out_avals[len(known.out_avals) - n:] if n else []
                 for known, _, _, n in splits]
    all_res_avals = [a for avals in res_avals for a in avals]
    known_branches, unknown_branches = [], []
    offset = 0
    for known, unknown_j, _, n in splits:
        known_branches.append(_pad_residuals(known, n, offset, all_res_avals))
        unknown_branches.append(_select_residuals(unknown_j, offset, n, all_res_avals))
        offset += n
    known_ops = _mask_select(ops, ops_unknown, False)
    with using(interp.parent):
        known_outs = cond_p.bind(index, *known_ops, branches=tuple(known_branches))
    n_known = len(known_outs) - len(all_res_avals)
    residuals = known_outs[n_known:]
    unknown_ops = _mask_select(ops, ops_unknown, True)
    unknown_outs = interp.stage(cond_p, [index, *residuals, *unknown_ops],
                                {"branches": tuple(unknown_branches)})
    return _merge(out_uk, unknown_outs, known_outs[:n_known])


def _pad_residuals(known: ClosedJaxpr, n: int, offset: int, all_avals) -> ClosedJaxpr:
    def padded(*args):
        outs = eval_jaxpr(known.jaxpr, known.consts, *args)
        own = outs[len(outs) - n:] if n else []
        res = [lax.full(a.shape, 0, a.dtype) for a in all_avals]
        res[offset:offset + n] = own
        return [*outs[:len(outs) - n], *res]

    return trace_to_jaxpr(padded, known.in_avals, "partial_eval")


def _select_residuals(unknown: ClosedJaxpr, offset: int, n: int, all_avals) -> ClosedJaxpr:
    j = unknown.jaxpr
    before = [Var(a) for a in all_avals[:offset]]
    after = [Var(a) for a in all_avals[offset + n:]]
    own, rest = j.invars[:n], j.invars[n:]
    return ClosedJaxpr(Jaxpr(j.constvars, [*before, *own, *after, *rest], j.outvars, j.eqns),
                       unknown.consts)


def _cond_transpose(cts, index, *args, branches):
    if is_undefined(index):
        raise TypeError("cond: the index cannot be a tangent")
    linear = [is_undefined(a) for a in args]
    out_avals = branches[0].out_avals
    cts = [instantiate(ct) if not isinstance(ct, Zero)
           else lax.full(a.shape, 0, a.strip_weak().dtype) for ct, a in zip(cts, out_avals)]
    transposed = tuple(transpose_jaxpr(br, linear) for br in branches)
    nonlinear = _mask_select(args, linear, False)
    cts_in = iter(cond_p.bind(index, *nonlinear, *cts, branches=transposed))
    return [None, *[next(cts_in) if lin else None for lin in linear]]


def _cond_batch(vals, dims, *, axis_size, branches):
    index, ops = vals[0], vals[1:]
    batched = [d is not None for d in dims[1:]]
    ops = [move_batch_axis(v, d, 0, axis_size) if d is not None else v
           for v, d in zip(ops, dims[1:])]
    if dims[0] is not None:  # a batched predicate: run every branch, then select
        index = move_batch_axis(index, dims[0], 0, axis_size)
        outs = []
        for br in branches:
            bj, _ = batch_jaxpr(br, axis_size, batched, True)
            outs.append(eval_jaxpr(bj.jaxpr, bj.consts, *ops))
        selected = []
        for results in zip(*outs):
            shape = get_aval(results[0]).shape
            which = lax.broadcast_in_dim(index, shape, (0,))
            selected.append(lax.select_n(which, *results))
        return selected, [0] * len(selected)
    out_b = [False] * len(branches[0].out_avals)
    for br in branches:
        _, b = batch_jaxpr(br, axis_size, batched, False)
        out_b = [x or y for x, y in zip(out_b, b)]
    batched_branches = tuple(batch_jaxpr(br, axis_size, batched, out_b)[0] for br in branches)
    outs = cond_p.bind(index, *ops, branches=batched_branches)
    return outs, [0 if b else None for b in out_b]


def _cond_dce(eqn: Eqn, used_outputs: Sequence[bool]) -> Eqn:
    branches = eqn.params["branches"]
    pruned = [dce_jaxpr(br.jaxpr, used_outputs, prune_invars=True) for br in branches]
    n_consts = [len(br.jaxpr.constvars) for br in branches]
    used_in = [any(flags[n + i] for (_, flags), n in zip(pruned, n_consts))
               for i in range(len(eqn.invars) - 1)]
    new_branches = []
    for br in branches:
        j, used_consts = dce_jaxpr(br.jaxpr, used_outputs)
        invars = [v for v, u in zip(j.invars, used_in) if u]
        new_branches.append(ClosedJaxpr(Jaxpr(j.constvars, invars, j.outvars, j.eqns),
                                        [c for c, u in zip(br.consts, used_consts) if u]))
    invars = [eqn.invars[0], *[a for a, u in zip(eqn.invars[1:], used_in) if u]]
    outvars = [v for v, u in zip(eqn.outvars, used_outputs) if u]
    return Eqn(cond_p, invars, {"branches": tuple(new_branches)}, outvars)


cond_p = Primitive("cond", multiple_results=True)
cond_p.impl = _cond_impl
cond_p.abstract_eval_rule = _cond_abstract_eval
cond_p.jvp = _cond_jvp
cond_p.partial_eval = _cond_partial_eval
cond_p.transpose = _cond_transpose
cond_p.batch = _cond_batch
cond_p.dce = _cond_dce


# ============================================================================ scan


def scan(f: Callable, init: Any, xs: Any = None, length: int | None = None,
         reverse: bool = False) -> tuple[Any, Any]:
    """Loop `carry, y = f(carry, x)` over the leading axis of `xs`; returns the final carry
    and the stacked ys. The whole loop is one primitive, differentiable in both modes."""
    xs_flat, xs_tree = tree_flatten(xs)
    xs_avals = [get_aval(x) for x in xs_flat]
    lengths = {a.shape[0] if a.shape else None for a in xs_avals}
    if None in lengths:
        raise ValueError("scan: every leaf of xs needs a leading axis to scan over; got a "
                         "scalar")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) > 1:
        listed = ", ".join(str(a.shape) for a in xs_avals)
        raise ValueError(f"scan: xs leaves have unequal leading sizes ({listed}) "
                         f"{f'or differ from length={length}' if length is not None else ''}"
                         .rstrip())
    if not lengths:
        raise ValueError("scan: with no xs, give the number of steps as length=")
    n = lengths.pop()
    init_flat, init_tree = tree_flatten(init)
    carry_avals = [get_aval(c) for c in init_flat]
    x_avals = [a.update(shape=a.shape[1:]) for a in xs_avals]
    in_tree = tree_flatten((init, tree_unflatten(xs_tree, x_avals)))[1]
    closed, out_tree = _trace(f, in_tree, [*carry_avals, *x_avals], "scan")
    out_children = out_tree.children() if hasattr(out_tree, "children") else None
    if out_tree.num_leaves < len(init_flat) or out_children is None or len(out_children) != 2:
        raise TypeError("scan: the body must return a pair (carry, y)")
    carry_out_tree = out_children[0]
    carry_out_avals = closed.out_avals[:len(init_flat)]
    promoted = _promote_weak(init_flat, carry_avals, carry_out_avals)
    if carry_out_tree == init_tree and promoted is not None:  # retrace with the new types
        init_flat, carry_avals = promoted, [get_aval(c) for c in promoted]
        closed, out_tree = _trace(f, in_tree, [*carry_avals, *x_avals], "scan")
        out_children = out_tree.children()
        carry_out_tree = out_children[0]
        carry_out_avals = closed.out_avals[:len(init_flat)]
    if carry_out_tree != init_tree or not _same_types(carry_out_avals, carry_avals):
        raise TypeError(
            f"scan: the body changes the carry's type: it receives {init_tree} with types "
            f"{_avals_str(carry_avals)} and returns {carry_out_tree} with types "
            f"{_avals_str(carry_out_avals)}"
        )
    body, consts = _hoisted(closed)
    outs = scan_p.bind(*consts, *init_flat, *xs_flat, jaxpr=body, num_consts=len(consts),
                       num_carry=len(init_flat), length=n, reverse=bool(reverse))
    carry, ys = outs[:len(init_flat)], outs[len(init_flat):]
    return tree_unflatten(init_tree, carry), tree_unflatten(out_children[1], ys)


def _scan_impl(*args, jaxpr, num_consts, num_carry, length, reverse):
    consts, carry, xs = _split(args, num_consts, num_carry)
    ys_avals = jaxpr.out_avals[num_carry:]
    steps = range(length - 1, -1, -1) if reverse else range(length)
    ys: list[list[Any]] = [[] for _ in ys_avals]
    for i in steps:
        outs = eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, *consts, *carry, *[x[i] for x in xs])
        carry = outs[:num_carry]
        for acc, y in zip(ys, outs[num_carry:]):
            acc.append(y)
    if reverse:
        for acc in ys:
            acc.reverse()
    stacked = [np.stack(acc) if acc else np.zeros((0, *a.shape), a.dtype)
               for acc, a in zip(ys, ys_avals)]
    return [*carry, *stacked]


def _scan_abstract_eval(*avals, jaxpr, num_consts, num_carry, length, reverse):
    outs = jaxpr.out_avals
    return [*outs[:num_carry], *[a.update(shape=(length, *a.shape)) for a in outs[num_carry:]]]


def _scan_jvp(primals, tangents, *, jaxpr, num_consts, num_carry, length, reverse):
    nz = [not isinstance(t, Zero) for t in tangents]
    const_nz, carry_nz, xs_nz = _split(nz, num_consts, num_carry)
    n_ys = len(jaxpr.out_avals) - num_carry
    while True:  # a carry tangent that becomes nonzero must be carried from the start
        _, out_nz = jvp_jaxpr(jaxpr, nz_all := [*const_nz, *carry_nz, *xs_nz],
                              [*carry_nz, *[False] * n_ys])
        new_carry_nz = [a or b for a, b in zip(carry_nz, out_nz[:num_carry])]
        if new_carry_nz == carry_nz:
            break
        carry_nz = new_carry_nz
    body, out_nz = jvp_jaxpr(jaxpr, nz_all, [*carry_nz, *[False] * n_ys])
    ys_nz = out_nz[num_carry:]
    n_ct, n_cat, n_xt = sum(const_nz), sum(carry_nz), sum(xs_nz)
    n_x = len(xs_nz)
    # jvp inputs: consts, carry, xs, const tangents, carry tangents, xs tangents
    body = _permute_invars(body, _groups_order(
        [num_consts, num_carry, n_x, n_ct, n_cat, n_xt], [[0, 3], [1, 4], [2, 5]]))
    # jvp outputs: carry, ys, carry tangents, ys tangents
    body = _permute_outvars(body, _groups_order(
        [num_carry, n_ys, n_cat, sum(ys_nz)], [[0, 2], [1, 3]]))
    consts, carry, xs = _split(primals, num_consts, num_carry)
    c_t, ca_t, x_t = _split(tangents, num_consts, num_carry)
    outs = scan_p.bind(
        *consts, *_mask_select(c_t, const_nz, True),
        *carry, *_instantiate_all([t if not isinstance(t, Zero) else Zero(t.aval)
                                   for t, m in zip(ca_t, carry_nz) if m]),
        *xs, *_mask_select(x_t, xs_nz, True),
        jaxpr=body, num_consts=num_consts + n_ct, num_carry=num_carry + n_cat,
        length=length, reverse=reverse)
    carry_out, carry_t, ys, ys_t = _split(outs, num_carry, n_cat, n_ys)
    carry_t_it, ys_t_it = iter(carry_t), iter(ys_t)
    out_avals = _scan_abstract_eval(jaxpr=jaxpr, num_consts=num_consts, num_carry=num_carry,
                                    length=length, reverse=reverse)
    tangent_out = [next(carry_t_it) if m else Zero(a.strip_weak())
                   for m, a in zip(carry_nz, out_avals[:num_carry])]
    tangent_out += [next(ys_t_it) if m else Zero(a.strip_weak())
                    for m, a in zip(ys_nz, out_avals[num_carry:])]
    return [*carry_out, *ys], tangent_out


def _loop_invariant(jaxpr: Jaxpr, num_consts: int) -> set[Var]:
    """The variables of a scan body computed from its consts (and constants) alone: the
    same at every step."""
    invariant = {*jaxpr.constvars, *jaxpr.invars[:num_consts]}
    for eqn in jaxpr.eqns:
        if all(a in invariant for a in eqn.invars if isinstance(a, Var)):
            invariant.update(eqn.outvars)
    return invariant


def _hoist_invariant_residuals(known: ClosedJaxpr, num_consts: int, num_res: int
                               ) -> tuple[ClosedJaxpr, ClosedJaxpr, list[bool]]:
    """Take the loop-invariant residuals (a const forwarded, or computed from consts alone)
    out of a known scan body, so they are computed once instead of stacked per step.

    Returns the body without them, a jaxpr computing them from the body's consts, and
    which residuals they were."""
    j = known.jaxpr
    n_out = len(j.outvars) - num_res
    invariant = _loop_invariant(j, num_consts)
    res_vars = j.outvars[n_out:]
    res_inv = [not isinstance(v, Var) or v in invariant for v in res_vars]
    body, _ = dce_closed_jaxpr(known, [*[True] * n_out, *[not i for i in res_inv]])
    hoisted, used_consts = dce_jaxpr(Jaxpr(j.constvars, j.invars[:num_consts],
                                           _mask_select(res_vars, res_inv, True), j.eqns))
    return (body, ClosedJaxpr(hoisted, [c for c, u in zip(known.consts, used_consts) if u]),
            res_inv)


def _scan_partial_eval(interp, args, unknown, *, jaxpr, num_consts, num_carry, length,
                       reverse):
    const_uk, carry_uk, xs_uk = _split(unknown, num_consts, num_carry)
    n_ys = len(jaxpr.out_avals) - num_carry
    while True:
        _, _, out_uk, _ = partial_eval_jaxpr(jaxpr, [*const_uk, *carry_uk, *xs_uk],
                                             [*carry_uk, *[False] * n_ys])
        new_carry_uk = [a or b for a, b in zip(carry_uk, out_uk[:num_carry])]
        if new_carry_uk == carry_uk:
            break
        carry_uk = new_carry_uk
    known, unknown_body, out_uk, n_res = partial_eval_jaxpr(
        jaxpr, [*const_uk, *carry_uk, *xs_uk], [*carry_uk, *[False] * n_ys])
    consts, carry, xs = _split(args, num_consts, num_carry)
    known_consts = _mask_select(consts, const_uk, False)
    # Loop-invariant residuals are computed once, outside the known loop; the others
    # become extra per-step outputs of it (stacked ys).
    known, hoisted, res_inv = _hoist_invariant_residuals(known, len(known_consts), n_res)
    n_inv = sum(res_inv)
    n_stacked = n_res - n_inv
    n_known_carry = num_carry - sum(carry_uk)
    with using(interp.parent):
        invariant_res = eval_jaxpr(hoisted.jaxpr, hoisted.consts, *known_consts)
        known_outs = scan_p.bind(
            *known_consts, *_mask_select(carry, carry_uk, False),
            *_mask_select(xs, xs_uk, False), jaxpr=known,
            num_consts=len(known_consts), num_carry=n_known_carry,
            length=length, reverse=reverse)
    stacked_res = known_outs[len(known_outs) - n_stacked:] if n_stacked else []
    known_outs = known_outs[:len(known_outs) - n_stacked]
    # The unknown loop reads the invariant residuals as consts and the others as xs:
    # (invariant residuals, consts, carry, stacked residuals, xs).
    n_uc, n_ucar, n_ux = sum(const_uk), sum(carry_uk), sum(xs_uk)
    res_idx = range(n_res)
    uk_consts_carry, uk_xs = _split(range(n_res, n_res + n_uc + n_ucar + n_ux), n_uc + n_ucar)
    unknown_body = _permute_invars(unknown_body, [
        *_mask_select(res_idx, res_inv, True), *uk_consts_carry,
        *_mask_select(res_idx, res_inv, False), *uk_xs])
    unknown_outs = interp.stage(
        scan_p,
        [*invariant_res, *_mask_select(consts, const_uk, True),
         *_mask_select(carry, carry_uk, True), *stacked_res, *_mask_select(xs, xs_uk, True)],
        dict(jaxpr=unknown_body, num_consts=n_inv + n_uc, num_carry=n_ucar, length=length,
             reverse=reverse))
    return _merge(out_uk, unknown_outs, known_outs)


def _scan_transpose(cts, *args, jaxpr, num_consts, num_carry, length, reverse):
    consts, carry, xs = _split(args, num_consts, num_carry)
    # A carry may arrive known: partial evaluation stages a known initial value (such as
    # an instantiated zero tangent) into the linear loop when the body makes it unknown.
    # It still enters the body linearly; its cotangent is simply not wanted.
    carry_lin = [is_undefined(c) for c in carry]
    const_lin = [is_undefined(c) for c in consts]
    xs_lin = [is_undefined(x) for x in xs]
    out_avals = _scan_abstract_eval(jaxpr=jaxpr, num_consts=num_consts, num_carry=num_carry,
                                    length=length, reverse=reverse)
    cts = [lax.full(a.shape, 0, a.strip_weak().dtype) if isinstance(ct, Zero) else ct
           for ct, a in zip(cts, out_avals)]
    ct_carry, ct_ys = cts[:num_carry], cts[num_carry:]
    body_t = transpose_jaxpr(jaxpr, [*const_lin, *[True] * num_carry, *xs_lin])
    # body_t: (nonlinear consts, nonlinear xs, ct carry out, ct y) ->
    #         (ct linear consts, ct carry in, ct linear xs)
    lin_const_avals = [c.aval for c in consts if is_undefined(c)]
    nonlinear_consts = _mask_select(consts, const_lin, False)
    nonlinear_xs = _mask_select(xs, xs_lin, False)
    n_nc, n_lc, n_nx = len(nonlinear_consts), len(lin_const_avals), len(nonlinear_xs)

    def step(*step_args):
        k_consts, acc, ct_c, k_xs, ct_y = _split(step_args, n_nc, n_lc, num_carry, n_nx)
        outs = eval_jaxpr(body_t.jaxpr, body_t.consts, *k_consts, *k_xs, *ct_c, *ct_y)
        d_consts, d_carry, d_xs = _split(outs, n_lc, num_carry)
        return [*[lax.add(a, d) for a, d in zip(acc, d_consts)], *d_carry, *d_xs]

    step_avals = [*[get_aval(c) for c in nonlinear_consts],
                  *[a.strip_weak() for a in lin_const_avals],
                  *[get_aval(c) for c in ct_carry],
                  *[get_aval(x).update(shape=get_aval(x).shape[1:]) for x in nonlinear_xs],
                  *[get_aval(c).update(shape=get_aval(c).shape[1:]) for c in ct_ys]]
    step_jaxpr, step_consts = _hoisted(trace_to_jaxpr(step, step_avals, "transpose"))
    zeros = [lax.full(a.shape, 0, a.strip_weak().dtype) for a in lin_const_avals]
    outs = scan_p.bind(*step_consts, *nonlinear_consts, *zeros, *ct_carry, *nonlinear_xs,
                       *ct_ys, jaxpr=step_jaxpr, num_consts=len(step_consts) + n_nc,
                       num_carry=n_lc + num_carry, length=length, reverse=not reverse)
    ct_consts, ct_init, ct_xs = _split(outs, n_lc, num_carry)
    ct_consts_it, ct_xs_it = iter(ct_consts), iter(ct_xs)
    return [*[next(ct_consts_it) if lin else None for lin in const_lin],
            *[ct if lin else None for ct, lin in zip(ct_init, carry_lin)],
            *[next(ct_xs_it) if lin else None for lin in xs_lin]]


def _scan_batch(vals, dims, *, axis_size, jaxpr, num_consts, num_carry, length, reverse):
    batched = [d is not None for d in dims]
    const_b, carry_b, xs_b = _split(batched, num_consts, num_carry)
    n_ys = len(jaxpr.out_avals) - num_carry
    while True:
        _, out_b = batch_jaxpr(jaxpr, axis_size, [*const_b, *carry_b, *xs_b],
                               [*carry_b, *[False] * n_ys])
        new_carry_b = [a or b for a, b in zip(carry_b, out_b[:num_carry])]
        if new_carry_b == carry_b:
            break
        carry_b = new_carry_b
    body, out_b = batch_jaxpr(jaxpr, axis_size, [*const_b, *carry_b, *xs_b],
                              [*carry_b, *[False] * n_ys])
    consts, carry, xs = _split(vals, num_consts, num_carry)
    c_d, ca_d, x_d = _split(dims, num_consts, num_carry)
    consts = [move_batch_axis(v, d, 0, axis_size) if d is not None else v
              for v, d in zip(consts, c_d)]
    carry = [move_batch_axis(v, d, 0, axis_size) if b else v
             for v, d, b in zip(carry, ca_d, carry_b)]
    xs = [move_batch_axis(v, d, 1, axis_size) if d is not None else v for v, d in zip(xs, x_d)]
    outs = scan_p.bind(*consts, *carry, *xs, jaxpr=body, num_consts=num_consts,
                       num_carry=num_carry, length=length, reverse=reverse)
    out_dims = [0 if b else None for b in carry_b]
    out_dims += [1 if b else None for b in out_b[num_carry:]]
    return outs, out_dims


def _scan_dce(eqn: Eqn, used_outputs: Sequence[bool]) -> Eqn:
    """Drop unused stacked outputs and the carries that no used output depends on, then
    the consts and xs the body no longer reads."""
    p = eqn.params
    jaxpr, nc, ncar = p["jaxpr"], p["num_consts"], p["num_carry"]
    j = jaxpr.jaxpr
    used_carry = list(used_outputs[:ncar])
    while True:  # a carry is needed if a needed output (or needed carry) reads it
        used = used_carry + list(used_outputs[ncar:])
        _, flags = dce_jaxpr(j, used, prune_invars=True)
        used_in = flags[len(j.constvars):]
        new_used_carry = [a or b for a, b in zip(used_carry, used_in[nc:nc + ncar])]
        if new_used_carry == used_carry:
            break
        used_carry = new_used_carry
    used_in[nc:nc + ncar] = used_carry  # a kept carry is an input even if unread
    kept, used_consts = dce_jaxpr(j, used)
    body = ClosedJaxpr(Jaxpr(kept.constvars, [v for v, u in zip(j.invars, used_in) if u],
                             kept.outvars, kept.eqns),
                       [c for c, u in zip(jaxpr.consts, used_consts) if u])
    params = dict(p, jaxpr=body, num_consts=sum(used_in[:nc]), num_carry=sum(used_carry))
    return Eqn(scan_p, [a for a, u in zip(eqn.invars, used_in) if u], params,
               [v for v, u in zip(eqn.outvars, used) if u])


scan_p = Primitive("scan", multiple_results=True)
scan_p.impl = _scan_impl
scan_p.abstract_eval_rule = _scan_abstract_eval
scan_p.jvp = _scan_jvp
scan_p.partial_eval = _scan_partial_eval
scan_p.transpose = _scan_transpose
scan_p.batch = _scan_batch
scan_p.dce = _scan_dce


# ============================================================================ fori_loop


def _concrete_int(x: Any) -> int | None:
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, np.ndarray) and x.shape == () and x.dtype.kind in "iu":
        return int(x)
    if isinstance(x, Tracer) and x.to_concrete() is not None:
        return int(x.to_concrete())
    return None


def fori_loop(lower: Any, upper: Any, body_fun: Callable, init_val: Any) -> Any:
    """`for i in range(lower, upper): val = body_fun(i, val)`. With concrete bounds it is a
    `scan` (differentiable in both modes); with traced bounds a `while_loop`."""
    # The counter has the bounds' promoted dtype (weak for Python ints, as in JAX), so
    # that `val + i` keeps an integer carry's dtype.
    lo_aval, hi_aval = get_aval(lower), get_aval(upper)
    if any(a.shape != () or a.dtype.kind not in "iu" for a in (lo_aval, hi_aval)):
        raise TypeError(f"fori_loop: lower and upper must be scalar integers, got "
                        f"{lo_aval.str_short()} and {hi_aval.str_short()}")
    dtype, weak = dtypes.result_type((lo_aval.dtype, lo_aval.weak_type),
                                     (hi_aval.dtype, hi_aval.weak_type))
    lo, hi = _concrete_int(lower), _concrete_int(upper)
    if lo is not None and hi is not None:
        def step(carry, _):
            i, val = carry
            return (lax.add(i, 1), body_fun(i, val)), None

        (_, val), _ = scan(step, (lax.convert_element_type(lo, dtype, weak), init_val), None,
                           length=max(hi - lo, 0))
        return val

    def keep_going(carry):
        return lax.lt(carry[0], carry[1])

    def body(carry):
        i, stop, val = carry
        return lax.add(i, 1), stop, body_fun(i, val)

    lower = lax.convert_element_type(lower, dtype, weak)
    upper = lax.convert_element_type(upper, dtype, weak)
    return while_loop(keep_going, body, (lower, upper, init_val))[2]


# ============================================================================ while_loop


def while_loop(cond_fun: Callable, body_fun: Callable, init_val: Any) -> Any:
    """`while cond_fun(val): val = body_fun(val)` as one primitive. Forward-mode
    differentiable; for reverse mode use `fori_loop` with static bounds or `scan`."""
    init_flat, init_tree = tree_flatten(init_val)
    args_tree = tree_flatten((init_val,))[1]  # cond_fun and body_fun take one argument
    avals = [get_aval(x) for x in init_flat]
    cond_closed, cond_tree = _trace(cond_fun, args_tree, avals, "while_loop")
    out = cond_closed.out_avals
    if cond_tree.num_leaves != 1 or out[0].shape != () or out[0].dtype != np.bool_:
        raise TypeError(f"while_loop: cond_fun must return a boolean scalar, got "
                        f"{_avals_str(out)}")
    body_closed, body_tree = _trace(body_fun, args_tree, avals, "while_loop")
    promoted = _promote_weak(init_flat, avals, body_closed.out_avals)
    if body_tree == init_tree and promoted is not None:  # retrace with the new types
        init_flat, avals = promoted, [get_aval(x) for x in promoted]
        cond_closed, _ = _trace(cond_fun, args_tree, avals, "while_loop")
        body_closed, body_tree = _trace(body_fun, args_tree, avals, "while_loop")
    if body_tree != init_tree or not _same_types(body_closed.out_avals, avals):
        raise TypeError(
            f"while_loop: body_fun changes the carry's type: it receives {init_tree} with "
            f"types {_avals_str(avals)} and returns {body_tree} with types "
            f"{_avals_str(body_closed.out_avals)}"
        )
    cond_j, cond_consts = _hoisted(cond_closed)
    body_j, body_consts = _hoisted(body_closed)
    outs = while_p.bind(*cond_consts, *body_consts, *init_flat, cond_jaxpr=cond_j,
                        body_jaxpr=body_j, cond_nconsts=len(cond_consts),
                        body_nconsts=len(body_consts))
    return tree_unflatten(init_tree, outs)


def _while_impl(*args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cond_consts, body_consts, carry = _split(args, cond_nconsts, body_nconsts)
    while bool(eval_jaxpr(cond_jaxpr.jaxpr, cond_jaxpr.consts, *cond_consts, *carry)[0]):
        carry = eval_jaxpr(body_jaxpr.jaxpr, body_jaxpr.consts, *body_consts, *carry)
    return list(carry)


def _while_abstract_eval(*avals, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    return body_jaxpr.out_avals


def _with_ignored_inputs(closed: ClosedJaxpr, avals: Sequence[ShapedArray]) -> ClosedJaxpr:
    j = closed.jaxpr
    return ClosedJaxpr(Jaxpr(j.constvars, [*j.invars, *[Var(a) for a in avals]], j.outvars,
                             j.eqns), closed.consts)


def _while_jvp(primals, tangents, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    nz = [not isinstance(t, Zero) for t in tangents]
    _, bconst_nz, carry_nz = _split(nz, cond_nconsts, body_nconsts)
    while True:
        _, out_nz = jvp_jaxpr(body_jaxpr, [*bconst_nz, *carry_nz], carry_nz)
        new = [a or b for a, b in zip(carry_nz, out_nz)]
        if new == carry_nz:
            break
        carry_nz = new
    body, _ = jvp_jaxpr(body_jaxpr, [*bconst_nz, *carry_nz], carry_nz)
    n_bt, n_ct = sum(bconst_nz), sum(carry_nz)
    n_carry = len(carry_nz)
    body = _permute_invars(body, _groups_order([body_nconsts, n_carry, n_bt, n_ct],
                                               [[0, 2], [1, 3]]))
    cconsts, bconsts, carry = _split(primals, cond_nconsts, body_nconsts)
    _, bt, ct = _split(tangents, cond_nconsts, body_nconsts)
    carry_tangents = [instantiate(t) if not isinstance(t, Zero) else
                      lax.full(t.aval.shape, 0, t.aval.dtype)
                      for t, m in zip(ct, carry_nz) if m]
    tangent_avals = [get_aval(t) for t in carry_tangents]
    cond = _with_ignored_inputs(cond_jaxpr, tangent_avals)
    outs = while_p.bind(*cconsts, *bconsts, *_mask_select(bt, bconst_nz, True), *carry,
                        *carry_tangents, cond_jaxpr=cond, body_jaxpr=body,
                        cond_nconsts=cond_nconsts, body_nconsts=body_nconsts + n_bt)
    carry_out, t_out = outs[:n_carry], iter(outs[n_carry:])
    return carry_out, [next(t_out) if m else Zero(a.strip_weak())
                       for m, a in zip(carry_nz, body_jaxpr.out_avals)]


def _while_partial_eval(interp, args, unknown, **params):
    raise TypeError(
        "Reverse-mode differentiation (grad, vjp, jacrev, linearize) does not work through "
        "lax.while_loop, whose number of steps is only known at run time. Use "
        "lax.fori_loop with concrete bounds or lax.scan (a static trip count), or forward "
        "mode (jvp, jacfwd)."
    )


def _while_batch(vals, dims, *, axis_size, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    batched = [d is not None for d in dims]
    cconst_b, bconst_b, carry_b = _split(batched, cond_nconsts, body_nconsts)
    while True:
        _, out_b = batch_jaxpr(body_jaxpr, axis_size, [*bconst_b, *carry_b], carry_b)
        _, (pred_b,) = batch_jaxpr(cond_jaxpr, axis_size, [*cconst_b, *carry_b], False)
        new = [a or b or pred_b for a, b in zip(carry_b, out_b)]  # lanes diverge: all batched
        if new == carry_b:
            break
        carry_b = new
    vals = [move_batch_axis(v, d, 0, axis_size) if d is not None else v
            for v, d in zip(vals, dims)]
    cconsts, bconsts, carry = _split(vals, cond_nconsts, body_nconsts)
    carry = [move_batch_axis(v, None, 0, axis_size) if b and d is None else v
             for v, d, b in zip(carry, dims[cond_nconsts + body_nconsts:], carry_b)]
    body, _ = batch_jaxpr(body_jaxpr, axis_size, [*bconst_b, *carry_b], carry_b)
    cond, _ = batch_jaxpr(cond_jaxpr, axis_size, [*cconst_b, *carry_b], False)
    out_dims = [0 if b else None for b in carry_b]
    if not pred_b:
        outs = while_p.bind(*cconsts, *bconsts, *carry, cond_jaxpr=cond, body_jaxpr=body,
                            cond_nconsts=cond_nconsts, body_nconsts=body_nconsts)
        return outs, out_dims
    # Lanes finish at different steps: loop while any lane runs; finished lanes keep
    # their value (the body's result is selected per lane).
    n_cc = len(cconsts)

    def any_running(*args):
        (pred,) = eval_jaxpr(cond.jaxpr, cond.consts, *args)
        return [lax.reduce_max(pred, (0,))]

    def masked_body(*args):
        cc, bc, c = _split(args, n_cc, len(bconsts))
        (pred,) = eval_jaxpr(cond.jaxpr, cond.consts, *cc, *c)
        new = eval_jaxpr(body.jaxpr, body.consts, *bc, *c)
        out = []
        for old, upd in zip(c, new):
            which = lax.broadcast_in_dim(pred, get_aval(old).shape, (0,))
            out.append(lax.select_n(which, old, upd))
        return out

    carry_avals = [get_aval(c) for c in carry]
    any_j, any_consts = _hoisted(trace_to_jaxpr(
        any_running, [*[get_aval(c) for c in cconsts], *carry_avals], "vmap"))
    body_j, body_consts = _hoisted(trace_to_jaxpr(
        masked_body, [*[get_aval(c) for c in (*cconsts, *bconsts)], *carry_avals], "vmap"))
    outs = while_p.bind(*any_consts, *cconsts, *body_consts, *cconsts, *bconsts, *carry,
                        cond_jaxpr=any_j, body_jaxpr=body_j,
                        cond_nconsts=len(any_consts) + n_cc,
                        body_nconsts=len(body_consts) + n_cc + len(bconsts))
    return outs, out_dims


while_p = Primitive("while", multiple_results=True)
while_p.impl = _while_impl
while_p.abstract_eval_rule = _while_abstract_eval
while_p.jvp = _while_jvp
while_p.partial_eval = _while_partial_eval
while_p.batch = _while_batch
