"""The transforms users call: jvp, linearize, vjp, grad, jacobians, make_jaxpr.

Each flattens its pytree arguments, runs a flat transform from `interpreters/`,
and rebuilds pytrees. Reverse mode is forward mode plus partial evaluation plus
transposition: `linearize` records the tangent computation of a JVP as a
linear jaxpr while the primal computation runs for real, and `vjp` runs that
jaxpr backwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import dtypes
from .core import _ROOT as ROOT_INTERPRETER
from .core import Tracer, current_interpreter, eval_jaxpr, get_aval, new_interpreter, using
from .interpreters.batching import move_batch_axis
from .interpreters.jvp import Zero, jvp_flat
from .interpreters.staging import StagingInterpreter, trace_to_jaxpr
from .interpreters.transpose import UndefinedPrimal, backward_pass
from .ir import ClosedJaxpr, ShapedArray
from .tree_util import tree_flatten, tree_map, tree_structure, tree_unflatten

# ============================================================================ helpers


def _leaf_aval(fname: str, what: str, leaf: Any) -> ShapedArray:
    try:
        return get_aval(leaf)
    except TypeError:
        raise TypeError(
            f"{fname}: {what} contains a value of type {type(leaf).__name__}; transforms take "
            "NumPy arrays and Python scalars (nested in tuples, lists and dicts)"
        ) from None


def _as_leaf(x: Any) -> Any:
    """Normalise a user's leaf: arrays and Python scalars pass; NumPy-convertible values convert."""
    if isinstance(x, (Tracer, np.ndarray, np.generic, bool, int, float, complex)):
        return x
    return np.asarray(x)


def _tangent_aval(aval: ShapedArray) -> ShapedArray:
    return aval.strip_weak()


def _zeros(aval: ShapedArray) -> np.ndarray:
    return np.zeros(aval.shape, aval.dtype)


def _materialize(x: Any, aval: ShapedArray) -> Any:
    """A concrete array or a tracer for a result that might be a symbolic zero or a scalar."""
    if isinstance(x, Zero):
        if current_interpreter() is ROOT_INTERPRETER:
            return _zeros(aval)
        from .lax import lax

        return lax.full(aval.shape, 0, aval.dtype)
    if isinstance(x, Tracer) or isinstance(x, (np.ndarray, np.generic)):
        return x
    return np.asarray(x, aval.dtype)  # a Python scalar


def _fresh(outs: Sequence[Any], ins: Sequence[Any]) -> list[Any]:
    """Results handed to the user: 0-d values as NumPy scalars (as NumPy's reductions
    return them), arrays writable and never aliasing an input."""
    result = []
    for o in outs:
        if isinstance(o, np.ndarray) and o.ndim == 0:
            o = o[()]
        elif isinstance(o, np.ndarray) and (
            not o.flags.writeable
            or any(isinstance(i, np.ndarray) and np.may_share_memory(o, i) for i in ins)
        ):
            o = o.copy()
        result.append(o)
    return result


def _argnums_tuple(fname: str, argnums: int | Sequence[int], nargs: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not isinstance(n, int) or not -nargs <= n < nargs:
            raise ValueError(
                f"{fname}: argnums={argnums!r} is out of range: the function was called with "
                f"{nargs} positional argument{'s' if nargs != 1 else ''}"
            )
    return tuple(n % nargs for n in nums)


def _replace_args(args: tuple, argnums: tuple[int, ...], new: Sequence[Any]) -> tuple:
    args = list(args)
    for i, value in zip(argnums, new):
        args[i] = value
    return tuple(args)


class _OutStore:
    """Remembers the output tree structure (and aux) of a flattened function call."""

    def __init__(self):
        self.tree = None
        self.aux = None


def _flatten_fun(fun: Callable, in_tree: Any, store: _OutStore, has_aux: bool,
                 fname: str) -> Callable:
    def flat_fun(*flat_args):
        out = fun(*tree_unflatten(in_tree, list(flat_args)))
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError(f"{fname}(..., has_aux=True): the function must return a pair "
                                f"(output, aux), got {type(out).__name__}")
            out, store.aux = out
        leaves, store.tree = tree_flatten(out)
        for leaf in leaves:
            _leaf_aval(fname, "the function's output", leaf)
        return leaves

    return flat_fun


# ============================================================================ forward mode


def jvp(fun: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """Evaluate `fun(*primals)` and its directional derivative along `tangents`."""
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (or lists) of arguments, e.g. "
                        "jvp(f, (x,), (v,))")
    flat_p, in_tree = tree_flatten(tuple(primals))
    flat_t, t_tree = tree_flatten(tuple(tangents))
    if in_tree != t_tree:
        raise ValueError(f"jvp: primals have structure {in_tree} but tangents have {t_tree}")
    flat_p = [_as_leaf(p) for p in flat_p]
    flat_t = [_check_tangent("jvp", p, t) for p, t in zip(flat_p, flat_t)]
    store = _OutStore()
    out_p, out_t = jvp_flat(_flatten_fun(fun, in_tree, store, False, "jvp"), flat_p, flat_t)
    out_avals = [get_aval(p).strip_weak() for p in out_p]
    out_t = [_materialize(t, a) for t, a in zip(out_t, out_avals)]
    out_p = _fresh([_materialize(p, get_aval(p)) for p in out_p], flat_p)
    return tree_unflatten(store.tree, out_p), tree_unflatten(store.tree, _fresh(out_t, flat_t))


def _check_tangent(fname: str, primal: Any, tangent: Any) -> Any:
    p_aval = _leaf_aval(fname, "primals", primal)
    if dtypes.python_scalar_dtype(tangent) is not None:
        tangent = np.asarray(tangent, p_aval.dtype)
    t_aval = _leaf_aval(fname, "tangents", tangent)
    if t_aval.shape != p_aval.shape or t_aval.dtype != p_aval.dtype:
        raise ValueError(
            f"{fname}: a tangent has type {t_aval.str_short()} but its primal has type "
            f"{p_aval.strip_weak().str_short()}; each tangent must match its primal's shape "
            "and dtype"
        )
    if not dtypes.is_differentiable(p_aval.dtype):
        return Zero(p_aval)
    return tangent


# ============================================================================ reverse mode


def linearize_flat(flat_fun: Callable, flat_primals: Sequence[Any], fname: str
                   ) -> tuple[list[Any], ClosedJaxpr]:
    """Primal outputs now, and the JVP's tangent computation as a linear jaxpr."""
    with new_interpreter(StagingInterpreter, fname, forward_known=True) as pe:
        tangents_in = []
        for p in flat_primals:
            tracer = pe.new_arg(_tangent_aval(get_aval(p)))
            tangents_in.append(tracer if dtypes.is_differentiable(get_aval(p).dtype)
                               else Zero(tracer.aval))
        with using(pe):
            out_p, out_t = jvp_flat(flat_fun, flat_primals, tangents_in, transform=fname)
        out_t = [_zeros(t.aval) if isinstance(t, Zero) else t for t in out_t]
        linear = pe.build(out_t)
    return out_p, linear


def linearize(fun: Callable, *primals: Any) -> tuple[Any, Callable]:
    """`(fun(*primals), f_jvp)` where `f_jvp(*tangents)` is the JVP at `primals`."""
    flat_p, in_tree = tree_flatten(primals)
    flat_p = [_as_leaf(p) for p in flat_p]
    store = _OutStore()
    out_p, linear = linearize_flat(_flatten_fun(fun, in_tree, store, False, "linearize"),
                                   flat_p, "linearize")
    out_tree = store.tree
    out_avals = [get_aval(p).strip_weak() for p in out_p]

    def f_jvp(*tangents: Any) -> Any:
        flat_t, t_tree = tree_flatten(tangents)
        if t_tree != in_tree:
            raise ValueError(f"linearize: f_jvp expects tangents with structure {in_tree}, "
                             f"got {t_tree}")
        flat_t = [_check_tangent("linearize", p, t) for p, t in zip(flat_p, flat_t)]
        flat_t = [_zeros(t.aval) if isinstance(t, Zero) else t for t in flat_t]
        outs = eval_jaxpr(linear.jaxpr, linear.consts, *flat_t)
        outs = [_materialize(o, a) for o, a in zip(outs, out_avals)]
        return tree_unflatten(out_tree, _fresh(outs, flat_t))

    outs = _fresh([_materialize(p, get_aval(p)) for p in out_p], flat_p)
    return tree_unflatten(out_tree, outs), f_jvp


def vjp(fun: Callable, *primals: Any, has_aux: bool = False) -> tuple[Any, ...]:
    """`(fun(*primals), vjp_fn)`; `vjp_fn(cotangent)` gives one cotangent per primal."""
    return _vjp(fun, primals, has_aux, "vjp")


def _vjp(fun: Callable, primals: tuple, has_aux: bool, fname: str) -> tuple[Any, ...]:
    flat_p, in_tree = tree_flatten(primals)
    flat_p = [_as_leaf(p) for p in flat_p]
    in_avals = [_leaf_aval(fname, "primals", p) for p in flat_p]
    store = _OutStore()
    out_p, linear = linearize_flat(_flatten_fun(fun, in_tree, store, has_aux, fname),
                                   flat_p, fname)
    out_tree = store.tree
    out_avals = [get_aval(p).strip_weak() for p in out_p]

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        flat_ct, ct_tree = tree_flatten(cotangent)
        if ct_tree != out_tree:
            raise ValueError(f"{fname}: the cotangent has structure {ct_tree} but the function's "
                             f"output has structure {out_tree}")
        checked = []
        for ct, aval in zip(flat_ct, out_avals):
            if dtypes.python_scalar_dtype(ct) is not None:
                ct = np.asarray(ct, aval.dtype)
            ct_aval = _leaf_aval(fname, "the cotangent", ct)
            if ct_aval.shape != aval.shape or ct_aval.dtype != aval.dtype:
                raise ValueError(f"{fname}: a cotangent has type {ct_aval.str_short()} but the "
                                 f"output it belongs to has type {aval.str_short()}")
            checked.append(ct)
        undefined = [UndefinedPrimal(v.aval) for v in linear.jaxpr.invars]
        cts_in = backward_pass(linear.jaxpr, linear.consts, undefined, checked)
        cts_in = [_materialize(ct, a.strip_weak()) for ct, a in zip(cts_in, in_avals)]
        return tuple(tree_unflatten(in_tree, _fresh(cts_in, checked)))

    outs = _fresh([_materialize(p, get_aval(p)) for p in out_p], flat_p)
    out = tree_unflatten(out_tree, outs)
    if has_aux:
        return out, vjp_fn, _strip_tracers(store.aux)
    return out, vjp_fn


def _strip_tracers(aux: Any) -> Any:
    """Aux outputs come back as plain values (their derivatives are not tracked)."""
    from .interpreters.jvp import JVPTracer

    def lower(x):
        while isinstance(x, JVPTracer) and not x._interp.active:
            x = x.primal
        return x

    return tree_map(lower, aux)


def _check_differentiable(fname: str, args: tuple, argnums: tuple[int, ...]) -> None:
    for i in argnums:
        for leaf in tree_flatten(args[i])[0]:
            aval = _leaf_aval(fname, f"argument {i}", _as_leaf(leaf))
            if not dtypes.is_differentiable(aval.dtype):
                raise TypeError(
                    f"{fname}: argument {i} has dtype {aval.dtype} ({aval.str_short()}), but "
                    "only floating-point inputs can be differentiated. Pass floats, e.g. "
                    "np.asarray(x, dtype=float) or 2.0 instead of 2, or differentiate with "
                    "respect to another argument (argnums)."
                )


def value_and_grad(fun: Callable, argnums: int | Sequence[int] = 0,
                   has_aux: bool = False) -> Callable:
    """A function returning `(fun(*args), gradient)` (or `((value, aux), gradient)`)."""

    def value_and_grad_fun(*args: Any, **kwargs: Any) -> Any:
        fname = "grad"
        nums = _argnums_tuple(fname, argnums, len(args))
        _check_differentiable(fname, args, nums)

        def partial_fun(*diff_args):
            return fun(*_replace_args(args, nums, diff_args), **kwargs)

        result = _vjp(partial_fun, tuple(args[i] for i in nums), has_aux, fname)
        out, vjp_fn = result[0], result[1]
        aval = _leaf_aval(fname, "the output", out) if not isinstance(out, (tuple, list, dict)) \
            else None
        if aval is None or aval.shape != () or not dtypes.is_differentiable(aval.dtype):
            got = aval.str_short() if aval is not None else f"a {type(out).__name__}"
            raise TypeError(
                f"grad requires a function with a scalar floating-point output, but it "
                f"returned {got}. Reduce it to a scalar (for example with .sum() or .mean()), "
                "or use jacrev / vjp for non-scalar outputs."
            )
        grads = vjp_fn(np.ones((), aval.dtype))
        grads = grads[0] if isinstance(argnums, int) else grads
        return ((out, result[2]) if has_aux else out), grads

    _wrap_name(value_and_grad_fun, fun, "value_and_grad")
    return value_and_grad_fun


def grad(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar-valued `fun` with respect to the arguments `argnums`."""
    vg = value_and_grad(fun, argnums, has_aux)

    def grad_fun(*args: Any, **kwargs: Any) -> Any:
        (value, grads) = vg(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    _wrap_name(grad_fun, fun, "grad")
    return grad_fun


def _wrap_name(wrapper: Callable, fun: Callable, transform: str) -> None:
    name = getattr(fun, "__name__", "fun")
    wrapper.__name__ = f"{transform}({name})"
    wrapper.__qualname__ = wrapper.__name__
    wrapper.__doc__ = getattr(fun, "__doc__", None)
    wrapper.__wrapped__ = fun  # type: ignore[attr-defined]


# ============================================================================ Jacobians


def _basis_batch(avals: Sequence[ShapedArray]) -> list[np.ndarray]:
    """The standard basis of the concatenated leaves, as one batch per leaf: leaf k gets
    shape (N,) + its shape, with N the total size, and row j is basis vector j."""
    total = sum(a.size for a in avals)
    batches, offset = [], 0
    for a in avals:
        rows = np.zeros((total, a.size), a.dtype)
        rows[offset:offset + a.size] = np.eye(a.size, dtype=a.dtype)
        batches.append(rows.reshape((total, *a.shape)))
        offset += a.size
    return batches


def _split_rows(batched: Any, avals: Sequence[ShapedArray], inner_shape: tuple) -> list[Any]:
    """Rows of a batched result (batch axis first, then `inner_shape`), split into one
    block per leaf of `avals`, each reshaped to leaf.shape + inner_shape."""
    from .lax import lax

    blocks, offset = [], 0
    n = len(inner_shape)
    for a in avals:
        rows = lax.slice(batched, (offset, *[0] * n), (offset + a.size, *inner_shape))
        blocks.append(lax.reshape(rows, (*a.shape, *inner_shape)))
        offset += a.size
    return blocks


def _to_out_first(block: Any, in_ndim: int, out_ndim: int) -> Any:
    """in.shape + out.shape -> out.shape + in.shape."""
    from .lax import lax

    perm = tuple(range(in_ndim, in_ndim + out_ndim)) + tuple(range(in_ndim))
    return lax.transpose(block, perm)


def _jac_tree(blocks, out_tree, arg_trees, int_argnums: bool):
    """Nest blocks as JAX does: the output's tree, each leaf a tree of the inputs."""
    out_leaves = []
    for row in blocks:
        per_arg, k = [], 0
        for tree in arg_trees:
            n = tree.num_leaves
            per_arg.append(tree_unflatten(tree, row[k:k + n]))
            k += n
        out_leaves.append(per_arg[0] if int_argnums else tuple(per_arg))
    return tree_unflatten(out_tree, out_leaves)


def _jacobian(fname: str, fun: Callable, argnums: int | Sequence[int], forward: bool
              ) -> Callable:
    def jacfun(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums_tuple(fname, argnums, len(args))
        _check_differentiable(fname, args, nums)
        diff = tuple(args[i] for i in nums)

        def partial_fun(*diff_args):
            return fun(*_replace_args(args, nums, diff_args), **kwargs)

        flat_in, in_tree = tree_flatten(diff)
        in_avals = [get_aval(_as_leaf(x)).strip_weak() for x in flat_in]
        if forward:  # one batched JVP over the input basis
            def tangent_out(*tangents):
                return jvp(partial_fun, diff, tangents)

            basis = tree_unflatten(in_tree, _basis_batch(in_avals))
            out, columns = vmap(tangent_out, out_axes=(None, 0))(*basis)
            flat_out, out_tree = tree_flatten(out)
            out_avals = [get_aval(o).strip_weak() for o in flat_out]
            columns = tree_flatten(columns)[0]  # each (N_in,) + out.shape
            per_in = [_split_rows(c, in_avals, o.shape) for c, o in zip(columns, out_avals)]
            blocks = [[_to_out_first(b, i.ndim, o.ndim) for b, i in zip(row, in_avals)]
                      for row, o in zip(per_in, out_avals)]
        else:  # one batched VJP over the output basis
            out, vjp_fn = _vjp(partial_fun, diff, False, fname)
            flat_out, out_tree = tree_flatten(out)
            out_avals = [get_aval(o).strip_weak() for o in flat_out]
            basis = tree_unflatten(out_tree, _basis_batch(out_avals))
            rows = tree_flatten(vmap(vjp_fn)(basis))[0]  # each (N_out,) + in.shape
            per_in = [_split_rows(r, out_avals, i.shape) for r, i in zip(rows, in_avals)]
            blocks = [[per_in[k][m] for k in range(len(in_avals))]
                      for m in range(len(out_avals))]
        blocks = [[_materialize(b, get_aval(b)) for b in row] for row in blocks]
        blocks = [_fresh(row, flat_in) for row in blocks]
        arg_trees = [tree_structure(a) for a in diff]
        return _jac_tree(blocks, out_tree, arg_trees, isinstance(argnums, int))

    _wrap_name(jacfun, fun, fname)
    return jacfun


def jacfwd(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian by forward mode (a batched JVP per input element): `out.shape + in.shape`."""
    return _jacobian("jacfwd", fun, argnums, forward=True)


def jacrev(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian by reverse mode (a batched VJP per output element): `out.shape + in.shape`."""
    return _jacobian("jacrev", fun, argnums, forward=False)


def hessian(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """Second derivatives: `jacfwd(jacrev(fun))`."""
    h = jacfwd(jacrev(fun, argnums), argnums)
    _wrap_name(h, fun, "hessian")
    return h


# ============================================================================ staging


def make_jaxpr(fun: Callable, static_argnums: int | Sequence[int] = ()) -> Callable:
    """A function that traces `fun` on its arguments' shapes and dtypes and returns the IR."""
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    def make(*args: Any, **kwargs: Any) -> ClosedJaxpr:
        nums = {i % len(args) for i in static} if args else set()
        dynamic = [i for i in range(len(args)) if i not in nums]
        flat, in_tree = tree_flatten(tuple(args[i] for i in dynamic))
        in_avals = [_leaf_aval("make_jaxpr", "an argument", _as_leaf(x)) for x in flat]
        store = _OutStore()

        def with_static(*dyn):
            return fun(*_replace_args(args, tuple(dynamic), dyn), **kwargs)

        flat_fun = _flatten_fun(with_static, in_tree, store, False, "make_jaxpr")
        return trace_to_jaxpr(flat_fun, in_avals, "make_jaxpr")

    _wrap_name(make, fun, "make_jaxpr")
    return make


# ============================================================================ batching


def _axes_per_leaf(fname: str, what: str, axes: Any, tree: Any) -> list[Any]:
    from .tree_util import broadcast_prefix

    try:
        return broadcast_prefix(axes, tree, is_leaf=lambda x: x is None)
    except ValueError as err:
        raise ValueError(
            f"{fname}: {what}={axes!r} is not a prefix of the structure of the "
            f"{'arguments' if what == 'in_axes' else 'outputs'} ({tree_structure(tree)}): "
            f"{err}"
        ) from None


def _leaf_names(tree: Any, name: str) -> list[str]:
    """For error messages: `name` for a lone leaf, else "leaf j of <name>" per leaf."""
    from .tree_util import treedef_is_leaf

    treedef = tree_structure(tree)
    if treedef_is_leaf(treedef):
        return [name]
    return [f"leaf {j} of {name}" for j in range(treedef.num_leaves)]


def _normalize_batch_axis(fname: str, what: str, axis: Any, ndim: int, where: str) -> int | None:
    if axis is None:
        return None
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{fname}: {what} entries must be int or None, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{fname}: {what} axis {axis} is out of range for {where} of rank "
                         f"{ndim if what == 'in_axes' else ndim - 1}")
    return int(axis) % ndim


def vmap(fun: Callable, in_axes: Any = 0, out_axes: Any = 0) -> Callable:
    """Map `fun` over an axis of its arguments, as one batched computation.

    `in_axes` gives the mapped axis of each argument (an int, None for an unmapped
    argument, or a pytree prefix of the arguments); `out_axes` places the batch axis
    in the outputs.
    """

    def vmapped(*args: Any) -> Any:
        axes_tree = tuple(in_axes) if isinstance(in_axes, list) else in_axes
        if isinstance(axes_tree, tuple) and len(axes_tree) != len(args):
            raise ValueError(f"vmap: in_axes has {len(axes_tree)} entries but the function was "
                             f"called with {len(args)} positional arguments")
        flat, in_tree = tree_flatten(args)
        flat = [_as_leaf(x) for x in flat]
        axes = _axes_per_leaf("vmap", "in_axes", axes_tree, args)
        names = [n for i, a in enumerate(args) for n in _leaf_names(a, f"argument {i}")]
        dims, sizes = [], []
        for name, x, ax in zip(names, flat, axes):
            aval = _leaf_aval("vmap", "an argument", x)
            d = _normalize_batch_axis("vmap", "in_axes", ax, aval.ndim, f"{name} "
                                      f"of shape {aval.shape}")
            dims.append(d)
            if d is not None:
                sizes.append((name, aval.shape, d, aval.shape[d]))
        if not sizes:
            raise ValueError("vmap: in_axes maps no argument (all None); at least one "
                             "argument must have a batch axis")
        if len({s for *_, s in sizes}) > 1:
            listed = "; ".join(f"{name} of shape {shape} has size {s} along axis "
                               f"{d}" for name, shape, d, s in sizes)
            raise ValueError(f"vmap: the mapped axes have different sizes: {listed}")
        axis_size = sizes[0][3]
        store = _OutStore()
        from .interpreters.batching import batch_flat

        outs, out_dims = batch_flat(_flatten_fun(fun, in_tree, store, False, "vmap"),
                                    axis_size, flat, dims)
        out_shaped = tree_unflatten(store.tree, list(range(len(outs))))  # leaves as stand-ins
        out_ax = _axes_per_leaf("vmap", "out_axes", out_axes, out_shaped)
        results = []
        out_names = _leaf_names(out_shaped, "the output")
        for o, d, ax, name in zip(outs, out_dims, out_ax, out_names):
            ndim = get_aval(o).ndim + (1 if d is None else 0)
            if ax is None:
                if d is not None:
                    raise ValueError(f"vmap: out_axes=None for {name}, which depends on the "
                                     "mapped inputs; only unbatched outputs can have None")
                results.append(o)
                continue
            dst = _normalize_batch_axis("vmap", "out_axes", ax, ndim, name)
            results.append(move_batch_axis(o, d, dst, axis_size))
        results = [_materialize(r, get_aval(r)) for r in results]
        return tree_unflatten(store.tree, _fresh(results, flat))

    _wrap_name(vmapped, fun, "vmap")
    return vmapped
