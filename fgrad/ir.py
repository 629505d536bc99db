"""The typed intermediate representation every transform reads and writes.

A `Jaxpr` is a list of equations `outvars = primitive[params] invars` over typed
variables; `ClosedJaxpr` pairs it with the constant values its constvars name.
Abstract values (`ShapedArray`) are all that tracing knows about an array.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_SHORT_DTYPE = {
    "float64": "f64", "float32": "f32", "float16": "f16",
    "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8",
    "uint64": "u64", "uint32": "u32", "uint16": "u16", "uint8": "u8",
    "bool": "bool", "complex128": "c128", "complex64": "c64",
}


class ShapedArray:
    """The abstract value of an array: its shape and dtype, and whether its type is weak."""

    __slots__ = ("shape", "dtype", "weak_type")

    def __init__(self, shape: Sequence[int], dtype: Any, weak_type: bool = False):
        # Fast paths: this runs for every operand of every operation.
        self.shape = shape if type(shape) is tuple else tuple(int(d) for d in shape)
        self.dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        self.weak_type = weak_type

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def update(self, shape=None, dtype=None, weak_type=None) -> ShapedArray:
        return ShapedArray(
            self.shape if shape is None else shape,
            self.dtype if dtype is None else dtype,
            self.weak_type if weak_type is None else weak_type,
        )

    def strip_weak(self) -> ShapedArray:
        return ShapedArray(self.shape, self.dtype, False)

    def str_short(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{_SHORT_DTYPE.get(self.dtype.name, self.dtype.name)}[{dims}]"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ShapedArray)
            and self.shape == other.shape
            and self.dtype == other.dtype
            and self.weak_type == other.weak_type
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype, self.weak_type))

    def __repr__(self) -> str:
        return f"ShapedArray({self.str_short()}{', weak_type=True' if self.weak_type else ''})"

    __str__ = str_short


class Var:
    """A variable of the IR: a name for a value of a known abstract type."""

    __slots__ = ("aval", "_id")
    _counter = itertools.count()

    def __init__(self, aval: ShapedArray):
        self.aval = aval
        self._id = next(Var._counter)

    def __repr__(self) -> str:
        return f"Var#{self._id}:{self.aval.str_short()}"


class Literal:
    """A scalar constant written inline in the IR."""

    __slots__ = ("val", "aval")

    def __init__(self, val: Any, aval: ShapedArray):
        self.val = val
        self.aval = aval

    def __repr__(self) -> str:
        return f"{_format_scalar(self.val)}:{self.aval.str_short()}"


Atom = Var | Literal


class Eqn:
    """One equation: `outvars = primitive[params] invars`."""

    __slots__ = ("primitive", "invars", "params", "outvars")

    def __init__(self, primitive, invars: list[Atom], params: dict, outvars: list[Var]):
        self.primitive = primitive
        self.invars = invars
        self.params = params
        self.outvars = outvars

    def __repr__(self) -> str:
        return f"Eqn({self.primitive.name}, {self.invars}, {self.params}, {self.outvars})"


class Jaxpr:
    """A closed-form program: constvars and invars in, equations, outvars out."""

    __slots__ = ("constvars", "invars", "outvars", "eqns")

    def __init__(self, constvars: list[Var], invars: list[Var], outvars: list[Atom],
                 eqns: list[Eqn]):
        self.constvars = constvars
        self.invars = invars
        self.outvars = outvars
        self.eqns = eqns

    @property
    def in_avals(self) -> list[ShapedArray]:
        return [v.aval for v in self.invars]

    @property
    def out_avals(self) -> list[ShapedArray]:
        return [v.aval for v in self.outvars]

    def __str__(self) -> str:
        return pp_jaxpr(self)

    __repr__ = __str__

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(str(self))


class ClosedJaxpr:
    """A `Jaxpr` together with the values of its constvars."""

    __slots__ = ("jaxpr", "consts", "__weakref__")  # compiled code is cached on it

    def __init__(self, jaxpr: Jaxpr, consts: Sequence[Any]):
        assert len(jaxpr.constvars) == len(consts)
        self.jaxpr = jaxpr
        self.consts = list(consts)

    in_avals = property(lambda self: self.jaxpr.in_avals)
    out_avals = property(lambda self: self.jaxpr.out_avals)
    eqns = property(lambda self: self.jaxpr.eqns)

    def __str__(self) -> str:
        return pp_jaxpr(self.jaxpr)

    __repr__ = __str__

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(str(self))


# ----------------------------------------------------------------------------- printing


def _format_scalar(val: Any) -> str:
    val = np.asarray(val)
    if val.dtype == np.bool_:
        return "True" if val else "False"
    if val.dtype.kind == "f":
        return repr(float(val))
    return str(val.item())


def _var_names():
    """a, b, ..., z, ba, bb, ... as in JAX's listings."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    for n in itertools.count(1):
        for combo in itertools.product(letters, repeat=n):
            name = "".join(combo)
            if n > 1 and name[0] == "a":
                continue
            yield name


class _Namer:
    def __init__(self):
        self.names: dict[Var, str] = {}
        self.fresh = _var_names()

    def __call__(self, atom: Atom) -> str:
        if isinstance(atom, Literal):
            return repr(atom)
        if atom not in self.names:
            self.names[atom] = next(self.fresh)
        return self.names[atom]

    def binder(self, var: Var) -> str:
        return f"{self(var)}:{var.aval.str_short()}"


def _format_param(value: Any, namer: _Namer, indent: int) -> str:
    if isinstance(value, ClosedJaxpr):
        value = value.jaxpr
    if isinstance(value, Jaxpr):
        return "\n" + _pp(value, namer, indent + 4)
    if isinstance(value, np.dtype):
        return _SHORT_DTYPE.get(value.name, value.name)
    if isinstance(value, tuple) and any(isinstance(v, (Jaxpr, ClosedJaxpr)) for v in value):
        return "(" + ", ".join(_format_param(v, namer, indent) for v in value) + ")"
    return repr(value)


def _pp(jaxpr: Jaxpr, namer: _Namer, indent: int) -> str:
    pad = " " * indent
    consts = " ".join(namer.binder(v) for v in jaxpr.constvars)
    args = " ".join(namer.binder(v) for v in jaxpr.invars)
    head = f"{pad}{{ lambda {consts}{'; ' if consts else ''}{args}. let"
    lines = [head]
    for eqn in jaxpr.eqns:
        lhs = " ".join(namer.binder(v) for v in eqn.outvars)
        params = ", ".join(
            f"{k}={_format_param(v, namer, indent + 4)}" for k, v in sorted(eqn.params.items())
        )
        rhs = eqn.primitive.name + (f"[{params}]" if params else "")
        operands = " ".join(namer(v) for v in eqn.invars)
        lines.append(f"{pad}    {lhs} = {rhs} {operands}".rstrip())
    outs = ", ".join(namer(v) for v in jaxpr.outvars)
    lines.append(f"{pad}  in ({outs}{',' if len(jaxpr.outvars) == 1 else ''}) }}")
    return "\n".join(lines)


def pp_jaxpr(jaxpr: Jaxpr) -> str:
    """A readable listing: typed binders, one equation per line, nested jaxprs indented."""
    return _pp(jaxpr, _Namer(), 0)


# ----------------------------------------------------------------------------- type checking


class JaxprTypeError(TypeError):
    pass


def check_jaxpr(jaxpr: Jaxpr) -> None:
    """Check that every variable is bound once before use and every equation type-checks."""
    env: set[Var] = set()

    def read(atom: Atom) -> ShapedArray:
        if isinstance(atom, Literal):
            return atom.aval
        if atom not in env:
            raise JaxprTypeError(f"variable {atom} is used before it is defined")
        return atom.aval

    def bind(var: Var) -> None:
        if var in env:
            raise JaxprTypeError(f"variable {var} is defined twice")
        env.add(var)

    for v in [*jaxpr.constvars, *jaxpr.invars]:
        bind(v)
    for eqn in jaxpr.eqns:
        in_avals = [read(a) for a in eqn.invars]
        out_avals = eqn.primitive.abstract_eval(*in_avals, **eqn.params)
        if not eqn.primitive.multiple_results:
            out_avals = [out_avals]
        if len(out_avals) != len(eqn.outvars):
            raise JaxprTypeError(f"{eqn.primitive.name}: {len(out_avals)} results, "
                                 f"{len(eqn.outvars)} outvars")
        for expected, var in zip(out_avals, eqn.outvars):
            if (expected.shape, expected.dtype) != (var.aval.shape, var.aval.dtype):
                raise JaxprTypeError(
                    f"{eqn.primitive.name}: rule gives {expected}, outvar has {var.aval}"
                )
            bind(var)
    for atom in jaxpr.outvars:
        read(atom)
