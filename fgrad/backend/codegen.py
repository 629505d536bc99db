"""Code generation: an optimised jaxpr becomes the Python source of one Numba function.

Conventions of the generated code (they keep Numba's typing simple and stable):

* every array is C-contiguous (`np.empty`, reshapes of C arrays, `np.ascontiguousarray`);
  a 0-d value is a Numba *scalar*, never a 0-d array;
* every scalar has its exact dtype: literals are typed (`np.float32(2.0)`), and results
  of float32 or small-integer arithmetic are cast back (`np.float32(a * b)`), because
  Numba widens `float32 * 2.0` to float64 and `int32 + int32` to int64;
* a fused group (see `fusion.py`) is an inline loop nest computing scalars and storing
  only its materialised outputs; a reduction accumulates float32 in float64 and casts
  on store;
* control flow is native: `scan` is a `for` loop (carries reassigned, ys written into
  preallocated stacked arrays), `while` a `while` loop, `cond` an `if`/`elif` chain,
  with the bodies' code generated inline;
* inputs are never written to; outputs that may alias an input are copied on return.

`write_function(name, jaxpr)` produces one `Function`; `module_source` joins functions
into a module with their explicit Numba signatures (compiled eagerly, cached on disk).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import Atom, ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
from . import fusion, passes
from .fusion import Group

SUPPORTED_DTYPES = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float32, np.float64))

# Numba's scalar type names.
_NUMBA_SCALAR = {np.dtype(np.bool_): "boolean"}


class Unsupported(Exception):
    """An equation this code generator cannot lower (the primitive, and why)."""

    def __init__(self, primitive: str, why: str = ""):
        super().__init__(f"{primitive}{': ' + why if why else ''}")
        self.primitive = primitive


# ============================================================================ small helpers


def dtype_expr(dtype: Any) -> str:
    """The NumPy constructor of a dtype, as source: `np.float32`, `np.bool_`."""
    dtype = np.dtype(dtype)
    return "np.bool_" if dtype == np.bool_ else f"np.{dtype.name}"


def numba_scalar(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    return _NUMBA_SCALAR.get(dtype, dtype.name)


def literal(value: Any, dtype: Any) -> str:
    """A typed scalar constant: `1.5` (float64), `np.float32(1.5)`, `np.int32(3)`, `True`."""
    dtype = np.dtype(dtype)
    value = np.asarray(value).astype(dtype).item()
    if dtype == np.bool_:
        return "True" if value else "False"
    if dtype.kind == "f":
        if math.isnan(value):
            text = "np.nan"
        elif math.isinf(value):
            text = "np.inf" if value > 0 else "-np.inf"
        else:
            text = repr(float(value))
        return text if dtype == np.float64 else f"{dtype_expr(dtype)}({text})"
    return str(value) if dtype == np.int64 else f"{dtype_expr(dtype)}({value})"


def shape_expr(shape: Sequence[int]) -> str:
    shape = tuple(int(d) for d in shape)
    return f"({shape[0]},)" if len(shape) == 1 else str(shape)


def _is_name(expr: str) -> bool:
    return expr.isidentifier()


_TYPED_LITERAL = re.compile(r"^-?(np\.\w+\()?-?(\d[\d.e+-]*|np\.inf|np\.nan|True|False)\)?$")


def _simple(expr: str) -> bool:
    """An identifier or a (typed) literal: cheap to repeat, never stored in a temporary."""
    return _is_name(expr) or bool(_TYPED_LITERAL.match(expr))


# ============================================================================ what lowers


_LOWERED_OPAQUE = {"reshape", "squeeze", "expand_dims", "pad", "concatenate", "dot_general",
                   "argmax", "argmin", "cond", "scan", "while"}


def unsupported(jaxpr: Jaxpr) -> list[str]:
    """Names (with the reason) of the equations in `jaxpr`, or in jaxprs nested in it,
    that this generator cannot lower."""
    found: list[str] = []
    for eqn in jaxpr.eqns:
        why = eqn_unsupported(eqn)
        if why:
            found.append(why)
    return found


def eqn_unsupported(eqn: Eqn) -> str | None:
    """None if `eqn` (with everything nested in it) lowers; else a short reason."""
    name = eqn.primitive.name
    for atom in [*eqn.invars, *eqn.outvars]:
        if atom.aval.dtype not in SUPPORTED_DTYPES:
            return f"{name} (dtype {atom.aval.dtype})"
    if name in passes.INLINED_CALLS:
        inner = unsupported(eqn.params[passes.INLINED_CALLS[name]].jaxpr)
        return inner[0] if inner else None
    if name in ("cond", "scan", "while"):
        bodies = (eqn.params["branches"] if name == "cond" else
                  [eqn.params["jaxpr"]] if name == "scan" else
                  [eqn.params["cond_jaxpr"], eqn.params["body_jaxpr"]])
        for body in bodies:
            inner = unsupported(body.jaxpr)
            if inner:
                return inner[0]
        return None
    if name == "integer_pow" and eqn.params["y"] < 0 and eqn.invars[0].aval.dtype.kind != "f":
        return f"{name} (negative power of an integer)"
    if name in fusion.FUSIBLE:
        if name in fusion.ELEMENTWISE and name not in _ELEMENTWISE:
            return name
        return None
    if name in _LOWERED_OPAQUE:
        return None
    return name


# ============================================================================ elementwise


class _Scalars:
    """What an elementwise rule may use: typed literals and temporaries in the loop body."""

    def __init__(self, writer: FunctionWriter):
        self.writer = writer

    def tmp(self, expr: str) -> str:
        if _simple(expr):
            return expr
        name = self.writer.fresh("t")
        self.writer.line(f"{name} = {expr}")
        return name

    @staticmethod
    def lit(value: Any, dtype: Any) -> str:
        return literal(value, dtype)


def _cast(expr: str, dtype: np.dtype) -> str:
    """Numba's result type is exact for float64/int64/bool; other dtypes are cast."""
    if dtype in (np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.bool_)):
        return expr
    return f"{dtype_expr(dtype)}({expr})"


def _binary(op: str) -> Callable:
    return lambda k, xs, dt, eqn: _cast(f"{xs[0]} {op} {xs[1]}", dt)


def _call(fn: str) -> Callable:
    return lambda k, xs, dt, eqn: _cast(f"{fn}({', '.join(xs)})", dt)


def _div(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    a, b = xs
    if dt.kind == "f":
        return _cast(f"{a} / {b}", dt)
    # Integers round toward zero (C, JAX); Numba's // floors, and gives 0 for x // 0.
    q = k.tmp(f"{a} // {b}")
    fix = f"{a} % {b} != 0 and ({a} < 0) != ({b} < 0)"
    return _cast(f"{q} + 1 if {fix} else {q}", dt)


def _rem(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    a, b = xs
    if dt.kind == "f":
        return _cast(f"np.fmod({a}, {b})", dt)
    # C's remainder: the sign of the dividend; NumPy gives 0 for x % 0.
    r = k.tmp(f"abs({a}) % abs({b})")
    return _cast(f"-{r} if {a} < 0 else {r}", dt)


def _maxmin(which: str) -> Callable:
    def rule(k, xs, dt, eqn):
        a, b = xs
        if dt == np.bool_:
            return f"{a} {'or' if which == 'max' else 'and'} {b}"
        return _cast(f"np.{'maximum' if which == 'max' else 'minimum'}({a}, {b})", dt)

    return rule


def _integer_pow(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    """x ** y by repeated squaring (y static); 1 / x ** -y for negative y."""
    (x,), y = xs, eqn.params["y"]
    if y == 0:
        return k.lit(1, dt)
    n, result, base = abs(y), None, x
    while n:
        if n & 1:
            result = base if result is None else k.tmp(_cast(f"{result} * {base}", dt))
        n >>= 1
        if n:
            base = k.tmp(_cast(f"{base} * {base}", dt))
    if y < 0:
        return _cast(f"{k.lit(1, dt)} / {result}", dt)
    return result


def _logistic(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    # As the NumPy impl: exp is only taken of -|x|, so it never overflows.
    (x,) = xs
    one, zero = k.lit(1, dt), k.lit(0, dt)
    e = k.tmp(_cast(f"np.exp(-np.abs({x}))", dt))
    return _cast(f"{one} / ({one} + {e}) if {x} >= {zero} else {e} / ({one} + {e})", dt)


def _rsqrt(k, xs, dt, eqn):
    return _cast(f"{k.lit(1, dt)} / np.sqrt({xs[0]})", dt)


def _not(k, xs, dt, eqn):
    return f"not {xs[0]}" if dt == np.bool_ else _cast(f"~{xs[0]}", dt)


def _select_n(k, xs, dt, eqn):
    which, cases = xs[0], xs[1:]
    if len(cases) == 1:
        return cases[0]
    if eqn.invars[0].aval.dtype == np.bool_:
        return f"{cases[1]} if {which} else {cases[0]}"
    # An integer selector is clipped into range (np.choose(mode="clip")).
    expr = cases[-1]
    for i in range(len(cases) - 2, 0, -1):
        expr = f"{cases[i]} if {which} == {i} else {expr}"
    return f"{cases[0]} if {which} <= 0 else {expr}"


def _convert(k, xs, dt, eqn):
    (x,) = xs
    if dt == np.bool_:
        return x if eqn.invars[0].aval.dtype == np.bool_ else f"{x} != 0"
    return f"{dtype_expr(dt)}({x})"


_ELEMENTWISE: dict[str, Callable[[_Scalars, list[str], np.dtype, Eqn], str]] = {
    "add": _binary("+"), "sub": _binary("-"), "mul": _binary("*"),
    "div": _div, "rem": _rem, "max": _maxmin("max"), "min": _maxmin("min"),
    "pow": _call("np.power"), "atan2": _call("np.arctan2"),
    "integer_pow": _integer_pow, "logistic": _logistic, "rsqrt": _rsqrt,
    "neg": lambda k, xs, dt, eqn: _cast(f"-{xs[0]}", dt),
    "eq": _binary("=="), "ne": _binary("!="), "lt": _binary("<"), "le": _binary("<="),
    "gt": _binary(">"), "ge": _binary(">="),
    "and": _binary("&"), "or": _binary("|"), "xor": _binary("^"), "not": _not,
    "select_n": _select_n, "convert_element_type": _convert,
    "stop_gradient": lambda k, xs, dt, eqn: xs[0],
    **{name: _call(f"np.{fn}") for name, fn in {
        "exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "sin": "sin",
        "cos": "cos", "tan": "tan", "asin": "arcsin", "acos": "arccos", "atan": "arctan",
        "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "sqrt": "sqrt", "abs": "abs",
        "sign": "sign", "floor": "floor", "ceil": "ceil", "round": "rint",
        "is_finite": "isfinite"}.items()},
}


# ============================================================================ reductions


@dataclass
class _Reducer:
    """How one reduction accumulates: accumulator dtype, identity, update statement."""

    acc_dtype: np.dtype
    init: str
    update: Callable[[str, str], list[str]]  # (acc, value) -> statements


def _reducer(eqn: Eqn) -> _Reducer:
    name, dt = eqn.primitive.name, eqn.outvars[0].aval.dtype
    if name in ("reduce_sum", "reduce_prod"):
        acc = (np.dtype(np.float64) if dt.kind == "f" else
               np.dtype(np.uint64) if dt.kind == "u" else np.dtype(np.int64))
        op = "+=" if name == "reduce_sum" else "*="
        return _Reducer(acc, literal(0 if name == "reduce_sum" else 1, acc),
                        lambda a, v: [f"{a} {op} {v}"])
    bigger = name == "reduce_max"
    if dt == np.bool_:
        word = "or" if bigger else "and"
        return _Reducer(dt, literal(not bigger, dt), lambda a, v: [f"{a} = {a} {word} {v}"])
    cmp = ">" if bigger else "<"
    if dt.kind == "f":
        init = literal(-np.inf if bigger else np.inf, dt)
        # NaN wins (as np.max): once the accumulator is NaN no comparison replaces it.
        return _Reducer(dt, init, lambda a, v: [f"if {v} {cmp} {a} or {v} != {v}:",
                                                 f"    {a} = {v}"])
    info = np.iinfo(dt)
    init = literal(info.min if bigger else info.max, dt)
    return _Reducer(dt, init, lambda a, v: [f"if {v} {cmp} {a}:", f"    {a} = {v}"])


# ============================================================================ the writer


@dataclass
class Function:
    """One generated function: its name, source, parameter types (one ShapedArray per
    parameter: the jaxpr's constvars, invars, then constants from nested bodies),
    those nested constants' values, and the groups it fused (for `as_text`)."""

    name: str
    source: str
    param_avals: list[ShapedArray]
    extra_consts: list[Any]
    groups: list[str] = field(default_factory=list)


class FunctionWriter:
    """Writes the body of one function, line by line."""

    def __init__(self, name: str):
        self.name = name
        self.lines: list[str] = []
        self.depth = 1
        self.counts: dict[str, int] = {}
        self.aliasing: set[str] = set()  # names that may share memory with a parameter
        self.extra_params: list[tuple[str, Any]] = []
        self.groups: list[str] = []

    # -------------------------------------------------------------- text

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    @contextlib.contextmanager
    def indent(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def fresh(self, prefix: str) -> str:
        n = self.counts.get(prefix, 0)
        self.counts[prefix] = n + 1
        return f"{prefix}{n}"

    def comment(self, text: str) -> None:
        self.line(f"# {text}")

    # -------------------------------------------------------------- values

    def atom(self, atom: Atom, env: dict[Var, str]) -> str:
        if isinstance(atom, Literal):
            return literal(atom.val, atom.aval.dtype)
        return env[atom]

    def constant(self, value: Any, aval: ShapedArray) -> str:
        """A constant from a nested body: inline if scalar, else an extra parameter."""
        if aval.shape == ():
            return literal(value, aval.dtype)
        name = self.fresh("k")
        self.extra_params.append((name, value))
        self.aliasing.add(name)
        return name

    # -------------------------------------------------------------- jaxprs

    def jaxpr(self, jaxpr: Jaxpr, args: Sequence[str]) -> list[str]:
        """Emit an optimised jaxpr whose constvars and invars are bound to `args`."""
        env: dict[Var, str] = dict(zip([*jaxpr.constvars, *jaxpr.invars], args))
        for node in fusion.fuse(jaxpr):
            if isinstance(node, Group):
                self.group(node, env)
            else:
                self.opaque(node, env)
        return [self.atom(a, env) for a in jaxpr.outvars]

    def body(self, closed: ClosedJaxpr, args: Sequence[str]) -> list[str]:
        """Emit a nested body (a branch or a loop body) inline."""
        opt = passes.optimize(closed)
        consts = [self.constant(c, v.aval) for c, v in zip(opt.consts, opt.jaxpr.constvars)]
        return self.jaxpr(opt.jaxpr, [*consts, *args])

    # -------------------------------------------------------------- fused groups

    def group(self, g: Group, env: dict[Var, str]) -> None:
        self.groups.append(g.describe())
        self.comment(g.describe())
        domain, red = g.domain, g.reduction
        nd = len(domain)
        idx = [f"i{d}" for d in range(nd)]
        stored: dict[Var, str] = {}
        for v in g.outputs:
            if nd and (red is None or v is not red.outvars[0]):
                stored[v] = self.fresh("v")
                self.line(f"{stored[v]} = np.empty({shape_expr(domain)}, "
                          f"{dtype_expr(v.aval.dtype)})")
                env[v] = stored[v]
        if red is None:
            self._loops(idx, domain, lambda: self._group_body(g, env, idx, stored))
            return
        axes = tuple(red.params["axes"])
        kept = [d for d in range(nd) if d not in axes]
        out = red.outvars[0]
        reducer = _reducer(red)
        acc = self.fresh("acc")

        def cast_acc(expr: str) -> str:
            same = reducer.acc_dtype == out.aval.dtype
            return expr if same else _cast(expr, out.aval.dtype)

        def accumulate(target: str) -> None:
            value = self._group_body(g, env, idx, stored)
            for statement in reducer.update(target, value):
                self.line(statement)

        if kept == list(range(len(kept))):
            # The reduced axes are innermost: one scalar accumulator per output element.
            result = self.fresh("r")
            if kept:
                self.line(f"{result} = np.empty({shape_expr(out.aval.shape)}, "
                          f"{dtype_expr(out.aval.dtype)})")

            def per_output() -> None:
                self.line(f"{acc} = {reducer.init}")
                self._loops(idx[len(kept):], domain[len(kept):], lambda: accumulate(acc))
                if kept:
                    self.line(f"{result}[{', '.join(idx[:len(kept)])}] = {cast_acc(acc)}")
                else:
                    self.line(f"{result} = {cast_acc(acc)}")

            self._loops(idx[:len(kept)], domain[:len(kept)], per_output)
        else:
            # An accumulator array, with the domain visited in memory order.
            self.line(f"{acc} = np.full({shape_expr(out.aval.shape)}, {reducer.init}, "
                      f"{dtype_expr(reducer.acc_dtype)})")
            slot = f"{acc}[{', '.join(idx[d] for d in kept)}]"
            current = self.fresh("a")

            def per_element() -> None:
                self.line(f"{current} = {slot}")
                accumulate(current)
                self.line(f"{slot} = {current}")

            self._loops(idx, domain, per_element)
            result = acc
            if reducer.acc_dtype != out.aval.dtype:
                result = self.fresh("r")
                self.line(f"{result} = {acc}.astype({dtype_expr(out.aval.dtype)})")
        env[out] = result

    def _loops(self, idx: Sequence[str], extents: Sequence[int], body: Callable) -> None:
        if not idx:
            body()
            return
        self.line(f"for {idx[0]} in range({extents[0]}):")
        with self.indent():
            self._loops(idx[1:], extents[1:], body)

    def _group_body(self, g: Group, env: dict[Var, str], idx: list[str],
                    stored: dict[Var, str]) -> str | None:
        """The scalar statements of one point of the domain; returns the reduction's
        operand (if the group reduces)."""
        local: dict[Var, str] = {}
        loads: dict[tuple[str, tuple[str, ...]], str] = {}
        k = _Scalars(self)
        nd = len(idx)

        def load(array: str, index: Sequence[str]) -> str:
            key = (array, tuple(index))
            if key not in loads:
                loads[key] = k.tmp(f"{array}[{', '.join(index)}]")
            return loads[key]

        def read(atom: Atom) -> str:
            if isinstance(atom, Literal):
                return literal(atom.val, atom.aval.dtype)
            if atom in local:
                return local[atom]
            if atom.aval.shape == ():
                return env[atom]
            return load(env[atom], idx)

        red_operand = None
        for eqn in g.eqns:
            name = eqn.primitive.name
            if eqn is g.reduction:
                red_operand = read(eqn.invars[0])
                continue
            out = eqn.outvars[0]
            if name in fusion.LOADS:
                operand = eqn.invars[0]
                index = _load_index(eqn, idx)
                if index is None or isinstance(operand, Literal):
                    value = read(operand)  # a scalar, broadcast
                else:
                    value = load(env[operand], index)
            elif name == "iota":
                value = _cast(f"{dtype_expr(out.aval.dtype)}({idx[eqn.params['dimension']]})",
                              out.aval.dtype)
                value = k.tmp(value)
            else:
                xs = [read(a) for a in eqn.invars]
                value = k.tmp(_ELEMENTWISE[name](k, xs, out.aval.dtype, eqn))
            local[out] = value
            if out in stored:
                self.line(f"{stored[out]}[{', '.join(idx)}] = {value}")
            elif nd == 0 and out in g.outputs:
                env[out] = value
        return red_operand

    # -------------------------------------------------------------- opaque equations

    def opaque(self, eqn: Eqn, env: dict[Var, str]) -> None:
        name = eqn.primitive.name
        rule = getattr(self, f"_lower_{name}", None)
        if rule is None:
            raise Unsupported(name)
        self.comment(f"{name}")
        ins = [self.atom(a, env) for a in eqn.invars]
        outs = rule(eqn, ins)
        env.update(zip(eqn.outvars, outs))

    def _new(self, expr: str, prefix: str = "v", alias_of: Sequence[str] = ()) -> str:
        name = self.fresh(prefix)
        self.line(f"{name} = {expr}")
        if any(a in self.aliasing for a in alias_of):
            self.aliasing.add(name)
        return name

    def _reshaped(self, x: str, src: tuple[int, ...], dst: tuple[int, ...],
                  dtype: np.dtype) -> str:
        if src == dst:
            return x
        if src == ():
            return self._new(f"np.full({shape_expr(dst)}, {x}, {dtype_expr(dtype)})")
        if dst == ():
            return self._new(f"{x}.reshape((1,))[0]")
        return self._new(f"{x}.reshape({shape_expr(dst)})", alias_of=[x])

    def _lower_reshape(self, eqn, ins):
        src, dst = eqn.invars[0].aval, eqn.outvars[0].aval
        return [self._reshaped(ins[0], src.shape, dst.shape, dst.dtype)]

    _lower_squeeze = _lower_reshape
    _lower_expand_dims = _lower_reshape

    def _lower_concatenate(self, eqn, ins):
        out, dim = eqn.outvars[0].aval, eqn.params["dimension"]
        name = self._new(f"np.empty({shape_expr(out.shape)}, {dtype_expr(out.dtype)})")
        start = 0
        for atom, x in zip(eqn.invars, ins):
            size = atom.aval.shape[dim]
            if size:
                index = [":"] * out.ndim
                index[dim] = f"{start}:{start + size}"
                self.line(f"{name}[{', '.join(index)}] = {x}")
            start += size
        return [name]

    def _lower_pad(self, eqn, ins):
        x, value = ins
        src, out = eqn.invars[0].aval, eqn.outvars[0].aval
        config = eqn.params["padding_config"]
        name = self._new(f"np.full({shape_expr(out.shape)}, {value}, {dtype_expr(out.dtype)})")
        if src.size == 0 or out.size == 0:
            return [name]
        if src.ndim == 0:
            return [name]
        idx = [self.fresh("j") for _ in range(src.ndim)]
        targets, checks = [], []
        for j, n_out, (lo, hi, interior) in zip(idx, out.shape, config):
            target = f"{lo} + {interior + 1} * {j}" if interior else f"{j} + {lo}"
            target = target.replace(" + 0", "") if lo == 0 else target
            if lo < 0 or hi < 0:
                t = self.fresh("p")
                targets.append((t, target))
                checks.append(f"0 <= {t} < {n_out}")
            else:
                targets.append((None, target))

        def body():
            for t, target in targets:
                if t is not None:
                    self.line(f"{t} = {target}")
            index = ", ".join(t if t is not None else target for t, target in targets)
            store = f"{name}[{index}] = {x}[{', '.join(idx)}]"
            if checks:
                self.line(f"if {' and '.join(checks)}:")
                with self.indent():
                    self.line(store)
            else:
                self.line(store)

        self._loops(idx, src.shape, body)
        return [name]

    def _lower_dot_general(self, eqn, ins):
        from . import runtime

        (xc, yc), (xb, yb) = eqn.params["dimension_numbers"]
        xa, ya, out = eqn.invars[0].aval, eqn.invars[1].aval, eqn.outvars[0].aval
        xf = [a for a in range(xa.ndim) if a not in xc and a not in xb]
        yf = [a for a in range(ya.ndim) if a not in yc and a not in yb]

        def size(shape, axes):
            return int(np.prod([shape[a] for a in axes], dtype=np.int64))

        b, m = size(xa.shape, xb), size(xa.shape, xf)
        k, n = size(xa.shape, xc), size(ya.shape, yf)
        x3, trans_a = self._as_stack(ins[0], xa, [*xb, *xf, *xc], [*xb, *xc, *xf], (b, m, k))
        y3, trans_b = self._as_stack(ins[1], ya, [*yb, *yc, *yf], [*yb, *yf, *yc], (b, k, n))
        c3 = self._new(f"np.empty({shape_expr((b, m, n))}, {dtype_expr(out.dtype)})")
        if out.dtype in (np.float64, np.float32) and runtime.HAVE_BLAS:
            fn = "gemm_f64" if out.dtype == np.float64 else "gemm_f32"
        else:
            fn = "matmul_loop_bool" if out.dtype == np.bool_ else "matmul_loop"
        self.line(f"{fn}({x3}, {y3}, {c3}, {trans_a}, {trans_b})")
        if out.shape == ():
            return [self._new(f"{c3}[0, 0, 0]")]
        return [self._new(f"{c3}.reshape({shape_expr(out.shape)})")]

    def _as_stack(self, x: str, aval: ShapedArray, order: list[int], trans_order: list[int],
                  bmk: tuple[int, int, int]) -> tuple[str, bool]:
        """x as a C-contiguous (B, M, K) stack, or as (B, K, M) flagged transposed when its
        memory is already in that order (BLAS transposes for free)."""
        b, m, k = bmk
        if aval.ndim == 0:
            return self._new(f"np.full((1, 1, 1), {x}, {dtype_expr(aval.dtype)})"), False
        identity = list(range(aval.ndim))
        if order == identity:
            return self._new(f"{x}.reshape({shape_expr(bmk)})", alias_of=[x]), False
        if trans_order == identity:
            return self._new(f"{x}.reshape({shape_expr((b, k, m))})", alias_of=[x]), True
        moved = self._new(f"np.ascontiguousarray(np.transpose({x}, {shape_expr(order)}))")
        return self._new(f"{moved}.reshape({shape_expr(bmk)})"), False

    def _lower_argmax(self, eqn, ins, which="argmax"):
        (axis,), x = eqn.params["axes"], ins[0]
        src, out = eqn.invars[0].aval, eqn.outvars[0].aval
        n = src.shape[axis]
        rows = src.size // n if n else 0
        if axis == src.ndim - 1:
            x2 = self._new(f"{x}.reshape({shape_expr((rows, n))})")
        else:
            perm = [d for d in range(src.ndim) if d != axis] + [axis]
            moved = self._new(f"np.ascontiguousarray(np.transpose({x}, {shape_expr(perm)}))")
            x2 = self._new(f"{moved}.reshape({shape_expr((rows, n))})")
        result = self._new(f"np.empty({rows}, {dtype_expr(out.dtype)})")
        self.line(f"{which}_rows({x2}, {result})")
        return [self._reshaped(result, (rows,), out.shape, out.dtype)]

    def _lower_argmin(self, eqn, ins):
        return self._lower_argmax(eqn, ins, "argmin")

    # -------------------------------------------------------------- control flow

    def _assign(self, names: Sequence[str], values: Sequence[str]) -> None:
        """Simultaneous assignment (a carry may be another carry's new value)."""
        if not names:
            return
        if len(names) == 1:
            self.line(f"{names[0]} = {values[0]}")
        else:
            self.line(f"{', '.join(names)} = {', '.join(values)}")

    def _lower_cond(self, eqn, ins):
        branches = eqn.params["branches"]
        index, ops = ins[0], ins[1:]
        outs = [self.fresh("o") for _ in eqn.outvars]
        if len(branches) == 1:
            self._assign(outs, self.body(branches[0], ops))
            return outs
        aliasing = False
        for i, branch in enumerate(branches):
            if i == 0:
                self.line(f"if {index} <= 0:")
            elif i < len(branches) - 1:
                self.line(f"elif {index} == {i}:")
            else:
                self.line("else:")
            with self.indent():
                before = len(self.lines)
                results = self.body(branch, ops)
                aliasing |= any(r in self.aliasing for r in results)
                self._assign(outs, results)
                if len(self.lines) == before:
                    self.line("pass")
        if aliasing:
            self.aliasing.update(outs)
        return outs

    def _lower_scan(self, eqn, ins):
        p = eqn.params
        n_consts, n_carry, length = p["num_consts"], p["num_carry"], p["length"]
        consts, init, xs = ins[:n_consts], ins[n_consts:n_consts + n_carry], \
            ins[n_consts + n_carry:]
        carries = [self.fresh("c") for _ in init]
        self._assign(carries, init)
        ys = []
        for v in eqn.outvars[n_carry:]:
            ys.append(self._new(f"np.empty({shape_expr(v.aval.shape)}, "
                                f"{dtype_expr(v.aval.dtype)})", "ys"))
        step = self.fresh("s")
        self.line(f"for {step} in range({length}):")
        with self.indent():
            i = step
            if p["reverse"]:
                i = self._new(f"{length - 1} - {step}", "r")
            x_now = [self._new(f"{x}[{i}]", "x", alias_of=[x]) for x in xs]
            outs = self.body(p["jaxpr"], [*consts, *carries, *x_now])
            self._assign(carries, outs[:n_carry])
            for y, value in zip(ys, outs[n_carry:]):
                self.line(f"{y}[{i}] = {value}")
        if any(a in self.aliasing for a in [*init, *outs[:n_carry]]):
            self.aliasing.update(carries)
        return [*carries, *ys]

    def _lower_while(self, eqn, ins):
        p = eqn.params
        nc, nb = p["cond_nconsts"], p["body_nconsts"]
        cconsts, bconsts, init = ins[:nc], ins[nc:nc + nb], ins[nc + nb:]
        carries = [self.fresh("c") for _ in init]
        self._assign(carries, init)
        self.line("while True:")
        with self.indent():
            (keep_going,) = self.body(p["cond_jaxpr"], [*cconsts, *carries])
            self.line(f"if not {keep_going}:")
            with self.indent():
                self.line("break")
            outs = self.body(p["body_jaxpr"], [*bconsts, *carries])
            self._assign(carries, outs)
        if any(a in self.aliasing for a in [*init, *outs]):
            self.aliasing.update(carries)
        return carries


def _load_index(eqn: Eqn, idx: Sequence[str]) -> list[str] | None:
    """The operand index read at domain point `idx` by a load op (None: a 0-d operand)."""
    name, p = eqn.primitive.name, eqn.params
    src = eqn.invars[0].aval.shape
    if not src:
        return None
    if name == "broadcast_in_dim":
        return ["0" if src[k] == 1 else idx[d] for k, d in enumerate(p["broadcast_dimensions"])]
    if name == "transpose":
        index = [""] * len(src)
        for j, axis in enumerate(p["permutation"]):
            index[axis] = idx[j]
        return index
    if name == "slice":
        index = []
        for i, start, stride in zip(idx, p["start_indices"], p["strides"]):
            term = i if stride == 1 else f"{stride} * {i}"
            index.append(term if start == 0 else f"{term} + {start}")
        return index
    if name == "rev":
        return [f"{src[k] - 1} - {idx[k]}" if k in p["dimensions"] else idx[k]
                for k in range(len(src))]
    raise AssertionError(name)


# ============================================================================ functions


def write_function(name: str, jaxpr: Jaxpr) -> Function:
    """One Numba function computing `jaxpr`: parameters are its constvars, then its invars
    (then any constants of nested bodies); it returns a tuple of the outputs."""
    w = FunctionWriter(name)
    params = [f"a{i}" for i in range(len(jaxpr.constvars) + len(jaxpr.invars))]
    w.aliasing.update(params)
    outs = w.jaxpr(jaxpr, params)
    returned: list[str] = []
    for atom, expr in zip(jaxpr.outvars, outs):
        if atom.aval.shape != () and (expr in w.aliasing or expr in returned):
            expr = w._new(f"{expr}.copy()")  # a fresh array: never an input, never twice
        returned.append(expr)
    w.line(f"return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
    all_params = params + [p for p, _ in w.extra_params]
    avals = [v.aval for v in [*jaxpr.constvars, *jaxpr.invars]]
    avals += [ShapedArray(np.shape(c), np.asarray(c).dtype) for _, c in w.extra_params]
    header = f"def {name}({', '.join(all_params)}):"
    source = "\n".join([header, *w.lines])
    return Function(name, source, avals, [c for _, c in w.extra_params], w.groups)


def numba_type(aval: ShapedArray) -> str:
    """The Numba type of a parameter, as source."""
    if aval.shape == ():
        return f"types.{numba_scalar(aval.dtype)}"
    return f'types.Array(types.{numba_scalar(aval.dtype)}, {aval.ndim}, "C")'


def module_source(functions: Sequence[Function], salt: str) -> str:
    """A kernel module: imports, and each function with its eager Numba signature."""
    lines = [
        f"# fgrad kernel ({salt})",
        "# Generated code: see fgrad/backend/codegen.py.",
        "import numpy as np",
        "from numba import njit, types",
        "",
        "from fgrad.backend.runtime import (argmax_rows, argmin_rows, gemm_f32, gemm_f64,",
        "                                   matmul_loop, matmul_loop_bool)",
        "",
    ]
    for fn in functions:
        sig = ", ".join(numba_type(a) for a in fn.param_avals)
        lines.append("")
        lines.append(f'@njit([({sig}{"," if len(fn.param_avals) == 1 else ""})], '
                     f'cache=True, error_model="numpy")')
        lines.append(fn.source)
        lines.append("")
    return "\n".join(lines)
