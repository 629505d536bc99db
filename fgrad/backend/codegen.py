"""Code generation: an optimised jaxpr becomes the Python source of one Numba function.

Conventions of the generated code, chosen to keep Numba's typing simple and its
compile time low (Numba spends ~10-30 ms per loop, allocation or reshape it lowers):

* **Every array is a flat, C-ordered 1-D buffer** whose shape is known here; its
  sizes are written in terms of the kernel's dimension parameters (`dim0 * dim1`,
  see `sizes.py`), so one kernel serves every batch size. A reshape (squeeze,
  expand_dims) is free: the same buffer. Indices are linear expressions
  (`a0[dim1 * j0 + j1 + 2]`), and loop nests collapse adjacent axes whenever every
  access allows it, so most elementwise groups are a single loop. A 0-d value is a
  Numba *scalar*, never an array.
* **Typed scalars.** Literals carry their dtype (`np.float32(2.0)`), and results of
  float32 or small-integer arithmetic are cast back (`np.float32(a * b)`), because
  Numba widens `float32 * 2.0` to float64 and `int32 + int32` to int64.
* **Fused groups** (see `fusion.py`) are inline loop nests computing scalars and
  storing only their materialised outputs. A value used once is written inline into
  its consumer's expression. Reductions accumulate float32 in float64 (integers in
  64 bits) and cast on store.
* **Control flow is native**: `scan` is a `for` loop (carries reassigned, ys written
  into preallocated stacked buffers), `while` a `while` loop, `cond` an `if`/`elif`
  chain; the bodies' code is generated inline.
* Inputs are never written to; an output that may alias an input is copied on return.
* Small outputs are packed, per dtype, into one returned buffer (Numba's code to box
  each returned array costs ~10 ms to compile); the host slices them apart.
* No slice assignment (`a[i:j] = b`): Numba compiles each in hundreds of milliseconds,
  so copies are explicit loops.

`write_function(name, jaxpr)` produces one `Function`; `module_source` joins functions
into a module with their explicit Numba signatures (compiled eagerly, cached on disk).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import Atom, ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
from . import fusion, passes
from .fusion import Access, Group, LoopPlan, Term, identity_access, load_access, size_of, strides_of
from .sizes import Dim, Sizes

# Groups with at least this many points run their outermost loop on all cores (a
# `prange`): below it, starting threads costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 16

SUPPORTED_DTYPES = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float32, np.float64))


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
    return "boolean" if dtype == np.bool_ else dtype.name


def literal(value: Any, dtype: Any) -> str:
    """A typed scalar constant: `1.5` (float64), `np.float32(1.5)`, `np.int32(3)`, `True`."""
    dtype = np.dtype(dtype)
    if isinstance(value, Dim) and dtype.kind == "f":  # a count of elements (see sizes.py)
        return f"float({value})" if dtype == np.float64 else f"{dtype_expr(dtype)}({value})"
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


_TYPED_LITERAL = re.compile(r"^-?(np\.\w+\()?-?(\d[\d.e+-]*|np\.inf|np\.nan|True|False)\)?$")


def _simple(expr: str) -> bool:
    """An identifier or a (typed) literal: cheap to repeat, never stored in a temporary."""
    return expr.isidentifier() or bool(_TYPED_LITERAL.match(expr))


_CALL_OR_SUBSCRIPT = re.compile(r"^[\w.]*[(\[]")
_CLOSING = {"(": ")", "[": "]"}


def _atomic(expr: str) -> bool:
    """A name, a literal, or one call, subscript or parenthesis spanning all of `expr`."""
    if _simple(expr):
        return True
    head = _CALL_OR_SUBSCRIPT.match(expr)
    if head is None or expr[-1] != _CLOSING[expr[head.end() - 1]]:
        return False
    depth = 0
    for i, ch in enumerate(expr[head.end() - 1:], head.end() - 1):
        depth += ch in "(["
        depth -= ch in ")]"
        if depth == 0:
            return i == len(expr) - 1
    return False


def _paren(expr: str) -> str:
    """`expr`, parenthesised unless it is atomic."""
    return expr if _atomic(expr) else f"({expr})"


# ============================================================================ what lowers


# Opaque primitives with a lowering, and the parameters each lowering understands (a
# primitive whose parameters change shape runs on the host until its lowering follows).
_LOWERED_OPAQUE = {
    "reshape": {"new_sizes"}, "squeeze": {"dimensions"}, "expand_dims": {"dimensions"},
    "pad": {"padding_config"}, "concatenate": {"dimension"},
    "dot_general": {"dimension_numbers"}, "argmax": {"axes", "index_dtype"},
    "argmin": {"axes", "index_dtype"}, "gather": {"axis"}, "scatter_add": {"axis"},
    "cumsum": {"axis", "reverse"}, "argsort": {"axis", "index_dtype"},
    "cond": {"branches"},
    "scan": {"jaxpr", "num_consts", "num_carry", "length", "reverse"},
    "while": {"cond_jaxpr", "body_jaxpr", "cond_nconsts", "body_nconsts"},
}


def unsupported(jaxpr: Jaxpr) -> list[str]:
    """Reasons, one per equation of `jaxpr` (or nested in it) that cannot be lowered."""
    return [why for eqn in jaxpr.eqns if (why := eqn_unsupported(eqn))]


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
        inner = [why for body in bodies for why in unsupported(body.jaxpr)]
        return inner[0] if inner else None
    if name == "integer_pow" and eqn.params["y"] < 0 and eqn.invars[0].aval.dtype.kind != "f":
        return f"{name} (negative power of an integer)"
    if name in fusion.ELEMENTWISE:
        return None if name in _ELEMENTWISE else name
    if name in fusion.FUSIBLE:
        return None
    if name in _LOWERED_OPAQUE and set(eqn.params) == _LOWERED_OPAQUE[name]:
        return None
    return name


# ============================================================================ elementwise


class _Scalars:
    """What an elementwise rule may use: temporaries in the loop body, typed literals."""

    def __init__(self, writer: FunctionWriter):
        self.writer = writer

    def tmp(self, expr: str) -> str:
        """`expr` stored in a fresh temporary (unless it is a name or literal already)."""
        if _simple(expr):
            return expr
        name = self.writer.fresh("t")
        self.writer.line(f"{name} = {expr}")
        return name

    @staticmethod
    def lit(value: Any, dtype: Any) -> str:
        return literal(value, dtype)


Rule = Callable[[_Scalars, list[str], np.dtype, Eqn], str]


def _cast(expr: str, dtype: np.dtype) -> str:
    """Numba's result type is exact for float64/int64/bool; other dtypes are cast."""
    if dtype in (np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.bool_)):
        return expr
    return f"{dtype_expr(dtype)}({expr})"


def _binary(op: str) -> Rule:
    return lambda k, xs, dt, eqn: _cast(f"{xs[0]} {op} {xs[1]}", dt)


def _call(fn: str) -> Rule:
    return lambda k, xs, dt, eqn: _cast(f"{fn}({', '.join(xs)})", dt)


def _div(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    a, b = xs
    if dt.kind == "f":
        return _cast(f"{a} / {b}", dt)
    # Integers round toward zero (C, JAX); Numba's // floors, and gives 0 for x // 0.
    a, b = k.tmp(a), k.tmp(b)
    q = k.tmp(f"{a} // {b}")
    return _cast(f"{q} + 1 if {a} % {b} != 0 and ({a} < 0) != ({b} < 0) else {q}", dt)


def _rem(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    a, b = xs
    if dt.kind == "f":
        return _cast(f"np.fmod({a}, {b})", dt)
    # C's remainder, with the sign of the dividend (NumPy's fmod); x % 0 gives 0.
    a = k.tmp(a)
    r = k.tmp(f"abs({a}) % abs({b})")
    return _cast(f"-{r} if {a} < 0 else {r}", dt)


def _maxmin(which: str) -> Rule:
    def rule(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
        a, b = xs
        if dt == np.bool_:
            return f"{a} {'or' if which == 'max' else 'and'} {b}"
        # np.maximum/np.minimum: NaN wins, as in NumPy.
        return _cast(f"np.{'maximum' if which == 'max' else 'minimum'}({a}, {b})", dt)

    return rule


def _integer_pow(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    """x ** y by repeated squaring (y static); 1 / x ** -y for negative y."""
    (x,), y = xs, eqn.params["y"]
    if y == 0:
        return k.lit(1, dt)
    n, result, base = abs(y), None, k.tmp(x)
    while n:
        if n & 1:
            result = base if result is None else k.tmp(_cast(f"{result} * {base}", dt))
        n >>= 1
        if n:
            base = k.tmp(_cast(f"{base} * {base}", dt))
    assert result is not None
    return _cast(f"{k.lit(1, dt)} / {result}", dt) if y < 0 else result


def _logistic(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    # As the NumPy impl: exp is only taken of -|x|, so it never overflows.
    x = k.tmp(xs[0])
    one, zero = k.lit(1, dt), k.lit(0, dt)
    e = k.tmp(_cast(f"np.exp(-np.abs({x}))", dt))
    return _cast(f"{one} / ({one} + {e}) if {x} >= {zero} else {e} / ({one} + {e})", dt)


def _rsqrt(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    return _cast(f"{k.lit(1, dt)} / np.sqrt({xs[0]})", dt)


def _not(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    return f"not {xs[0]}" if dt == np.bool_ else _cast(f"~{xs[0]}", dt)


def _select_n(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    which, cases = xs[0], xs[1:]
    if len(cases) == 1:
        return cases[0]
    if eqn.invars[0].aval.dtype == np.bool_:
        return f"{cases[1]} if {which} else {cases[0]}"
    # An integer selector is clipped into range (np.choose(mode="clip")).
    which = k.tmp(which)
    expr = cases[-1]
    for i in range(len(cases) - 2, 0, -1):
        expr = f"{cases[i]} if {which} == {i} else {expr}"
    return f"{cases[0]} if {which} <= 0 else {expr}"


def _convert(k: _Scalars, xs: list[str], dt: np.dtype, eqn: Eqn) -> str:
    (x,) = xs
    if dt == np.bool_:
        return x if eqn.invars[0].aval.dtype == np.bool_ else f"{x} != 0"
    return f"{dtype_expr(dt)}({x})"


_ELEMENTWISE: dict[str, Rule] = {
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
    """How one reduction accumulates: accumulator dtype, identity, update statements."""

    acc_dtype: np.dtype
    init: str
    update: Callable[[str, str], list[str]]  # (accumulator, value) -> statements


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

        def update(a: str, v: str) -> list[str]:
            # NaN wins (as np.max): once the accumulator is NaN no comparison replaces it.
            return [f"if {v} {cmp} {a} or {v} != {v}:", f"    {a} = {v}"]

        return _Reducer(dt, init, update)
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
    parallel: bool = False
    helpers: list[Function] = field(default_factory=list)  # defined before it
    # Per output of the jaxpr: (position in the returned tuple, offset) for a packed
    # output, (position, None) for one returned directly.
    outputs: list[tuple[int, int | None]] = field(default_factory=list)
    dims: list[int] = field(default_factory=list)  # the values of its `Sizes` parameters


class FunctionWriter:
    """Writes the body of one function, line by line."""

    def __init__(self, name: str, sizes: Sizes):
        self.name = name
        self.sizes = sizes
        self.lines: list[str] = []
        self.depth = 1
        self.counts: dict[str, int] = {}
        self.aliasing: set[str] = set()  # names that may share memory with a parameter
        self.extra_params: list[tuple[str, Any]] = []
        self.groups: list[str] = []
        self.kernels: list[Function] = []  # parallel group functions it calls
        self.pack_slots: dict[Var, tuple[str, int]] = {}  # program outputs -> packed slot
        self.in_slot: dict[str, tuple[str, int]] = {}  # buffers allocated in a slot

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

    def new(self, expr: str, prefix: str = "v", alias_of: Sequence[str] = ()) -> str:
        """A fresh variable holding `expr` (aliasing a parameter if `alias_of` does)."""
        name = self.fresh(prefix)
        self.line(f"{name} = {expr}")
        if any(a in self.aliasing for a in alias_of):
            self.aliasing.add(name)
        return name

    def loops(self, names: Sequence[str], extents: Sequence[int], body: Callable[[], None],
              parallel: bool = False) -> None:
        """Nested loops (the outermost a `prange` if `parallel`) around `body()`."""
        if not names:
            body()
            return
        self.line(f"for {names[0]} in {'prange' if parallel else 'range'}({extents[0]}):")
        with self.indent():
            self.loops(names[1:], extents[1:], body)

    def copy_flat(self, dst: str, offset: Any, src: str, n: int) -> None:
        """dst[offset:offset + n] = src[:n], as a loop: Numba's slice assignment costs
        hundreds of milliseconds to compile."""
        if n == 1:
            self.line(f"{dst}[{offset}] = {src}[0]")
            return
        q = self.fresh("q")
        self.line(f"for {q} in range({n}):")
        with self.indent():
            at = q if offset in (0, "0") else f"{offset} + {q}"
            self.line(f"{dst}[{at}] = {src}[{q}]")

    def fill(self, dst: str, value: str, n: int) -> None:
        q = self.fresh("q")
        self.line(f"for {q} in range({n}):")
        with self.indent():
            self.line(f"{dst}[{q}] = {value}")

    # -------------------------------------------------------------- values

    def atom(self, atom: Atom, env: dict[Var, str]) -> str:
        if isinstance(atom, Literal):
            return literal(atom.val, atom.aval.dtype)
        return env[atom]

    def constant(self, value: Any, aval: ShapedArray) -> str:
        """A constant of a nested body: inline if scalar, else an extra parameter."""
        if aval.shape == ():
            return literal(value, aval.dtype)
        name = self.fresh("k")
        self.extra_params.append((name, np.ravel(np.asarray(value, aval.dtype))))
        self.aliasing.add(name)
        return name

    def alloc(self, aval: ShapedArray, prefix: str = "v", var: Var | None = None) -> str:
        """A new flat buffer for a value of type `aval`; if it is the program output `var`
        and outputs are packed, its slot in the packed buffer."""
        slot = self.pack_slots.get(var) if var is not None else None
        if slot is not None and slot not in self.in_slot.values():
            pack, offset = slot
            name = self.new(f"{pack}[{offset}:{offset + aval.size}]", prefix)
            self.in_slot[name] = slot
            return name
        return self.new(f"np.empty({aval.size}, {dtype_expr(aval.dtype)})", prefix)

    @staticmethod
    def full(size: int, value: str, dtype: Any) -> str:
        return f"np.full({size}, {value}, {dtype_expr(dtype)})"

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
        jaxpr = self.sizes.jaxpr(opt.jaxpr)
        consts = [self.constant(c, v.aval) for c, v in zip(opt.consts, jaxpr.constvars)]
        return self.jaxpr(jaxpr, [*consts, *args])

    # -------------------------------------------------------------- fused groups

    def group(self, g: Group, env: dict[Var, str]) -> None:
        self.groups.append(g.describe())
        self.line(f"# {g.describe()}")
        plan = LoopPlan(g.domain, fusion.group_accesses(g))
        if self._parallel_worthy(g, plan):
            self._parallel_group(g, env, plan)
        else:
            self._group_code(g, env, plan)

    def _parallel_worthy(self, g: Group, plan: LoopPlan) -> bool:
        """Big enough to pay for threads, and its outermost loop writes disjoint outputs
        (no reduction, or one whose kept axes are outermost)."""
        if size_of(g.domain) < PARALLEL_MIN_SIZE or not plan.loops or plan.extents[0] < 2:
            return False
        if g.reductions:
            return plan.loops[0][0] not in g.reductions[0].params["axes"] and \
                self._suffix_reduction(g, plan)
        return True

    @staticmethod
    def _suffix_reduction(g: Group, plan: LoopPlan) -> bool:
        axes = set(g.reductions[0].params["axes"])
        kept = [n for n, ax in enumerate(plan.loops) if ax[0] not in axes]
        return kept == list(range(len(kept)))

    def _parallel_group(self, g: Group, env: dict[Var, str], plan: LoopPlan) -> None:
        """The group as a separate `parallel=True` function (prange over its outermost
        loop), called with its inputs and preallocated outputs."""
        results = [v for v in g.outputs if v not in {r.outvars[0] for r in g.reductions}]
        results += [r.outvars[0] for r in g.reductions]
        out_names = {v: self.alloc(v.aval, var=v) for v in results}
        name = f"{self.name}_parallel{len(self.kernels)}"
        inner = FunctionWriter(name, self.sizes)
        inner_env = {v: f"arg{i}" for i, v in enumerate(g.inputs)}
        preallocated = {v: f"out{i}" for i, v in enumerate(results)}
        params = [*inner_env.values(), *preallocated.values(), *self.sizes.params]
        inner._group_code(g, inner_env, plan, preallocated, parallel=True)
        inner.line("return")
        avals = [v.aval for v in g.inputs] + [ShapedArray((v.aval.size,), v.aval.dtype)
                                              for v in results] + self.sizes.avals
        source = "\n".join([f"def {name}({', '.join(params)}):", *inner.lines])
        self.kernels.append(Function(name, source, avals, [], [g.describe()], parallel=True))
        args = [env[v] for v in g.inputs] + [out_names[v] for v in results] + self.sizes.params
        self.line(f"{name}({', '.join(args)})")
        env.update(out_names)

    def _group_code(self, g: Group, env: dict[Var, str], plan: LoopPlan,
                    preallocated: dict[Var, str] | None = None, parallel: bool = False
                    ) -> None:
        """The loop nest of a group. Outputs are allocated here unless `preallocated`
        names them; with `parallel` the outermost loop is a `prange`."""
        domain = g.domain
        outs = {r.outvars[0] for r in g.reductions}
        given = preallocated or {}

        def output(v: Var, prefix: str) -> str:
            return given[v] if v in given else self.alloc(v.aval, prefix, var=v)

        stored = {v: output(v, "v") for v in g.outputs if domain and v not in outs}
        env.update(stored)
        loops = (lambda names, extents, body: self.loops(names, extents, body, parallel)) \
            if parallel else self.loops
        if not g.reductions:
            loops(plan.vars, plan.extents, lambda: self._point(g, env, plan, stored))
            return
        axes = set(g.reductions[0].params["axes"])
        kept = [n for n, ax in enumerate(plan.loops) if ax[0] not in axes]
        reducers = [_reducer(r) for r in g.reductions]
        out_access = fusion.reduce_access(domain, axes)
        accs = [self.fresh("acc") for _ in g.reductions]

        def store_value(reducer: _Reducer, acc: str, red: Eqn) -> str:
            same = reducer.acc_dtype == red.outvars[0].aval.dtype
            return acc if same else _cast(acc, red.outvars[0].aval.dtype)

        if kept == list(range(len(kept))):
            # The reduced axes are innermost: scalar accumulators, one output at a time.
            results = [output(r.outvars[0], "r") if r.outvars[0].aval.shape else None
                       for r in g.reductions]

            def per_output() -> None:
                for acc, reducer in zip(accs, reducers):
                    self.line(f"{acc} = {reducer.init}")

                def accumulate() -> None:
                    values = self._point(g, env, plan, stored)
                    for acc, reducer, value in zip(accs, reducers, values):
                        for statement in reducer.update(acc, value):
                            self.line(statement)

                n = len(kept)
                self.loops(plan.vars[n:], plan.extents[n:], accumulate)
                for res, acc, reducer, red in zip(results, accs, reducers, g.reductions):
                    value = store_value(reducer, acc, red)
                    if res is None:
                        env[red.outvars[0]] = self.new(value, "r")
                    else:
                        self.line(f"{res}[{plan.index(out_access)}] = {value}")

            n = len(kept)
            loops(plan.vars[:n], plan.extents[:n], per_output)
            for res, red in zip(results, g.reductions):
                if res is not None:
                    env[red.outvars[0]] = res
            return
        # Otherwise accumulator arrays, with the domain visited in memory order.
        for acc, reducer, red in zip(accs, reducers, g.reductions):
            size = red.outvars[0].aval.size
            self.line(f"{acc} = {self.full(size, reducer.init, reducer.acc_dtype)}")
        slot = plan.index(out_access)

        def per_element() -> None:
            values = self._point(g, env, plan, stored)
            for acc, reducer, value in zip(accs, reducers, values):
                current = self.fresh("cur")
                self.line(f"{current} = {acc}[{slot}]")
                for statement in reducer.update(current, value):
                    self.line(statement)
                self.line(f"{acc}[{slot}] = {current}")

        self.loops(plan.vars, plan.extents, per_element)
        for acc, reducer, red in zip(accs, reducers, g.reductions):
            out = red.outvars[0].aval
            same = reducer.acc_dtype == out.dtype
            env[red.outvars[0]] = acc if same else self.new(
                f"{acc}.astype({dtype_expr(out.dtype)})", "r")

    def _point(self, g: Group, env: dict[Var, str], plan: LoopPlan,
               stored: dict[Var, str]) -> list[str]:
        """The scalar statements of one point of the domain; returns the operands of the
        group's reductions."""
        k = _Scalars(self)
        direct = plan.index(identity_access(g.domain)) if g.domain else ""
        uses = Counter(a for e in g.eqns for a in e.invars if isinstance(a, Var))
        local: dict[Var, str] = {}

        def read(atom: Atom) -> str:
            if isinstance(atom, Literal):
                return literal(atom.val, atom.aval.dtype)
            if atom not in local:  # a group input
                value = env[atom] if atom.aval.shape == () else f"{env[atom]}[{direct}]"
                local[atom] = value if uses[atom] == 1 else k.tmp(value)
            return local[atom]

        def define(var: Var, expr: str) -> None:
            if var in stored:
                local[var] = k.tmp(expr) if uses[var] else expr
                self.line(f"{stored[var]}[{direct}] = {local[var]}")
            elif not g.domain and var in g.outputs:
                local[var] = env[var] = k.tmp(expr)
            else:
                local[var] = _paren(expr) if uses[var] == 1 else k.tmp(expr)

        operands = []
        for eqn in g.eqns:
            name, out = eqn.primitive.name, eqn.outvars[0]
            if name in fusion.REDUCTIONS:  # its update may read the value twice
                operands.append(k.tmp(read(eqn.invars[0])))
            elif name in fusion.LOADS:
                operand = eqn.invars[0]
                if isinstance(operand, Literal) or operand.aval.shape == ():
                    define(out, read(operand))  # a scalar, broadcast
                else:
                    define(out, f"{env[operand]}[{plan.index(load_access(eqn))}]")
            elif name == "iota":
                n = plan.loop_of(eqn.params["dimension"])
                define(out, _cast(f"{dtype_expr(out.aval.dtype)}({plan.vars[n]})"
                                  if n is not None else literal(0, out.aval.dtype),
                                  out.aval.dtype))
            else:
                xs = [read(a) for a in eqn.invars]
                define(out, _ELEMENTWISE[name](k, xs, out.aval.dtype, eqn))
        return operands

    # -------------------------------------------------------------- opaque equations

    def opaque(self, eqn: Eqn, env: dict[Var, str]) -> None:
        name = eqn.primitive.name
        rule = getattr(self, f"_lower_{name}", None)
        if rule is None:
            raise Unsupported(name)
        free = name in ("reshape", "squeeze", "expand_dims") and bool(
            eqn.invars[0].aval.shape and eqn.outvars[0].aval.shape)
        self.line(f"# {name}{' (free: the same buffer)' if free else ''}")
        outs = rule(eqn, env, [self.atom(a, env) for a in eqn.invars])
        env.update(zip(eqn.outvars, outs))

    def _lower_reshape(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        """Free on flat buffers, except to and from 0-d scalars."""
        (x,), src, dst = ins, eqn.invars[0].aval, eqn.outvars[0].aval
        if src.shape == () and dst.shape != ():
            if eqn.outvars[0] in self.pack_slots:
                result = self.alloc(dst, var=eqn.outvars[0])
                self.line(f"{result}[0] = {x}")
                return [result]
            return [self.new(self.full(dst.size, x, dst.dtype))]
        if dst.shape == () and src.shape != ():
            return [self.new(f"{x}[0]")]
        return [x]

    _lower_squeeze = _lower_reshape
    _lower_expand_dims = _lower_reshape

    def copy_into(self, src: str, src_shape: Sequence[int], dst: str, dst_access: Access,
                  checks: Sequence[tuple[int, int, int, int]] = ()) -> None:
        """dst[f(i)] = src[i] for every index i of `src_shape`, where f is `dst_access`
        (its terms' axes are src's axes). `checks` lists (axis, start, step, extent):
        the store happens only where every `start + step * i[axis]` is in [0, extent)."""
        plan = LoopPlan(src_shape, [identity_access(src_shape), dst_access], collapse=not checks)
        store = f"{dst}[{plan.index(dst_access)}] = {src}[{plan.index(identity_access(src_shape))}]"

        def body() -> None:
            if not checks:
                self.line(store)
                return
            conds = []
            for axis, start, step, extent in checks:
                n = plan.loop_of(axis)
                value = f"{start} + {step} * {plan.vars[n]}" if n is not None else str(start)
                conds.append(f"0 <= {value} < {extent}")
            self.line(f"if {' and '.join(conds)}:")
            with self.indent():
                self.line(store)

        self.loops(plan.vars, plan.extents, body)

    def _lower_concatenate(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        out, dim = eqn.outvars[0].aval, eqn.params["dimension"]
        result = self.alloc(out, var=eqn.outvars[0])
        strides = strides_of(out.shape)
        start = 0
        for atom, x in zip(eqn.invars, ins):
            shape = atom.aval.shape
            if atom.aval.size:
                access = [Term(k, start if k == dim else 0, 1, s) for k, s in enumerate(strides)]
                self.copy_into(x, shape, result, access)
            start += shape[dim]
        return [result]

    def _lower_pad(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        (x, value), src, out = ins, eqn.invars[0].aval, eqn.outvars[0].aval
        config = eqn.params["padding_config"]
        if eqn.outvars[0] in self.pack_slots:
            result = self.alloc(out, var=eqn.outvars[0])
            self.fill(result, value, out.size)
        else:
            result = self.new(self.full(out.size, value, out.dtype))
        if src.size and out.size:
            strides = strides_of(out.shape)
            access = [Term(k, lo, interior + 1, s)
                      for k, ((lo, hi, interior), s) in enumerate(zip(config, strides))]
            checks = [(k, lo, interior + 1, n) for k, ((lo, hi, interior), n)
                      in enumerate(zip(config, out.shape)) if lo < 0 or hi < 0]
            self.copy_into(x, src.shape, result, access, checks)
        return [result]

    def _transposed(self, x: str, aval: ShapedArray, perm: Sequence[int],
                    var: Var | None = None) -> str:
        """x with its axes permuted, C-ordered: x itself if only size-1 axes move, else
        a copy (in `var`'s output slot, if it is a packed program output)."""
        moved = [p for p in perm if aval.shape[p] != 1]
        if moved == sorted(moved):
            return x
        shape = [aval.shape[p] for p in perm]
        result = self.alloc(ShapedArray(shape, aval.dtype), var=var)
        # Read x in its own order; write each element to its permuted position.
        access = [Term(axis, 0, 1, stride) for axis, stride in zip(perm, strides_of(shape))]
        self.copy_into(x, aval.shape, result, access)
        return result

    def _lower_dot_general(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        from . import runtime

        (xc, yc), (xb, yb) = eqn.params["dimension_numbers"]
        xa, ya, out = eqn.invars[0].aval, eqn.invars[1].aval, eqn.outvars[0].aval
        xf = [a for a in range(xa.ndim) if a not in xc and a not in xb]
        yf = [a for a in range(ya.ndim) if a not in yc and a not in yb]

        def size(shape: Sequence[int], axes: Sequence[int]) -> int:
            return size_of([shape[a] for a in axes])

        b, m = size(xa.shape, xb), size(xa.shape, xf)
        k, n = size(xa.shape, xc), size(ya.shape, yf)
        x3, trans_a = self._stacked(ins[0], xa, [*xb, *xf, *xc], [*xb, *xc, *xf])
        y3, trans_b = self._stacked(ins[1], ya, [*yb, *yc, *yf], [*yb, *yf, *yc])
        c = self.alloc(ShapedArray((b * m * n,), out.dtype),
                       var=eqn.outvars[0] if out.shape else None)
        if out.dtype in (np.float64, np.float32) and runtime.HAVE_BLAS:
            fn = "gemm_f64" if out.dtype == np.float64 else "gemm_f32"
        else:
            fn = "matmul_loop_bool" if out.dtype == np.bool_ else "matmul_loop"
        self.line(f"{fn}({x3}, {y3}, {c}, {_scalars(b, m, n, k, trans_a, trans_b)})")
        return [self.new(f"{c}[0]") if out.shape == () else c]

    def _stacked(self, x: str, aval: ShapedArray, order: list[int], trans_order: list[int]
                 ) -> tuple[str, bool]:
        """x as a flat (B, M, K) stack, or as (B, K, M) flagged transposed when its memory
        is already in that order (BLAS transposes for free)."""
        if aval.ndim == 0:
            return self.new(self.full(1, x, aval.dtype)), False
        identity = list(range(aval.ndim))
        if order == identity:
            return x, False
        if trans_order == identity:
            return x, True
        return self._transposed(x, aval, order), False

    def _lower_argmax(self, eqn: Eqn, env: dict, ins: list[str], which: str = "argmax"
                      ) -> list[str]:
        (axis,), x = eqn.params["axes"], ins[0]
        src, out = eqn.invars[0].aval, eqn.outvars[0].aval
        n = src.shape[axis]
        if axis != src.ndim - 1:
            x = self._transposed(x, src, [d for d in range(src.ndim) if d != axis] + [axis])
        result = self.alloc(ShapedArray((max(out.size, 1),), out.dtype),
                            var=eqn.outvars[0] if out.shape else None)
        self.line(f"{which}_rows({x}, {_scalars(out.size, n)}, {result})")
        return [self.new(f"{result}[0]") if out.shape == () else result]

    def _lower_argmin(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        return self._lower_argmax(eqn, env, ins, "argmin")

    def _around(self, shape: Sequence[int], axis: int) -> str:
        """A shape seen as (outer, shape[axis], inner): three arguments, as source."""
        return _scalars(size_of(shape[:axis]), shape[axis], size_of(shape[axis + 1:]))

    def _as_array(self, x: str, aval: ShapedArray) -> str:
        """A flat buffer for x (a 0-d scalar becomes a one-element array)."""
        return x if aval.shape else self.new(self.full(1, x, aval.dtype))

    def _lower_gather(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        x, indices = ins
        xa, ia, out = eqn.invars[0].aval, eqn.invars[1].aval, eqn.outvars[0]
        around = self._around(xa.shape, eqn.params["axis"])
        result = self.alloc(ShapedArray((max(out.aval.size, 1),), out.aval.dtype),
                            var=out if out.aval.shape else None)
        self.line(f"gather_rows({x}, {self._as_array(indices, ia)}, {result}, {around})")
        return [result if out.aval.shape else self.new(f"{result}[0]")]

    def _lower_scatter_add(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        x, indices, updates = ins
        xa, ia, ua = (v.aval for v in eqn.invars)
        around = self._around(xa.shape, eqn.params["axis"])
        result = self.alloc(xa, var=eqn.outvars[0])
        self.line(f"scatter_add_rows({x}, {self._as_array(indices, ia)}, "
                  f"{self._as_array(updates, ua)}, {result}, {around})")
        return [result]

    def _lower_cumsum(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        around = self._around(eqn.invars[0].aval.shape, eqn.params["axis"])
        result = self.alloc(eqn.outvars[0].aval, var=eqn.outvars[0])
        self.line(f"cumsum_rows({ins[0]}, {result}, {around}, {_scalars(eqn.params['reverse'])})")
        return [result]

    def _lower_argsort(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        src, out = eqn.invars[0].aval, eqn.outvars[0]
        axis, last = eqn.params["axis"], src.ndim - 1
        perm = [d for d in range(src.ndim) if d != axis] + [axis]
        x = ins[0] if axis == last else self._transposed(ins[0], src, perm)
        n = src.shape[axis]
        moved = ShapedArray([src.shape[p] for p in perm], out.aval.dtype)
        result = self.alloc(moved, var=out if axis == last else None)
        self.line(f"argsort_rows({x}, {_scalars(src.size // n if n else 0, n)}, {result})")
        if axis == last:
            return [result]
        return [self._transposed(result, moved, [int(p) for p in np.argsort(perm)], var=out)]

    # -------------------------------------------------------------- control flow

    def assign(self, names: Sequence[str], values: Sequence[str]) -> None:
        """Simultaneous assignment (a carry may be another carry's new value)."""
        if names:
            self.line(f"{', '.join(names)} = {', '.join(values)}")

    def _lower_cond(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        branches = eqn.params["branches"]
        index, ops = ins[0], ins[1:]
        outs = [self.fresh("o") for _ in eqn.outvars]
        if len(branches) == 1:
            self.assign(outs, self.body(branches[0], ops))
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
                self.assign(outs, results)
                if len(self.lines) == before:
                    self.line("pass")
        if aliasing:
            self.aliasing.update(outs)
        return outs

    def _lower_scan(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        p = eqn.params
        n_consts, n_carry, length = p["num_consts"], p["num_carry"], p["length"]
        consts, init = ins[:n_consts], ins[n_consts:n_consts + n_carry]
        xs = list(zip(ins[n_consts + n_carry:], eqn.invars[n_consts + n_carry:]))
        carries = [self.fresh("c") for _ in init]
        self.assign(carries, init)
        ys = [(self.alloc(v.aval, "ys", var=v), v.aval) for v in eqn.outvars[n_carry:]]
        step = self.fresh("s")
        outs: list[str] = []
        length = self.sizes.dim(length)  # often a dimension of the scanned inputs
        self.line(f"for {step} in range({length}):")
        with self.indent():
            i = self.new(f"{length - 1} - {step}", "r") if p["reverse"] else step
            x_now = [self.new(self.row(x, atom.aval, i), "x", alias_of=[x]) for x, atom in xs]
            outs = self.body(p["jaxpr"], [*consts, *carries, *x_now])
            for (y, aval), value in zip(ys, outs[n_carry:]):  # before a carry changes
                row = size_of(aval.shape[1:])
                if aval.ndim == 1:
                    self.line(f"{y}[{i}] = {value}")
                else:
                    self.copy_flat(y, f"{row} * {i}", value, row)
            self.assign(carries, outs[:n_carry])
        if any(a in self.aliasing for a in [*init, *outs[:n_carry]]):
            self.aliasing.update(carries)
        return [*carries, *[y for y, _ in ys]]

    def _lower_while(self, eqn: Eqn, env: dict, ins: list[str]) -> list[str]:
        p = eqn.params
        nc, nb = p["cond_nconsts"], p["body_nconsts"]
        cconsts, bconsts, init = ins[:nc], ins[nc:nc + nb], ins[nc + nb:]
        carries = [self.fresh("c") for _ in init]
        self.assign(carries, init)
        self.line("while True:")
        with self.indent():
            (keep_going,) = self.body(p["cond_jaxpr"], [*cconsts, *carries])
            self.line(f"if not {keep_going}:")
            with self.indent():
                self.line("break")
            outs = self.body(p["body_jaxpr"], [*bconsts, *carries])
            self.assign(carries, outs)
        if any(a in self.aliasing for a in [*init, *outs]):
            self.aliasing.update(carries)
        return carries

    def row(self, stacked: str, aval: ShapedArray, i: str) -> str:
        """Row i of a stacked flat buffer of type `aval`: a scalar or a slice (a view)."""
        if aval.ndim == 1:
            return f"{stacked}[{i}]"
        row = size_of(aval.shape[1:])
        return f"{stacked}[{row} * {i}:{row} * {i} + {row}]"


def _scalars(*values: Any) -> str:
    """Integer and flag arguments of a run-time helper, typed (`np.int64(4)`, or a size's
    expression): Numba compiles a helper afresh for every distinct *literal* argument."""
    return ", ".join(f"np.bool_({v})" if isinstance(v, bool) else
                     str(v) if isinstance(v, Dim) else f"np.int64({v})" for v in values)


# ============================================================================ functions


def write_function(name: str, jaxpr: Jaxpr) -> Function:
    """One Numba function computing `jaxpr`: parameters are its constvars, then its invars
    (then any constants of nested bodies, then the dimensions of `Sizes`); it returns a
    tuple (see `Function.outputs`)."""
    sizes = Sizes([v.aval for v in [*jaxpr.constvars, *jaxpr.invars]])
    jaxpr = sizes.jaxpr(jaxpr)
    inputs = [*jaxpr.constvars, *jaxpr.invars]
    w = FunctionWriter(name, sizes)
    params = [f"arg{i}" for i in range(len(inputs))]
    w.aliasing.update(params)
    layout, packs = _output_layout(jaxpr.outvars)
    # Offsets and totals are sums of sizes: `Dim`s, written in terms of the dimensions.
    slots = [(f"pack{where}", offset) if kind == "pack" else None
             for kind, where, offset in layout]
    for n, (dtype, total) in enumerate(packs):
        w.line(f"pack{n} = np.empty({total}, {dtype_expr(dtype)})")
    for atom, slot in zip(jaxpr.outvars, slots):
        if slot is not None and isinstance(atom, Var):
            for var in _reshaped_from(atom, jaxpr):
                w.pack_slots.setdefault(var, slot)
    outs = w.jaxpr(jaxpr, params)
    returned = [f"pack{n}" for n in range(len(packs))]
    for atom, expr, slot in zip(jaxpr.outvars, outs, slots):
        if slot is not None:
            if w.in_slot.get(expr) != slot:  # not computed in place: copy it there
                if atom.aval.shape == ():
                    w.line(f"{slot[0]}[{slot[1]}] = {expr}")
                else:
                    w.copy_flat(slot[0], slot[1], expr, atom.aval.size)
        else:
            if atom.aval.shape != () and (expr in w.aliasing or expr in returned):
                expr = w.new(f"{expr}.copy()")  # fresh: never an input, never twice
            returned.append(expr)
    w.line(f"return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
    all_params = params + [p for p, _ in w.extra_params] + sizes.params
    avals = [v.aval for v in inputs]
    avals += [ShapedArray(np.shape(c), np.asarray(c).dtype) for _, c in w.extra_params]
    avals += sizes.avals
    header = f"def {name}({', '.join(all_params)}):"
    source = "\n".join([header, *w.lines])
    outputs = []
    for kind, where, offset in layout:
        outputs.append((where, int(offset)) if kind == "pack" else (len(packs) + where, None))
    return Function(name, source, avals, [c for _, c in w.extra_params], w.groups,
                    helpers=w.kernels, outputs=outputs, dims=sizes.values)


def _reshaped_from(var: Var, jaxpr: Jaxpr) -> list[Var]:
    """`var`, and the values it is a reshape of (through reshape, squeeze, expand_dims),
    as long as nothing else reads them: all can live in `var`'s output slot."""
    defined = {v: e for e in jaxpr.eqns for v in e.outvars}
    reads = Counter(a for e in jaxpr.eqns for a in e.invars if isinstance(a, Var))
    reads.update(a for a in jaxpr.outvars if isinstance(a, Var))
    chain = [var]
    eqn = defined.get(var)
    while eqn is not None and eqn.primitive.name in ("reshape", "squeeze", "expand_dims"):
        operand = eqn.invars[0]
        if not isinstance(operand, Var) or reads[operand] != 1 or not operand.aval.shape:
            break
        chain.append(operand)
        eqn = defined.get(operand)
    return chain


# Outputs up to this many elements are packed, per dtype, into one returned buffer:
# Numba's code to box each returned array costs ~10 ms of compile time.
PACK_MAX_SIZE = 1 << 14


def _output_layout(outvars: Sequence[Atom]) -> tuple[list[tuple[str, int, int]],
                                                     list[tuple[np.dtype, int]]]:
    """Where each output is returned: ("pack", pack number, offset) for small outputs of
    a dtype with at least two of them, else ("direct", position among direct outputs, 0).
    Also the packs' (dtype, size)."""
    small: dict[np.dtype, int] = {}
    for atom in outvars:
        if atom.aval.size <= PACK_MAX_SIZE:
            small[atom.aval.dtype] = small.get(atom.aval.dtype, 0) + 1
    packed = [d for d, count in small.items() if count >= 2]
    sizes = {d: 0 for d in packed}
    layout, direct = [], 0
    for atom in outvars:
        dtype = atom.aval.dtype
        if dtype in sizes and atom.aval.size <= PACK_MAX_SIZE:
            layout.append(("pack", packed.index(dtype), sizes[dtype]))
            sizes[dtype] += atom.aval.size
        else:
            layout.append(("direct", direct, 0))
            direct += 1
    return layout, [(d, sizes[d]) for d in packed]


def numba_type(aval: ShapedArray) -> str:
    """The Numba type of a parameter, as source: a scalar, or a flat C-ordered array."""
    if aval.shape == ():
        return f"types.{numba_scalar(aval.dtype)}"
    return f"types.{numba_scalar(aval.dtype)}[::1]"


def module_source(functions: Sequence[Function], salt: str) -> str:
    """A kernel module: imports, and each function with its eager Numba signature."""
    lines = [
        f"# fgrad kernel ({salt})",
        "# Generated code: see fgrad/backend/codegen.py.",
        "import numpy as np",
        "from numba import njit, prange, types",
        "",
        "from fgrad.backend.runtime import (argmax_rows, argmin_rows, argsort_rows, cumsum_rows,",
        "                                   gather_rows, gemm_f32, gemm_f64, matmul_loop,",
        "                                   matmul_loop_bool, scatter_add_rows)",
    ]
    for fn in [h for f in functions for h in f.helpers] + list(functions):
        sig = ", ".join(numba_type(a) for a in fn.param_avals)
        flags = 'cache=True, error_model="numpy"' + (", parallel=True" if fn.parallel else "")
        lines += ["", "", f'@njit([({sig}{"," if len(fn.param_avals) == 1 else ""})], {flags})',
                  fn.source]
    return "\n".join(lines) + "\n"
