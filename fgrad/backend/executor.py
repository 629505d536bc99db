"""The executable: a closed jaxpr becomes one callable running compiled code.

`compile_jaxpr(closed)`:

1. optimises the jaxpr (`passes.optimize`: inline calls, fold, CSE, DCE, transposes
   into matrix products);
2. splits it into *segments*: maximal runs of equations the code generator lowers,
   separated by equations it does not (a primitive without a lowering, say a linalg
   primitive, runs its NumPy impl on the host; a one-time warning names it). Almost
   always there is one segment: the whole program is one Numba function;
3. writes every segment as a Numba function into one kernel module (`codegen`), which
   the cache (`cache`) stores by content, imports and compiles (or loads from disk);
4. generates the host function that calls it (Python source too, so that it does no
   more than it must). Its fast path is one call into compiled code: arguments go to
   Numba flattened (`x.ravel()`, a view), and Numba's explicit signatures accept
   exactly C-contiguous writeable arrays of the right dtype and scalars; anything else
   (a read-only array, a 0-d array) makes Numba raise `TypeError`, and only then are
   the arguments normalised and the call repeated. Results come back flat, or packed
   several to a buffer, and are given their shapes (views, fresh for every call);
   0-d results are NumPy scalars of the right dtype.

If Numba cannot compile the program (a bug in a lowering: it should not happen), the
program runs in the NumPy interpreter instead, with a warning naming the primitives
and types; with `FGRAD_JIT_STRICT=1` a `LoweringError` is raised instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import eval_jaxpr
from ..errors import _PACKAGE_DIR, FgradError
from ..ir import ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
from . import codegen, passes


class LoweringError(FgradError):
    """The jit backend could not compile a program (raised with FGRAD_JIT_STRICT=1)."""


class BackendWarning(UserWarning):
    """Part of a jitted program runs outside compiled code."""


_warned_primitives: set[str] = set()


def strict() -> bool:
    return os.environ.get("FGRAD_JIT_STRICT", "") not in ("", "0")


# ============================================================================ segments


@dataclass
class _Segment:
    """A run of lowerable equations (compiled) or one host equation."""

    eqns: list[Eqn]
    compiled: bool
    inputs: list[Var]
    outputs: list[Var]


def _split(jaxpr: Jaxpr) -> list[_Segment]:
    runs: list[tuple[list[Eqn], bool]] = []
    for eqn in jaxpr.eqns:
        why = codegen.eqn_unsupported(eqn)
        if why is None and runs and runs[-1][1]:
            runs[-1][0].append(eqn)
        else:
            runs.append(([eqn], why is None))
        if why is not None:
            _warn_host(why)
    if not runs or not runs[-1][1]:
        runs.append(([], True))  # a final compiled segment returns the outputs
    segments = []
    later_reads: set[Var] = {a for a in jaxpr.outvars if isinstance(a, Var)}
    for n, (eqns, compiled) in enumerate(reversed(runs)):
        defined = {v for e in eqns for v in e.outvars}
        reads = [a for e in eqns for a in e.invars if isinstance(a, Var)]
        if n == 0:  # the last segment returns the program's outputs
            reads += [a for a in jaxpr.outvars if isinstance(a, Var)]
        inputs = list(dict.fromkeys(a for a in reads if a not in defined))
        outputs = [v for e in eqns for v in e.outvars if v in later_reads]
        segments.append(_Segment(eqns, compiled, inputs, outputs))
        later_reads |= set(inputs)
    return segments[::-1]


def warn(message: str, category: type[Warning]) -> None:
    """Warn, attributing the warning to the user's code (the first frame outside fgrad)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


def _warn_host(why: str) -> None:
    name = why.split(" ")[0]
    if name in _warned_primitives:
        return
    _warned_primitives.add(name)
    warn(f"fgrad.jit: '{why}' has no compiled lowering; it runs with NumPy on the host "
         "between compiled kernels.", BackendWarning)


# ============================================================================ the host program


def _as_flat(x: Any, dtype: np.dtype) -> np.ndarray:
    flat = np.ascontiguousarray(x, dtype=dtype).reshape(-1)
    return flat if flat.flags.writeable else flat.copy()


def _normaliser(aval: ShapedArray) -> Callable[[Any], Any]:
    """What compiled code accepts for a value of this type: a NumPy scalar for 0-d,
    else a flat, C-contiguous, writeable array of the dtype."""
    if aval.shape == ():
        return aval.dtype.type
    dtype = aval.dtype
    return lambda x: _as_flat(x, dtype)


class _HostWriter:
    """Names for the host function: its variables, and the globals it needs."""

    def __init__(self) -> None:
        self.globals: dict[str, Any] = {"np": np}
        self.counts: dict[str, int] = {}
        self.names: dict[Var, str] = {}

    def bind(self, prefix: str, value: Any) -> str:
        """A global of the host function holding `value`."""
        n = self.counts[prefix] = self.counts.get(prefix, -1) + 1
        name = f"{prefix}{n}"
        self.globals[name] = value
        return name

    def name(self, var: Var) -> str:
        if var not in self.names:
            self.names[var] = f"v{len(self.names)}"
        return self.names[var]

    def atom(self, atom: Any) -> str:
        if isinstance(atom, Literal):
            return self.bind("lit", atom.aval.dtype.type(atom.val))
        return self.name(atom)


def _host_function(opt: ClosedJaxpr, segments: list[_Segment], module: Any,
                   functions: list[codegen.Function]) -> tuple[Callable, str]:
    """The host function and its source.

    Values cross into compiled code as NumPy scalars (0-d) or flat C-contiguous arrays,
    and come back as Python scalars, flat arrays, or slices of a packed buffer; the
    program's outputs are given their shapes on the way out.
    """
    jaxpr = opt.jaxpr
    w = _HostWriter()
    params = [w.name(v) for v in jaxpr.invars]
    consts = {v: w.bind("k", _normaliser(v.aval)(c)) for v, c in zip(jaxpr.constvars, opt.consts)}
    w.names.update(consts)
    fast = len(segments) == 1
    body: list[str] = []
    if not fast:
        for v in jaxpr.invars:
            body.append(f"{w.name(v)} = {w.bind('norm', _normaliser(v.aval))}({w.name(v)})")
    fn_iter = iter(functions)
    for seg in segments:
        if not seg.compiled:
            body += _host_call(w, seg.eqns[0])
            continue
        fn = next(fn_iter)
        entry = w.bind("kernel", getattr(module, fn.name))
        extra = [w.bind("k", _normaliser(ShapedArray(np.shape(c), np.asarray(c).dtype))(c))
                 for c in fn.extra_consts]
        extra += [str(d) for d in fn.dims]  # the sizes the kernel reads at run time
        args = [w.atom(a) for a in seg.inputs]
        if fast:  # flatten views; anything unusual makes Numba raise TypeError
            quick = [f"{a}.ravel()" if v.aval.ndim > 1 and v not in consts else a
                     for a, v in zip(args, seg.inputs)]
            retry = w.bind("retry", _retry(getattr(module, fn.name), seg.inputs, consts))
            body += ["try:", f"    r = {entry}({', '.join(quick + extra)})",
                     "except TypeError:  # a read-only or 0-d array, a Python scalar",
                     f"    r = {retry}({', '.join(args + extra)})"]
        else:
            body.append(f"r = {entry}({', '.join(args + extra)})")
        last = seg is segments[-1]
        results = list(jaxpr.outvars) if last else seg.outputs
        values = [_returned(atom.aval, position, offset, shaped=last)
                  for atom, (position, offset) in zip(results, fn.outputs)]
        if last:
            body.append(f"return [{', '.join(values)}]")
        else:
            body += [f"{w.name(v)} = {value}" for v, value in zip(results, values)]
    source = "\n".join([f"def run({', '.join(params)}):", *["    " + b for b in body]])
    namespace = dict(w.globals)
    exec(compile(source, "<fgrad host>", "exec"), namespace)
    return namespace["run"], source


def _retry(entry: Callable, inputs: Sequence[Var], consts: dict) -> Callable:
    """Call the kernel with its arguments normalised (the host's slow path); a kernel
    that still refuses them is a bug, reported as a LoweringError, not Numba's error."""
    norms = [None if v in consts else _normaliser(v.aval) for v in inputs]

    def retry(*args: Any) -> Any:
        fixed = [a if n is None else n(a) for n, a in zip(norms, args)]
        fixed += args[len(norms):]
        try:
            return entry(*fixed)
        except TypeError as err:
            given = ", ".join(f"{type(a).__name__}{getattr(a, 'shape', '')}" for a in args)
            expected = ", ".join(v.aval.str_short() for v in inputs)
            raise LoweringError(f"fgrad.jit: the compiled program expects ({expected}) but "
                                f"got ({given}): {err}") from None

    return retry


def _returned(aval: ShapedArray, position: int, offset: int | None, shaped: bool) -> str:
    """The expression for one value a kernel returned (`r`): a packed slot or a direct
    result; as a NumPy scalar for 0-d, else flat, or reshaped if `shaped`."""
    if offset is None:
        expr = f"r[{position}]"
        if aval.shape == ():  # Numba returns a Python scalar
            return f"{codegen.dtype_expr(aval.dtype)}({expr})"
    elif aval.shape == ():
        return f"r[{position}][{offset}]"  # indexing a buffer gives a NumPy scalar
    else:
        expr = f"r[{position}][{offset}:{offset + aval.size}]"
    return f"{expr}.reshape({aval.shape})" if shaped and aval.ndim > 1 else expr


def _host_call(w: _HostWriter, eqn: Eqn) -> list[str]:
    """Lines running one equation's NumPy impl on the host."""
    impl = w.bind("impl", _host_impl(eqn))
    ins = [f"{w.atom(a)}.reshape({a.aval.shape})" if isinstance(a, Var) and a.aval.ndim > 1
           else w.atom(a) for a in eqn.invars]
    lines = [f"r = {impl}({', '.join(ins)})"]
    for i, v in enumerate(eqn.outvars):
        lines.append(f"{w.name(v)} = {w.bind('norm', _normaliser(v.aval))}(r[{i}])")
    return lines


def _host_impl(eqn: Eqn) -> Callable[..., list[Any]]:
    prim, params = eqn.primitive, eqn.params

    def impl(*args: Any) -> list[Any]:
        with np.errstate(all="ignore"):
            out = prim.impl(*args, **params)
        return list(out) if prim.multiple_results else [out]

    impl.__name__ = f"host_{prim.name}"
    return impl


# ============================================================================ compile


def compile_jaxpr(closed: ClosedJaxpr, name: str | None = None) -> Callable[..., list[Any]]:
    """The compiled program for `closed`: call it with the flat inputs, get the list of
    outputs. It has `as_text()`, `kernels()` and `groups` for inspection, `interpreted`
    (True if it fell back to the NumPy interpreter) and `fresh_outputs`."""
    opt = passes.optimize(closed)
    boundary = [*opt.jaxpr.constvars, *opt.jaxpr.invars, *opt.jaxpr.outvars]
    odd = sorted({a.aval.dtype.name for a in boundary
                  if a.aval.dtype not in codegen.SUPPORTED_DTYPES})
    if odd:  # nothing to compile: Numba does not take these arrays
        message = f"fgrad.jit: the compiled backend does not handle {', '.join(odd)} values."
        warn(message + " Running the program with the NumPy interpreter.", BackendWarning)
        return _interpreted(closed, opt, message)
    try:
        return _compile(opt, name)
    except Exception as err:  # a lowering or Numba failure: never shown raw to the user
        message = _failure_message(opt, name, err)
        if strict():
            raise LoweringError(message) from err
        warn(message + " Running it with the NumPy interpreter instead.", BackendWarning)
        return _interpreted(closed, opt, message)


@dataclass
class _Plan:
    """What a program lowers to: its segments, their generated functions, the module."""

    opt: ClosedJaxpr
    segments: list[_Segment]
    functions: list[codegen.Function]
    source: str


def _plan(opt: ClosedJaxpr) -> _Plan:
    from . import cache

    jaxpr = opt.jaxpr
    segments = _split(jaxpr)
    functions = []
    for i, seg in enumerate(segments):
        if not seg.compiled:
            continue
        if len(segments) == 1:  # the whole program: parameters in the jaxpr's order
            seg.inputs = [*jaxpr.constvars, *jaxpr.invars]
        outs = list(jaxpr.outvars) if seg is segments[-1] else seg.outputs
        sub = Jaxpr([], seg.inputs, outs, seg.eqns)
        functions.append(codegen.write_function(f"segment{i}", sub))
    return _Plan(opt, segments, functions, codegen.module_source(functions, cache.salt()))


def kernel_source(closed: ClosedJaxpr) -> str:
    """The kernel module source `compile_jaxpr(closed)` would compile (nothing is
    compiled: to look at it, or to ask `cache.is_compiled`)."""
    return _plan(passes.optimize(closed)).source


def _compile(opt: ClosedJaxpr, name: str | None) -> Callable[..., list[Any]]:
    from . import cache

    plan = _plan(opt)
    module = cache.load(plan.source)
    run, host_source = _host_function(opt, plan.segments, module, plan.functions)
    listing = _listing(name, opt, plan.segments, plan.functions)
    run.as_text = lambda: listing  # type: ignore[attr-defined]
    run.kernels = lambda: {  # type: ignore[attr-defined]
        f"k_{cache.digest(plan.source)}.py": plan.source, "host": host_source}
    run.groups = [g for fn in plan.functions for g in fn.groups]  # type: ignore[attr-defined]
    run.interpreted = False  # type: ignore[attr-defined]
    # Outputs never alias an input or a constant, nor each other: a caller may skip
    # its own aliasing checks.
    run.fresh_outputs = True  # type: ignore[attr-defined]
    return run


def _interpreted(closed: ClosedJaxpr, opt: ClosedJaxpr, why: str) -> Callable[..., list[Any]]:
    def run(*args: Any) -> list[Any]:
        return eval_jaxpr(closed.jaxpr, closed.consts, *args)

    run.as_text = lambda: f"{why}\n(interpreted)\n{opt.jaxpr}"  # type: ignore[attr-defined]
    run.kernels = lambda: {}  # type: ignore[attr-defined]
    run.groups = []  # type: ignore[attr-defined]
    run.interpreted = True  # type: ignore[attr-defined]
    run.fresh_outputs = False  # type: ignore[attr-defined]
    return run


def _listing(name: str | None, opt: ClosedJaxpr, segments: Sequence[_Segment],
             functions: Sequence[codegen.Function]) -> str:
    lines = [f"jit({name or 'fun'}): optimised jaxpr", str(opt.jaxpr), ""]
    fn_iter = iter(functions)
    for seg in segments:
        if seg.compiled:
            fn = next(fn_iter)
            dims = ", ".join(f"dim{i}={d}" for i, d in enumerate(fn.dims))
            lines.append(f"compiled {fn.name}{f' ({dims})' if dims else ''}: "
                         f"{len(fn.groups)} fused groups")
            lines += [f"  {g}" for g in fn.groups]
        else:
            lines.append(f"host (NumPy): {seg.eqns[0].primitive.name}")
    return "\n".join(lines)


def _failure_message(opt: ClosedJaxpr, name: str | None, err: BaseException) -> str:
    prims = sorted({e.primitive.name for e in opt.jaxpr.eqns})
    ins = ", ".join(v.aval.str_short() for v in opt.jaxpr.invars)
    first = str(err).strip().splitlines()
    detail = f"{type(err).__name__}: {first[0] if first else ''}"
    return (f"fgrad.jit could not compile {f'jit({name})' if name else 'a jitted function'} "
            f"(inputs {ins or 'none'}; primitives {', '.join(prims) or 'none'}): {detail}.")
