"""`jit`: trace a function once per signature into a jaxpr, and run it compiled.

`jit(f)(*args)` looks its arguments' signature (tree structure, shapes, dtypes,
weak types, static values) up in a cache, tracing `f` on a miss, and binds the
`jit` call primitive, whose parameter is the traced jaxpr. The primitive has the
rules of any higher-order primitive (JVP, partial evaluation, transpose, batching,
DCE), so `grad(jit(f))`, `jit(grad(f))` and `vmap(jit(f))` all end in compiled code:
each rule produces another jaxpr and binds `jit` on it again. Its evaluation rule
hands the jaxpr to the backend (`fgrad.backend`), or to the NumPy interpreter
when `FGRAD_BACKEND=numpy`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .core import _ROOT as ROOT_INTERPRETER
from .core import Primitive, Tracer, current_interpreter, eval_jaxpr, get_aval, using
from .interpreters.batching import batch_jaxpr, move_batch_axis
from .interpreters.jvp import Zero, jvp_jaxpr
from .interpreters.staging import (
    convert_constvars,
    dce_call_eqn,
    partial_eval_jaxpr,
    trace_to_jaxpr,
)
from .interpreters.transpose import is_undefined, transpose_jaxpr
from .ir import ClosedJaxpr, ShapedArray
from .tree_util import tree_flatten, tree_unflatten

_jit_disabled: contextvars.ContextVar[bool] = contextvars.ContextVar("fgrad_disable_jit",
                                                                      default=False)


@contextlib.contextmanager
def disable_jit() -> Iterator[None]:
    """Inside this block, `jit(f)` calls `f` directly (to debug with print and pdb)."""
    token = _jit_disabled.set(True)
    try:
        yield
    finally:
        _jit_disabled.reset(token)


def _memo(fn: Callable) -> Callable:
    """Memoise a jaxpr-to-jaxpr derivation on the identity of its input jaxpr."""
    table: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @functools.wraps(fn)
    def memoised(closed: ClosedJaxpr, *key: Any) -> Any:
        per_jaxpr = table.setdefault(closed, {})
        if key not in per_jaxpr:
            per_jaxpr[key] = fn(closed, *key)
        return per_jaxpr[key]

    return memoised


_jvp_jaxpr = _memo(lambda c, nz: jvp_jaxpr(c, list(nz), False))
_partial_eval_jaxpr = _memo(lambda c, uk: partial_eval_jaxpr(c, list(uk)))
_transpose_jaxpr = _memo(lambda c, lin: transpose_jaxpr(c, list(lin)))
_batch_jaxpr = _memo(lambda c, n, b: batch_jaxpr(c, n, list(b), False))


# ============================================================================ the primitive


def backend_name() -> str:
    return os.environ.get("FGRAD_BACKEND", "numba").lower()


_executables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def executable_for(closed: ClosedJaxpr, name: str | None = None) -> Callable[..., list[Any]]:
    """The compiled program for a jaxpr (compiled once, then cached with the jaxpr)."""
    exe = _executables.get(closed)
    if exe is None:
        if backend_name() == "numpy":
            def exe(*args):
                return eval_jaxpr(closed.jaxpr, closed.consts, *args)
        else:
            from . import backend

            exe = backend.compile_jaxpr(closed, name)
        _executables[closed] = exe
    return exe


def _jit_impl(*args, jaxpr, name):
    return executable_for(jaxpr, name)(*args)


def _jit_jvp(primals, tangents, *, jaxpr, name):
    nonzeros = tuple(not isinstance(t, Zero) for t in tangents)
    jvp, out_nz = _jvp_jaxpr(jaxpr, nonzeros)
    given = [t for t in tangents if not isinstance(t, Zero)]
    outs = jit_p.bind(*primals, *given, jaxpr=jvp, name=f"jvp({name})")
    n = len(jaxpr.out_avals)
    t_out = iter(outs[n:])
    return outs[:n], [next(t_out) if nz else Zero(a.strip_weak())
                      for nz, a in zip(out_nz, jaxpr.out_avals)]


def _jit_partial_eval(interp, args, unknown, *, jaxpr, name):
    known, unknown_j, out_uk, n_res = _partial_eval_jaxpr(jaxpr, tuple(unknown))
    with using(interp.parent):
        known_outs = jit_p.bind(*[a for a, u in zip(args, unknown) if not u], jaxpr=known,
                                name=name)
    residuals = known_outs[len(known_outs) - n_res:] if n_res else []
    known_outs = known_outs[:len(known_outs) - n_res]
    unknown_outs = interp.stage(jit_p, [*residuals, *[a for a, u in zip(args, unknown) if u]],
                                {"jaxpr": unknown_j, "name": f"linear({name})"})
    k, u = iter(known_outs), iter(unknown_outs)
    return [next(u) if is_uk else next(k) for is_uk in out_uk]


def _jit_transpose(cts, *args, jaxpr, name):
    from .lax import lax

    linear = tuple(is_undefined(a) for a in args)
    cts = [lax.full(a.shape, 0, a.strip_weak().dtype) if isinstance(ct, Zero) else ct
           for ct, a in zip(cts, jaxpr.out_avals)]
    transposed = _transpose_jaxpr(jaxpr, linear)
    nonlinear = [a for a, lin in zip(args, linear) if not lin]
    cts_in = iter(jit_p.bind(*nonlinear, *cts, jaxpr=transposed, name=f"transpose({name})"))
    return [next(cts_in) if lin else None for lin in linear]


def _jit_batch(vals, dims, *, axis_size, jaxpr, name):
    batched = tuple(d is not None for d in dims)
    vals = [move_batch_axis(v, d, 0, axis_size) if d is not None else v
            for v, d in zip(vals, dims)]
    body, out_batched = _batch_jaxpr(jaxpr, axis_size, batched)
    outs = jit_p.bind(*vals, jaxpr=body, name=f"vmap({name})")
    return outs, [0 if b else None for b in out_batched]


jit_p = Primitive("jit", multiple_results=True)
jit_p.impl = _jit_impl
jit_p.abstract_eval_rule = lambda *avals, jaxpr, name: jaxpr.out_avals
jit_p.jvp = _jit_jvp
jit_p.partial_eval = _jit_partial_eval
jit_p.transpose = _jit_transpose
jit_p.batch = _jit_batch
jit_p.dce = dce_call_eqn


# ============================================================================ the transform


def _fresh(out: Any, ins: Sequence[Any]) -> Any:
    """A result the user may keep and modify: 0-d as a NumPy scalar, arrays never
    aliasing an argument or a captured constant."""
    if not isinstance(out, np.ndarray):
        return out
    if out.ndim == 0:
        return out[()]
    if not out.flags.writeable or any(
            isinstance(i, np.ndarray) and np.may_share_memory(out, i) for i in ins):
        return out.copy()
    return out


class _Traced:
    __slots__ = ("jaxpr", "consts", "out_tree")

    def __init__(self, jaxpr: ClosedJaxpr, consts: list[Any], out_tree: Any):
        self.jaxpr, self.consts, self.out_tree = jaxpr, consts, out_tree


class JitFunction:
    """What `jit(f)` returns: call it like `f`; `.lower(*args)` shows what it compiles to."""

    def __init__(self, fun: Callable, static_argnums: Sequence[int],
                 static_argnames: Sequence[str]):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.static_argnums = tuple(static_argnums)
        self.static_argnames = tuple(static_argnames)
        self.name = getattr(fun, "__name__", "fun")
        self.trace_count = 0
        self._cache: dict[Any, _Traced] = {}
        self._fast_cache: dict[Any, _Traced] = {}
        try:
            self._signature: inspect.Signature | None = inspect.signature(fun)
        except (TypeError, ValueError):
            self._signature = None

    def __repr__(self) -> str:
        return f"<jit({self.name})>"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:  # works as a method too
        return self if obj is None else functools.partial(self, obj)

    def _split(self, args: tuple, kwargs: dict) -> tuple[list[Any], dict[str, Any], tuple]:
        """Dynamic positional args, dynamic kwargs, and the static values (the cache key)."""
        nargs = len(args)
        static_nums = {i % nargs if nargs else i for i in self.static_argnums
                       if -nargs <= i < nargs}
        names = set(self.static_argnames)
        if self._signature is not None:  # a static argnum passed by keyword, or vice versa
            params = list(self._signature.parameters)
            names |= {params[i] for i in self.static_argnums if 0 <= i < len(params)}
            static_nums |= {params.index(n) for n in self.static_argnames
                            if n in params and params.index(n) < nargs}
        static = []
        for i in sorted(static_nums):
            static.append((i, self._hashable(args[i], f"argument {i}")))
        for key in sorted(k for k in kwargs if k in names):
            static.append((key, self._hashable(kwargs[key], f"argument {key!r}")))
        dynamic = [a for i, a in enumerate(args) if i not in static_nums]
        dyn_kwargs = {k: v for k, v in kwargs.items() if k not in names}
        return dynamic, dyn_kwargs, tuple(static)

    def _hashable(self, value: Any, what: str) -> Any:
        try:
            hash(value)
        except TypeError:
            raise TypeError(
                f"jit({self.name}): the static {what} has the unhashable type "
                f"{type(value).__name__}; static arguments are cache keys and must be "
                "hashable (use a tuple instead of a list, or pass arrays as non-static "
                "arguments)"
            ) from None
        return value

    def _flat_avals(self, flat: Sequence[Any], in_tree: Any) -> list[ShapedArray]:
        avals = []
        for i, leaf in enumerate(flat):
            try:
                aval = get_aval(leaf)
                if aval.dtype.kind not in "biufc":
                    raise TypeError
                avals.append(aval)
            except TypeError:
                raise TypeError(
                    f"jit({self.name}): an argument (leaf {i} of {in_tree}) is a "
                    f"{type(leaf).__name__}, not an array. Pass arrays or numbers, or make "
                    "the argument static with static_argnums / static_argnames."
                ) from None
        return avals

    def _trace(self, args: tuple, kwargs: dict) -> tuple[_Traced, list[Any]]:
        fast = not kwargs and not self.static_argnums and not self.static_argnames and all(
            type(a) is np.ndarray for a in args)
        if fast:  # the common call: positional arrays only; the key is their types
            key = tuple((a.shape, a.dtype) for a in args)
            traced = self._fast_cache.get(key)
            if traced is not None:
                return traced, list(args)
        traced, flat = self._trace_slow(args, kwargs)
        if fast and not any(isinstance(c, Tracer) for c in traced.consts):
            self._fast_cache[key] = traced
        return traced, flat

    def _trace_slow(self, args: tuple, kwargs: dict) -> tuple[_Traced, list[Any]]:
        dynamic, dyn_kwargs, static = self._split(args, kwargs)
        flat, in_tree = tree_flatten((dynamic, dyn_kwargs))
        avals = self._flat_avals(flat, in_tree)
        key = (in_tree, tuple((a.shape, a.dtype, a.weak_type) for a in avals), static)
        traced = self._cache.get(key)
        if traced is None:
            traced = self._trace_new(args, kwargs, static, in_tree, avals)
            if not any(isinstance(c, Tracer) for c in traced.consts):
                self._cache[key] = traced  # closing over a traced value: trace every call
        return traced, flat

    def _trace_new(self, args, kwargs, static, in_tree, avals) -> _Traced:
        static_pos = {k: v for k, v in static if isinstance(k, int)}
        static_kw = {k: v for k, v in static if isinstance(k, str)}
        out_tree: list[Any] = []

        def flat_fun(*flat_args):
            dynamic, dyn_kwargs = tree_unflatten(in_tree, list(flat_args))
            full, d = [], iter(dynamic)
            for i in range(len(args)):
                full.append(static_pos[i] if i in static_pos else next(d))
            out = self.fun(*full, **dyn_kwargs, **static_kw)
            leaves, tree = tree_flatten(out)
            out_tree.append(tree)
            return leaves

        self.trace_count += 1
        closed = trace_to_jaxpr(flat_fun, avals, "jit")
        jaxpr, consts = convert_constvars(closed)
        return _Traced(ClosedJaxpr(jaxpr, []), list(consts), out_tree[0])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _jit_disabled.get():
            return self.fun(*args, **kwargs)
        traced, flat = self._trace(args, kwargs)
        if current_interpreter() is not ROOT_INTERPRETER:  # under a transform: its rules
            outs = jit_p.bind(*traced.consts, *flat, jaxpr=traced.jaxpr, name=self.name)
            return tree_unflatten(traced.out_tree, outs)
        # Plain call: straight to the compiled program (what jit_p's impl would do).
        exe = executable_for(traced.jaxpr, self.name)
        outs = exe(*traced.consts, *flat)
        if not getattr(exe, "fresh_outputs", False):
            outs = [_fresh(o, [*flat, *traced.consts]) for o in outs]
        return tree_unflatten(traced.out_tree, outs)

    def lower(self, *args: Any, **kwargs: Any) -> Lowered:
        """The traced program for these arguments, and what the backend makes of it."""
        traced, _ = self._trace(args, kwargs)
        return Lowered(self.name, traced.jaxpr)


class Lowered:
    """`jit(f).lower(*args)`: `.jaxpr`, `.as_text()` (the IR and the fused kernel groups)
    and `.kernels()` (the generated kernel source)."""

    def __init__(self, name: str, jaxpr: ClosedJaxpr):
        self.name = name
        self.jaxpr = jaxpr

    def _compiled(self) -> Any:
        return executable_for(self.jaxpr, self.name)

    def as_text(self) -> str:
        exe = self._compiled()
        text = getattr(exe, "as_text", None)
        return text() if text else str(self.jaxpr)

    def kernels(self) -> dict[str, str]:
        exe = self._compiled()
        kernels = getattr(exe, "kernels", None)
        return kernels() if kernels else {}


def jit(fun: Callable, static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = ()) -> JitFunction:
    """Compile `fun`: trace it once per argument signature and run the traced program
    as compiled code. Arguments named in `static_argnums`/`static_argnames` are passed
    as Python values and become part of the cache key."""
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
    return JitFunction(fun, nums, names)
