"""Sizes read at run time: one compiled kernel serves every batch size.

A jaxpr has concrete shapes, but the kernel written for it should not: a training
step jitted for batches of 100 must run a last batch of 37 without compiling again.
So before code generation each distinct dimension (other than 0 and 1) of a
function's parameters becomes an `int64` parameter of the kernel, `dim0, dim1, ...`
in order of first appearance, and every shape in the jaxpr is rewritten in terms of
them: a dimension equal to a parameter's value becomes a `Dim`, an `int` that also
knows how to write itself as source. Sizes, strides and offsets computed from `Dim`s
are `Dim`s (`dim0 * dim2`), so the code generator writes them as expressions simply
by formatting them.

This is sound whatever gets matched. Each expression equals its number for the
shapes the source was written for, so the source is right for them; and two
signatures share a kernel only when their sources are identical, i.e. when each is
right for its own shapes. A coincidence (a hidden width equal to the batch size)
only costs a second kernel.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..ir import Eqn, Jaxpr, Literal, ShapedArray, Var

_ATOM, _PRODUCT, _SUM = 3, 2, 1  # precedence of an expression's outermost operator


class Dim(int):
    """A size with the source expression that computes it from the kernel's dimension
    parameters. Arithmetic with ints and other `Dim`s gives `Dim`s; formatting one
    (`f"range({n})"`) writes the expression."""

    expr: str
    prec: int

    def __new__(cls, value: int, expr: str, prec: int = _ATOM) -> Dim:
        self = super().__new__(cls, value)
        self.expr, self.prec = expr, prec
        return self

    def __str__(self) -> str:
        return f"({self.expr})" if self.prec == _SUM else self.expr

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else format(int(self), spec)

    def __repr__(self) -> str:
        return f"Dim({int(self)}, {self.expr!r})"

    def __reduce__(self) -> tuple:  # pickles (and copies) as the plain number
        return int, (int(self),)

    def __mul__(self, other: Any) -> Any:
        return _product(self, other) if isinstance(other, int) else NotImplemented

    def __rmul__(self, other: Any) -> Any:
        return _product(other, self) if isinstance(other, int) else NotImplemented

    def __add__(self, other: Any) -> Any:
        return _sum(self, other, "+") if isinstance(other, int) else NotImplemented

    def __radd__(self, other: Any) -> Any:
        return _sum(other, self, "+") if isinstance(other, int) else NotImplemented

    def __sub__(self, other: Any) -> Any:
        return _sum(self, other, "-") if isinstance(other, int) else NotImplemented

    def __rsub__(self, other: Any) -> Any:
        return _sum(other, self, "-") if isinstance(other, int) else NotImplemented

    def __neg__(self) -> Any:
        return _product(-1, self)

    def __floordiv__(self, other: Any) -> Any:
        if not isinstance(other, int):
            return NotImplemented
        if int(other) == 1:
            return self
        value = int(self) // int(other)
        right = _text(other) if _prec(other) == _ATOM else f"({_text(other)})"
        # `2 * a // b` is not `2 * (a // b)`: a quotient is parenthesised wherever it goes.
        return Dim(value, f"{_operand(self, _PRODUCT)} // {right}", _SUM)


def _prec(n: int) -> int:
    return n.prec if isinstance(n, Dim) else _ATOM


def _text(n: int) -> str:
    return n.expr if isinstance(n, Dim) else str(int(n))


def _operand(n: int, prec: int) -> str:
    """n's expression as the operand of an operator of precedence `prec`."""
    return _text(n) if _prec(n) >= prec else f"({_text(n)})"


def _product(a: int, b: int) -> int:
    value = int(a) * int(b)
    if not isinstance(a, Dim) and int(a) in (0, 1):
        return b if int(a) else 0
    if not isinstance(b, Dim) and int(b) in (0, 1):
        return a if int(b) else 0
    if not isinstance(a, Dim) and int(a) == -1:
        return Dim(value, f"-{_operand(b, _ATOM)}", _ATOM) if _prec(b) == _ATOM else \
            Dim(value, f"-({_text(b)})", _ATOM)
    return Dim(value, f"{_operand(a, _PRODUCT)} * {_operand(b, _PRODUCT)}", _PRODUCT)


def _sum(a: int, b: int, op: str) -> int:
    value = int(a) + int(b) if op == "+" else int(a) - int(b)
    if not isinstance(b, Dim) and int(b) == 0:
        return a
    if op == "+" and not isinstance(a, Dim) and int(a) == 0:
        return b
    right = _text(b) if op == "+" or _prec(b) >= _PRODUCT else f"({_text(b)})"
    return Dim(value, f"{_text(a)} {op} {right}", _SUM)


class Sizes:
    """The dimension parameters of one kernel, and shapes rewritten in their terms."""

    def __init__(self, avals: Sequence[ShapedArray]):
        self.values: list[int] = list(dict.fromkeys(
            int(d) for a in avals for d in a.shape if d > 1))
        self.params = [f"dim{i}" for i in range(len(self.values))]
        self._dims = {v: Dim(v, p) for v, p in zip(self.values, self.params)}
        self.avals = [ShapedArray((), np.dtype(np.int64))] * len(self.params)

    def dim(self, n: int) -> int:
        """n as a `Dim` if it is the value of a parameter, else n itself."""
        return n if isinstance(n, Dim) else self._dims.get(int(n), n)

    def aval(self, aval: ShapedArray) -> ShapedArray:
        if not aval.shape:
            return aval
        return ShapedArray(tuple(self.dim(d) for d in aval.shape), aval.dtype, aval.weak_type)

    def jaxpr(self, jaxpr: Jaxpr) -> Jaxpr:
        """A copy of `jaxpr` (not of nested bodies) whose shapes are written with `Dim`s."""
        new: dict[Var, Var] = {}

        def var(v: Var) -> Var:
            if v not in new:
                new[v] = Var(self.aval(v.aval))
            return new[v]

        def atom(a: Any) -> Any:
            return a if isinstance(a, Literal) else var(a)

        constvars = [var(v) for v in jaxpr.constvars]
        invars = [var(v) for v in jaxpr.invars]
        eqns = [Eqn(e.primitive, [atom(a) for a in e.invars], e.params,
                    [var(v) for v in e.outvars]) for e in jaxpr.eqns]
        if self.values:
            _count_literals(eqns)
        return Jaxpr(constvars, invars, [atom(a) for a in jaxpr.outvars], eqns)


# How far from a constant to look for the array whose size it is.
_COUNT_SEARCH_STEPS = 4


def _count_literals(eqns: list[Eqn]) -> None:
    """Integral float constants that count elements (the divisor of a mean, and of its
    gradient) are written in terms of the sizes: `x / 32.0` becomes `x / float(dim0 *
    dim1)`. A count is looked for next to the constant in the data flow: among the
    shapes (and their sub-products) of the equations around it, nearest first; the
    shape it is the size of (a reduction's operand, the broadcast of the gradient)
    is usually one step away."""
    producer = {v: e for e in eqns for v in e.outvars}
    consumers: dict[Var, list[Eqn]] = {}
    for e in eqns:
        for a in e.invars:
            if isinstance(a, Var):
                consumers.setdefault(a, []).append(e)

    def neighbours(e: Eqn) -> list[Eqn]:
        before = [producer[a] for a in e.invars if isinstance(a, Var) and a in producer]
        after = [c for v in e.outvars for c in consumers.get(v, [])]
        return before + after

    for e in eqns:
        for k, a in enumerate(e.invars):
            if isinstance(a, Literal) and a.aval.dtype.kind == "f":
                n = float(a.val)
                if n > 1 and n.is_integer() and n < 2 ** 53:
                    size = _nearby_size(e, int(n), neighbours)
                    if isinstance(size, Dim):
                        e.invars[k] = Literal(size, a.aval)


def _nearby_size(start: Eqn, n: int, neighbours: Callable[[Eqn], list[Eqn]]) -> int | None:
    """A product of some dimensions of one array near `start` (breadth first) equal to n."""
    seen, frontier = {id(start)}, [start]
    for _ in range(_COUNT_SEARCH_STEPS):
        for e in frontier:
            for v in [*e.invars, *e.outvars]:
                for dims in _subsets(v.aval.shape):
                    if math.prod(dims) == n and any(isinstance(d, Dim) for d in dims):
                        return math.prod(dims)
        frontier = [f for e in frontier for f in neighbours(e) if id(f) not in seen]
        seen.update(id(f) for f in frontier)
    return None


def _subsets(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The sub-tuples of `shape`, fewest dimensions first (none for large ranks)."""
    if len(shape) > 8:
        return [shape]
    return [c for r in range(1, len(shape) + 1) for c in itertools.combinations(shape, r)]
