"""Staging: record primitives into a jaxpr instead of running them.

One interpreter serves two purposes:
  * tracing (`make_jaxpr`, `jit`): every primitive is recorded;
  * partial evaluation (`linearize`, `vjp`): a primitive whose inputs are all
    *known* (not this interpreter's tracers) is forwarded to the parent and
    computed now; only the rest, the tangent computation, is recorded. Known
    values that the recorded part uses become its constants (the residuals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core import Interpreter, Tracer, get_aval, new_interpreter, using
from ..ir import ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var


class StagingTracer(Tracer):
    __slots__ = ("_aval", "atom")

    def __init__(self, interp: StagingInterpreter, aval: ShapedArray, atom: Var | Literal):
        self._interp = interp
        self._aval = aval
        self.atom = atom

    @property
    def aval(self) -> ShapedArray:
        return self._aval


class StagingInterpreter(Interpreter):
    def __init__(self, parent: Interpreter, transform: str = "make_jaxpr",
                 forward_known: bool = False):
        super().__init__(parent)
        self.transform = transform
        self.forward_known = forward_known
        self.invars: list[Var] = []
        self.eqns: list[Eqn] = []
        self.constvars: list[Var] = []
        self.constvals: list[Any] = []
        self._lifted: dict[int, tuple[Any, StagingTracer]] = {}

    def new_arg(self, aval: ShapedArray) -> StagingTracer:
        var = Var(aval)
        self.invars.append(var)
        return StagingTracer(self, aval, var)

    def lift(self, x: Any) -> StagingTracer:
        """This interpreter's tracer for `x`; a foreign value becomes a constant (once)."""
        if self.owns(x):
            return x
        if isinstance(x, Tracer):
            self.check_foreign(x)
        cached = self._lifted.get(id(x))
        if cached is not None and cached[0] is x:
            return cached[1]
        aval = get_aval(x)
        if not isinstance(x, Tracer) and aval.shape == ():
            atom: Var | Literal = Literal(np.asarray(x, aval.dtype), aval)
        else:
            atom = Var(aval)
            self.constvars.append(atom)
            self.constvals.append(x)
        tracer = StagingTracer(self, aval, atom)
        self._lifted[id(x)] = (x, tracer)  # holding x keeps its id from being reused
        return tracer

    def process_primitive(self, prim, args, params):
        if self.forward_known and not any(self.owns(a) for a in args):
            with using(self.parent):
                return prim.bind(*args, **params)
        tracers = [self.lift(a) for a in args]
        out_avals = prim.abstract_eval(*[t.aval for t in tracers], **params)
        if not prim.multiple_results:
            out_avals = [out_avals]
        outvars = [Var(a) for a in out_avals]
        self.eqns.append(Eqn(prim, [t.atom for t in tracers], params, outvars))
        outs = [StagingTracer(self, v.aval, v) for v in outvars]
        return outs if prim.multiple_results else outs[0]

    def build(self, outs: Sequence[Any]) -> ClosedJaxpr:
        """The recorded program with `outs` as its results, dead code removed."""
        out_atoms = [self.lift(o).atom for o in outs]
        jaxpr = Jaxpr(self.constvars, self.invars, out_atoms, self.eqns)
        jaxpr, used_consts = dce_jaxpr(jaxpr)
        consts = [c for c, used in zip(self.constvals, used_consts) if used]
        return ClosedJaxpr(jaxpr, consts)


def dce_jaxpr(jaxpr: Jaxpr) -> tuple[Jaxpr, list[bool]]:
    """Drop equations whose results are unused (all primitives are pure) and unused consts."""
    live = {a for a in jaxpr.outvars if isinstance(a, Var)}
    kept: list[Eqn] = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in live for v in eqn.outvars):
            kept.append(eqn)
            live.update(a for a in eqn.invars if isinstance(a, Var))
    used = [v in live for v in jaxpr.constvars]
    constvars = [v for v, u in zip(jaxpr.constvars, used) if u]
    return Jaxpr(constvars, jaxpr.invars, jaxpr.outvars, kept[::-1]), used


def trace_to_jaxpr(
    fun: Callable[..., Sequence[Any]],
    in_avals: Sequence[ShapedArray],
    transform: str = "make_jaxpr",
) -> ClosedJaxpr:
    """Trace `fun` (flat list in, flat list out) on abstract arguments into a closed jaxpr."""
    with new_interpreter(StagingInterpreter, transform) as interp:
        args = [interp.new_arg(a) for a in in_avals]
        with using(interp):
            outs = fun(*args)
        return interp.build(outs)
