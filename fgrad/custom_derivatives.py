"""User-defined derivative rules: `custom_jvp` and `custom_vjp`.

A decorated function is traced into a jaxpr and bound as one primitive whose
parameters also hold the user's rule. Evaluation, staging and batching use the
traced function; differentiation uses the rule. A `custom_jvp` rule serves reverse
mode too, through linearity. A `custom_vjp` function under differentiation runs
its `fwd` on the primals and leaves a `custom_lin` equation in the linear program,
whose transpose is the user's `bwd`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .core import Primitive, eval_jaxpr, get_aval
from .interpreters.batching import batch_flat, batch_jaxpr, move_batch_axis
from .interpreters.jvp import Zero, instantiate
from .interpreters.staging import convert_constvars, trace_to_jaxpr
from .interpreters.transpose import is_undefined
from .ir import ClosedJaxpr, ShapedArray
from .tree_util import tree_flatten, tree_unflatten


class _Rule:
    """A user rule as a primitive parameter: hashable by identity, readable in listings."""

    def __init__(self, fn: Callable, what: str):
        self.fn = fn
        self.what = what

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"<{self.what}>"


def _positional(fun: Callable, args: tuple, kwargs: dict) -> tuple:
    if not kwargs:
        return args
    return tuple(inspect.signature(fun).bind(*args, **kwargs).args)


def _split_nondiff(args: tuple, nondiff_argnums: Sequence[int]) -> tuple[list, list]:
    nondiff = [args[i] for i in nondiff_argnums]
    diff = [a for i, a in enumerate(args) if i not in nondiff_argnums]
    return nondiff, diff


def _rebuild(nondiff_argnums: Sequence[int], nondiff: Sequence[Any], diff: Sequence[Any]
             ) -> list[Any]:
    out, nd, d = [], iter(nondiff), iter(diff)
    for i in range(len(nondiff) + len(diff)):
        out.append(next(nd) if i in nondiff_argnums else next(d))
    return out


def _trace_call(fun: Callable, nondiff_argnums, nondiff, diff, what: str):
    """Trace `fun` with the differentiable arguments abstract; the jaxpr with its constants
    hoisted to leading inputs, the constants, and the trees of inputs and outputs."""
    flat, in_tree = tree_flatten(list(diff))
    avals = [get_aval(x) for x in flat]
    found: dict[str, Any] = {}

    def flat_fun(*flat_args):
        out = fun(*_rebuild(nondiff_argnums, nondiff, tree_unflatten(in_tree, list(flat_args))))
        leaves, found["out_tree"] = tree_flatten(out)
        return leaves

    closed = trace_to_jaxpr(flat_fun, avals, what)
    jaxpr, consts = convert_constvars(closed)
    return ClosedJaxpr(jaxpr, []), list(consts), flat, in_tree, found["out_tree"]


def _check_outputs(what: str, tree: Any, leaves: Sequence[Any], expected_tree: Any,
                   expected_avals: Sequence[ShapedArray]) -> None:
    if tree != expected_tree:
        raise TypeError(f"{what} returned a value with structure {tree}, but the function "
                        f"returns {expected_tree}")
    for leaf, aval in zip(leaves, expected_avals):
        got = get_aval(leaf)
        if (got.shape, got.dtype) != (aval.shape, aval.dtype):
            raise TypeError(f"{what} returned a value of type {got.str_short()} where the "
                            f"function returns {aval.str_short()}")


def _no_tangents_for_consts(name: str, tangents: Sequence[Any]) -> None:
    if any(not isinstance(t, Zero) for t in tangents):
        raise TypeError(
            f"the {name} function closes over a value that is being differentiated; pass "
            "that value as an argument instead, so that its rule can see it"
        )


# ============================================================================ custom_jvp


class custom_jvp:  # noqa: N801 (JAX's name)
    """A function with a user-defined JVP rule: `@custom_jvp` then `@f.defjvp`.

    The rule is called as `rule(*nondiff_args, primals, tangents)` and returns
    `(primal_out, tangent_out)`.
    """

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.jvp_rule: Callable | None = None

    def defjvp(self, jvp: Callable) -> Callable:
        self.jvp_rule = jvp
        return jvp

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self.fun, "__name__", "fun")
        if self.jvp_rule is None:
            raise AttributeError(f"no JVP rule was defined for the custom_jvp function {name}; "
                                 "add one with @{name}.defjvp")
        args = _positional(self.fun, args, kwargs)
        nondiff, diff = _split_nondiff(args, self.nondiff_argnums)
        call, consts, flat, in_tree, out_tree = _trace_call(
            self.fun, self.nondiff_argnums, nondiff, diff, "custom_jvp")
        rule, out_avals = self.jvp_rule, call.out_avals

        def flat_rule(primals: Sequence[Any], tangents: Sequence[Any]) -> list[Any]:
            p = tree_unflatten(in_tree, list(primals))
            t = tree_unflatten(in_tree, list(tangents))
            result = rule(*nondiff, tuple(p), tuple(t))
            if not (isinstance(result, (tuple, list)) and len(result) == 2):
                raise TypeError(f"the JVP rule of {name} must return a pair "
                                "(primal_out, tangent_out)")
            p_leaves, p_tree = tree_flatten(result[0])
            t_leaves, t_tree = tree_flatten(result[1])
            _check_outputs(f"the JVP rule of {name} (primal_out)", p_tree, p_leaves, out_tree,
                           out_avals)
            _check_outputs(f"the JVP rule of {name} (tangent_out)", t_tree, t_leaves, out_tree,
                           out_avals)
            return [*p_leaves, *t_leaves]

        outs = custom_jvp_call_p.bind(*consts, *flat, call_jaxpr=call,
                                      jvp=_Rule(flat_rule, f"custom jvp rule of {name}"),
                                      num_consts=len(consts))
        return tree_unflatten(out_tree, outs)


def _custom_jvp_call_impl(*args, call_jaxpr, jvp, num_consts):
    return eval_jaxpr(call_jaxpr.jaxpr, call_jaxpr.consts, *args)


def _custom_jvp_call_jvp(primals, tangents, *, call_jaxpr, jvp, num_consts):
    _no_tangents_for_consts("custom_jvp", tangents[:num_consts])
    args = primals[num_consts:]
    arg_tangents = [instantiate(t) for t in tangents[num_consts:]]
    outs = jvp(args, arg_tangents)
    n = len(call_jaxpr.out_avals)
    return outs[:n], outs[n:]


def _custom_jvp_call_batch(vals, dims, *, axis_size, call_jaxpr, jvp, num_consts):
    batched = [d is not None for d in dims]
    vals = [move_batch_axis(v, d, 0, axis_size) if d is not None else v
            for v, d in zip(vals, dims)]
    call, _ = batch_jaxpr(call_jaxpr, axis_size, batched, True)
    arg_batched = batched[num_consts:]

    def batched_rule(primals, tangents):
        in_dims = [0 if b else None for b in arg_batched]
        outs, out_dims = batch_flat(lambda *a: jvp(a[:len(primals)], a[len(primals):]),
                                    axis_size, [*primals, *tangents], [*in_dims, *in_dims])
        return [move_batch_axis(o, d, 0, axis_size) for o, d in zip(outs, out_dims)]

    outs = custom_jvp_call_p.bind(*vals, call_jaxpr=call,
                                  jvp=_Rule(batched_rule, f"vmap of {jvp.what}"),
                                  num_consts=num_consts)
    return outs, [0] * len(outs)


custom_jvp_call_p = Primitive("custom_jvp_call", multiple_results=True)
custom_jvp_call_p.impl = _custom_jvp_call_impl
custom_jvp_call_p.abstract_eval_rule = lambda *avals, call_jaxpr, jvp, num_consts: (
    call_jaxpr.out_avals)
custom_jvp_call_p.jvp = _custom_jvp_call_jvp
custom_jvp_call_p.batch = _custom_jvp_call_batch


# ============================================================================ custom_vjp


class custom_vjp:  # noqa: N801 (JAX's name)
    """A function with a user-defined VJP: `@custom_vjp` then `f.defvjp(fwd, bwd)`.

    `fwd(*args)` returns `(out, residuals)`; `bwd(*nondiff_args, residuals, cotangent)`
    returns one cotangent per differentiable argument (a tuple; `None` means zero).
    """

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self.fun, "__name__", "fun")
        if self.fwd is None or self.bwd is None:
            raise AttributeError(f"no VJP was defined for the custom_vjp function {name}; add "
                                 f"one with {name}.defvjp(fwd, bwd)")
        args = _positional(self.fun, args, kwargs)
        nondiff, diff = _split_nondiff(args, self.nondiff_argnums)
        call, consts, flat, in_tree, out_tree = _trace_call(
            self.fun, self.nondiff_argnums, nondiff, diff, "custom_vjp")
        fwd, bwd, out_avals = self.fwd, self.bwd, call.out_avals
        in_avals = [get_aval(x) for x in flat]

        def flat_fwd(primals: Sequence[Any]) -> tuple[list[Any], list[Any], Any]:
            diff_args = tree_unflatten(in_tree, list(primals))
            result = fwd(*_rebuild(self.nondiff_argnums, nondiff, diff_args))
            if not (isinstance(result, (tuple, list)) and len(result) == 2):
                raise TypeError(f"the fwd rule of {name} must return a pair (out, residuals)")
            out_leaves, tree = tree_flatten(result[0])
            _check_outputs(f"the fwd rule of {name}", tree, out_leaves, out_tree, out_avals)
            res_leaves, res_tree = tree_flatten(result[1])
            return out_leaves, res_leaves, res_tree

        def flat_bwd(res_tree: Any, residuals: Sequence[Any], cts: Sequence[Any]) -> list[Any]:
            res = tree_unflatten(res_tree, list(residuals))
            result = bwd(*nondiff, res, tree_unflatten(out_tree, list(cts)))
            if not isinstance(result, (tuple, list)) or len(result) != len(diff):
                raise TypeError(
                    f"the bwd rule of {name} must return a tuple with one cotangent per "
                    f"differentiable argument ({len(diff)}), got {type(result).__name__}"
                    f"{f' of length {len(result)}' if isinstance(result, (tuple, list)) else ''}"
                )
            leaves = []
            for i, (value, arg) in enumerate(zip(result, diff)):
                arg_leaves, arg_tree = tree_flatten(arg)
                if value is None:
                    leaves += [np.zeros(get_aval(a).shape, get_aval(a).dtype) for a in arg_leaves]
                    continue
                got, got_tree = tree_flatten(value)
                if got_tree != arg_tree:
                    raise TypeError(f"the bwd rule of {name} returned a cotangent with "
                                    f"structure {got_tree} for argument {i}, whose structure "
                                    f"is {arg_tree}")
                leaves += got
            for leaf, aval in zip(leaves, in_avals):
                got = get_aval(leaf)
                if got.shape != aval.shape:
                    raise TypeError(f"the bwd rule of {name} returned a cotangent of shape "
                                    f"{got.shape} for an input of shape {aval.shape}")
            return leaves

        outs = custom_vjp_call_p.bind(
            *consts, *flat, call_jaxpr=call, fwd=_Rule(flat_fwd, f"custom fwd of {name}"),
            bwd=_Rule(flat_bwd, f"custom bwd of {name}"), num_consts=len(consts))
        return tree_unflatten(out_tree, outs)


def _custom_vjp_call_impl(*args, call_jaxpr, fwd, bwd, num_consts):
    return eval_jaxpr(call_jaxpr.jaxpr, call_jaxpr.consts, *args)


def _custom_vjp_call_jvp(primals, tangents, *, call_jaxpr, fwd, bwd, num_consts):
    _no_tangents_for_consts("custom_vjp", tangents[:num_consts])
    outs, residuals, res_tree = fwd(primals[num_consts:])
    arg_tangents = [instantiate(t) for t in tangents[num_consts:]]
    tangent_out = custom_lin_p.bind(
        *residuals, *arg_tangents, num_res=len(residuals),
        bwd=_Rule(functools.partial(bwd, res_tree), bwd.what),
        out_avals=tuple(a.strip_weak() for a in call_jaxpr.out_avals))
    return outs, tangent_out


def _custom_vjp_call_batch(vals, dims, *, axis_size, call_jaxpr, fwd, bwd, num_consts):
    batched = [d is not None for d in dims]
    vals = [move_batch_axis(v, d, 0, axis_size) if d is not None else v
            for v, d in zip(vals, dims)]
    call, _ = batch_jaxpr(call_jaxpr, axis_size, batched, True)
    in_dims = [0 if b else None for b in batched[num_consts:]]
    found: dict[str, Any] = {}

    def batched_fwd(primals):
        def run(*args):
            outs, res, found["res_tree"] = fwd(args)
            found["n_out"] = len(outs)
            return [*outs, *res]

        results, out_dims = batch_flat(run, axis_size, list(primals), in_dims)
        results = [move_batch_axis(r, d, 0, axis_size) for r, d in zip(results, out_dims)]
        n = found["n_out"]
        return results[:n], results[n:], found["res_tree"]

    def batched_bwd(res_tree, residuals, cts):
        def run(*args):
            return bwd(res_tree, args[:len(residuals)], args[len(residuals):])

        results, out_dims = batch_flat(run, axis_size, [*residuals, *cts],
                                       [0] * (len(residuals) + len(cts)))
        return [move_batch_axis(r, d, 0, axis_size) for r, d in zip(results, out_dims)]

    outs = custom_vjp_call_p.bind(*vals, call_jaxpr=call,
                                  fwd=_Rule(batched_fwd, f"vmap of {fwd.what}"),
                                  bwd=_Rule(batched_bwd, f"vmap of {bwd.what}"),
                                  num_consts=num_consts)
    return outs, [0] * len(outs)


custom_vjp_call_p = Primitive("custom_vjp_call", multiple_results=True)
custom_vjp_call_p.impl = _custom_vjp_call_impl
custom_vjp_call_p.abstract_eval_rule = lambda *avals, call_jaxpr, fwd, bwd, num_consts: (
    call_jaxpr.out_avals)
custom_vjp_call_p.jvp = _custom_vjp_call_jvp
custom_vjp_call_p.batch = _custom_vjp_call_batch


def _custom_lin_impl(*args, num_res, bwd, out_avals):
    raise TypeError(
        "forward-mode differentiation (jvp, jacfwd, linearize's f_jvp) of a custom_vjp "
        "function is not supported: its rule only runs backwards. Use custom_jvp instead, "
        "or reverse mode (grad, vjp, jacrev)."
    )


def _custom_lin_transpose(cts, *args, num_res, bwd, out_avals):
    residuals = args[:num_res]
    if any(is_undefined(r) for r in residuals):
        raise TypeError("custom_vjp: residuals cannot be tangents")
    cts = [np.zeros(a.shape, a.dtype) if isinstance(ct, Zero) else ct
           for ct, a in zip(cts, out_avals)]
    return [None] * num_res + list(bwd(residuals, cts))


custom_lin_p = Primitive("custom_lin", multiple_results=True)
custom_lin_p.impl = _custom_lin_impl
custom_lin_p.abstract_eval_rule = lambda *avals, num_res, bwd, out_avals: list(out_avals)
custom_lin_p.transpose = _custom_lin_transpose
