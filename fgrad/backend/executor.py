"""The executable: a closed jaxpr becomes one callable running compiled code.

`compile_jaxpr(closed)`:

1. optimises the jaxpr (`passes.optimize`: inline calls, fold, CSE, DCE);
2. splits it into *segments*: maximal runs of equations the code generator lowers,
   separated by equations it does not (a primitive without a lowering, say a linalg
   or gather primitive, runs its NumPy impl on the host; a one-time warning names it).
   Almost always there is one segment: the whole program is one Numba function;
3. writes every segment as a Numba function into one kernel module (`codegen`), which
   the cache (`cache`) stores by content, imports and compiles (or loads from disk);
4. generates the host function that calls it. Its fast path is one call into compiled
   code: arguments go straight to Numba, whose explicit signatures accept exactly the
   expected arrays (C-contiguous, writeable, right dtype) and scalars; anything else
   (a non-contiguous view, a read-only array, a 0-d array) makes Numba raise
   `TypeError`, and only then are the arguments normalised and the call repeated.
   0-d results come back as NumPy scalars of the right dtype; arrays are fresh.

If Numba cannot compile the program (a bug in a lowering: it should not happen), the
program runs in the NumPy interpreter instead, with a warning naming the primitives
and types; with `FGRAD_JIT_STRICT=1` a `LoweringError` is raised instead.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import eval_jaxpr
from ..errors import FgradError
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


def _warn_host(why: str) -> None:
    name = why.split(" ")[0]
    if name in _warned_primitives:
        return
    _warned_primitives.add(name)
    warnings.warn(f"fgrad.jit: '{why}' has no compiled lowering; it runs with NumPy on the "
                  "host between compiled kernels.", BackendWarning, stacklevel=5)


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


def _shaper(aval: ShapedArray) -> Callable[[Any], Any]:
    """From what compiled code returns to a NumPy value of this type: a NumPy scalar
    for 0-d (Numba returns Python scalars), else the flat buffer reshaped."""
    if aval.shape == ():
        return aval.dtype.type
    if aval.ndim == 1:
        return _identity
    shape = aval.shape
    return lambda x: x.reshape(shape)


class _HostWriter:
    """Writes the Python function that runs the segments in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.globals: dict[str, Any] = {"np": np}
        self.names: dict[Var, str] = {}

    def bind(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{sum(k.startswith(prefix) for k in self.globals)}"
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
    """The host function and its source."""
    jaxpr = opt.jaxpr
    w = _HostWriter()
    params = [w.name(v) for v in jaxpr.invars]
    consts = {v: w.bind("k", _normaliser(v.aval)(c)) for v, c in zip(jaxpr.constvars, opt.consts)}
    w.names.update(consts)
    out_converters = [w.bind("out", _shaper(a.aval)) for a in jaxpr.outvars]
    fast = len(segments) == 1
    body: list[str] = []
    if not fast:
        for v in jaxpr.invars:
            norm = w.bind("norm", _normaliser(v.aval))
            body.append(f"{w.name(v)} = {norm}({w.name(v)})")
    fn_iter = iter(functions)
    for seg in segments:
        if seg.compiled:
            fn = next(fn_iter)
            entry = w.bind("kernel", getattr(module, fn.name))
            extra = [w.bind("k", _normaliser(ShapedArray(np.shape(c), np.asarray(c).dtype))(c))
                     for c in fn.extra_consts]
            args = [w.atom(a) for a in seg.inputs]
            results = seg.outputs if seg is not segments[-1] else list(jaxpr.outvars)
            if fast:  # flatten views; anything unusual makes Numba raise TypeError
                quick = [f"{a}.ravel()" if v.aval.ndim > 1 and v not in consts else a
                         for a, v in zip(args, seg.inputs)]
                norms = [w.bind("norm", _normaliser(v.aval)) for v in seg.inputs]
                slow = [a if v in consts else f"{n}({a})"
                        for n, a, v in zip(norms, args, seg.inputs)]
                body += ["try:", f"    r = {entry}({', '.join(quick + extra)})",
                         "except TypeError:  # a read-only or 0-d array, a wrong dtype",
                         f"    r = {entry}({', '.join(slow + extra)})"]
            else:
                body.append(f"r = {entry}({', '.join(args + extra)})")
            if seg is segments[-1]:
                outs = [f"{c}(r[{i}])" for i, c in enumerate(out_converters)]
                body.append(f"return [{', '.join(outs)}]")
            else:
                for i, v in enumerate(results):
                    body.append(f"{w.name(v)} = r[{i}]")
        else:
            (eqn,) = seg.eqns
            impl = w.bind("impl", _host_impl(eqn))
            ins = []
            for a in eqn.invars:
                shaped = w.atom(a)
                if isinstance(a, Var) and a.aval.ndim > 1:
                    shaped = f"{w.bind('shape', _shaper(a.aval))}({shaped})"
                ins.append(shaped)
            body.append(f"r = {impl}({', '.join(ins)})")
            for i, v in enumerate(eqn.outvars):
                norm = w.bind("norm", _normaliser(v.aval))
                body.append(f"{w.name(v)} = {norm}(r[{i}])")
    source = "\n".join([f"def run({', '.join(params)}):", *["    " + b for b in body]])
    namespace = dict(w.globals)
    exec(compile(source, "<fgrad host>", "exec"), namespace)
    return namespace["run"], source


def _host_impl(eqn: Eqn) -> Callable[..., list[Any]]:
    prim, params = eqn.primitive, eqn.params

    def impl(*args: Any) -> list[Any]:
        with np.errstate(all="ignore"):
            out = prim.impl(*args, **params)
        return list(out) if prim.multiple_results else [out]

    impl.__name__ = f"host_{prim.name}"
    return impl


def _identity(x: Any) -> Any:
    return x


# ============================================================================ compile


def compile_jaxpr(closed: ClosedJaxpr, name: str | None = None) -> Callable[..., list[Any]]:
    """The compiled program for `closed`: call it with the flat inputs, get the list of
    outputs. It has `as_text()`, `kernels()` and `groups` for inspection."""
    opt = passes.optimize(closed)
    try:
        return _compile(opt, name)
    except Exception as err:  # a lowering or Numba failure: never shown raw to the user
        message = _failure_message(opt, name, err)
        if strict():
            raise LoweringError(message) from err
        warnings.warn(message + " Running it with the NumPy interpreter instead.",
                      BackendWarning, stacklevel=3)
        return _interpreted(closed, opt, message)


def _compile(opt: ClosedJaxpr, name: str | None) -> Callable[..., list[Any]]:
    from . import cache

    jaxpr = opt.jaxpr
    segments = _split(jaxpr)
    functions = []
    for i, seg in enumerate(segments):
        if not seg.compiled:
            continue
        if len(segments) == 1:  # the whole program: parameters in the jaxpr's order
            seg.inputs = [*jaxpr.constvars, *jaxpr.invars]
            sub = Jaxpr([], seg.inputs, list(jaxpr.outvars), seg.eqns)
        else:
            outs = seg.outputs if seg is not segments[-1] else list(jaxpr.outvars)
            sub = Jaxpr([], seg.inputs, outs, seg.eqns)
        functions.append(codegen.write_function(f"segment{i}", sub))
    source = codegen.module_source(functions, cache.salt())
    module = cache.load(source)
    run, host_source = _host_function(opt, segments, module, functions)
    groups = [g for fn in functions for g in fn.groups]
    listing = _listing(name, opt, segments, functions)
    run.as_text = lambda: listing  # type: ignore[attr-defined]
    run.kernels = lambda: {f"k_{cache.digest(source)}.py": source,  # type: ignore[attr-defined]
                           "host": host_source}
    run.groups = groups  # type: ignore[attr-defined]
    run.interpreted = False  # type: ignore[attr-defined]
    return run


def _interpreted(closed: ClosedJaxpr, opt: ClosedJaxpr, why: str) -> Callable[..., list[Any]]:
    def run(*args: Any) -> list[Any]:
        return eval_jaxpr(closed.jaxpr, closed.consts, *args)

    run.as_text = lambda: f"{why}\n(interpreted)\n{opt.jaxpr}"  # type: ignore[attr-defined]
    run.kernels = lambda: {}  # type: ignore[attr-defined]
    run.groups = []  # type: ignore[attr-defined]
    run.interpreted = True  # type: ignore[attr-defined]
    return run


def _listing(name: str | None, opt: ClosedJaxpr, segments: Sequence[_Segment],
             functions: Sequence[codegen.Function]) -> str:
    lines = [f"jit({name or 'fun'}): optimised jaxpr", str(opt.jaxpr), ""]
    fn_iter = iter(functions)
    for seg in segments:
        if seg.compiled:
            fn = next(fn_iter)
            lines.append(f"compiled {fn.name}: {len(fn.groups)} fused groups")
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
