"""Transposition: run a linear jaxpr backwards, from output cotangents to input cotangents.

Inputs of the jaxpr are the linear (undefined) values; its constants are known.
Equations with only known inputs are evaluated forwards first; then each linear
equation's transpose rule maps its output cotangent to its linear inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ir import ClosedJaxpr, Jaxpr, Literal, ShapedArray, Var
from .jvp import Zero


class UndefinedPrimal:
    """Stands for a linear input of an equation while transposing it."""

    __slots__ = ("aval",)

    def __init__(self, aval: ShapedArray):
        self.aval = aval

    def __repr__(self) -> str:
        return f"UndefinedPrimal({self.aval.str_short()})"


def is_undefined(x: Any) -> bool:
    return isinstance(x, UndefinedPrimal)


def add_cotangents(a: Any, b: Any) -> Any:
    if isinstance(a, Zero):
        return b
    if isinstance(b, Zero):
        return a
    from ..lax import lax

    return lax.add(a, b)


def backward_pass(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any],
                  cts_out: Sequence[Any]) -> list[Any]:
    """Cotangents of `jaxpr.invars` from cotangents of its outputs.

    `args` holds a known value for each non-linear input and an `UndefinedPrimal` for
    each linear one. The result has a cotangent (possibly the symbolic `Zero`) for each
    linear input and `None` for the others.
    """
    known: dict[Var, Any] = dict(zip(jaxpr.constvars, consts))
    linear: set[Var] = set()
    for var, arg in zip(jaxpr.invars, args):
        if is_undefined(arg):
            linear.add(var)
        else:
            known[var] = arg

    def read(atom):
        if isinstance(atom, Literal):
            return atom.val
        return UndefinedPrimal(atom.aval) if atom in linear else known[atom]

    linear_eqns = []
    for eqn in jaxpr.eqns:  # forwards: evaluate what does not depend on linear inputs
        if any(isinstance(a, Var) and a in linear for a in eqn.invars):
            linear.update(eqn.outvars)
            linear_eqns.append(eqn)
        else:
            outs = eqn.primitive.bind(*[read(a) for a in eqn.invars], **eqn.params)
            known.update(zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]))

    cts: dict[Var, Any] = {}

    def accumulate(var: Var, ct: Any) -> None:
        cts[var] = add_cotangents(cts.get(var, Zero(var.aval)), ct)

    for atom, ct in zip(jaxpr.outvars, cts_out):
        if isinstance(atom, Var) and atom in linear:
            accumulate(atom, ct)

    for eqn in reversed(linear_eqns):  # backwards: each linear equation's transpose rule
        prim = eqn.primitive
        eqn_cts = [cts.pop(v, Zero(v.aval)) for v in eqn.outvars]
        if all(isinstance(ct, Zero) for ct in eqn_cts):
            continue
        if prim.transpose is None:
            raise prim.missing(
                "transpose (reverse-mode differentiation needs it for primitives applied "
                "to tangents; is the tangent computation linear?)"
            )
        ct_arg = eqn_cts if prim.multiple_results else eqn_cts[0]
        cts_in = prim.transpose(ct_arg, *[read(a) for a in eqn.invars], **eqn.params)
        for atom, ct in zip(eqn.invars, cts_in):
            if ct is not None and isinstance(atom, Var) and atom in linear:
                accumulate(atom, ct)
    return [cts.pop(v, Zero(v.aval)) if is_undefined(a) else None
            for v, a in zip(jaxpr.invars, args)]


def transpose_jaxpr(closed: ClosedJaxpr, linear: Sequence[bool]) -> ClosedJaxpr:
    """The transpose of `closed` with respect to its `linear` inputs, as a jaxpr:
    (non-linear inputs, output cotangents) -> cotangents of the linear inputs."""
    from .jvp import instantiate
    from .staging import trace_to_jaxpr

    in_avals = closed.in_avals
    nonlinear_avals = [a for a, lin in zip(in_avals, linear) if not lin]
    ct_avals = [a.strip_weak() for a in closed.out_avals]

    def transposed(*args):
        nonlinear, cts_out = iter(args[:len(nonlinear_avals)]), args[len(nonlinear_avals):]
        primals = [UndefinedPrimal(a) if lin else next(nonlinear)
                   for a, lin in zip(in_avals, linear)]
        cts_in = backward_pass(closed.jaxpr, closed.consts, primals, cts_out)
        return [instantiate(ct) for ct, lin in zip(cts_in, linear) if lin]

    return trace_to_jaxpr(transposed, nonlinear_avals + ct_avals, "transpose")
