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
        if self.forward_known:
            unknown = [self.owns(a) for a in args]
            if not any(unknown):
                with using(self.parent):
                    return prim.bind(*args, **params)
            if prim.partial_eval is not None:  # split into a known part and a staged part
                return prim.partial_eval(self, args, unknown, **params)
        return self.stage(prim, args, params)

    def stage(self, prim, args: Sequence[Any], params: dict) -> Any:
        """Record one equation; its results are this interpreter's tracers."""
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


def dce_jaxpr(jaxpr: Jaxpr, used_outputs: Sequence[bool] | None = None,
              prune_invars: bool = False) -> tuple[Jaxpr, list[bool]]:
    """Drop equations whose results are unused (all primitives are pure) and unused
    constvars. Returns the new jaxpr and which constvars (and, with `prune_invars`,
    which invars, after the constvars) were used. A primitive with a `dce` rule can
    drop its own unused outputs and inputs (control flow does)."""
    if used_outputs is None:
        used_outputs = [True] * len(jaxpr.outvars)
    outvars = [a for a, u in zip(jaxpr.outvars, used_outputs) if u]
    live = {a for a in outvars if isinstance(a, Var)}
    kept: list[Eqn] = []
    for eqn in reversed(jaxpr.eqns):
        used = [v in live for v in eqn.outvars]
        if not any(used):
            continue
        if eqn.primitive.dce is not None and not all(used):
            eqn = eqn.primitive.dce(eqn, used)
        kept.append(eqn)
        live.update(a for a in eqn.invars if isinstance(a, Var))
    used_consts = [v in live for v in jaxpr.constvars]
    constvars = [v for v, u in zip(jaxpr.constvars, used_consts) if u]
    if not prune_invars:
        return Jaxpr(constvars, jaxpr.invars, outvars, kept[::-1]), used_consts
    used_ins = [v in live for v in jaxpr.invars]
    invars = [v for v, u in zip(jaxpr.invars, used_ins) if u]
    return Jaxpr(constvars, invars, outvars, kept[::-1]), used_consts + used_ins


def dce_closed_jaxpr(closed: ClosedJaxpr, used_outputs: Sequence[bool],
                     prune_invars: bool = False) -> tuple[ClosedJaxpr, list[bool]]:
    """`dce_jaxpr` for a closed jaxpr: unused constants go too. Returns which invars
    were used (all True unless `prune_invars`)."""
    jaxpr, used = dce_jaxpr(closed.jaxpr, used_outputs, prune_invars)
    n_consts = len(closed.jaxpr.constvars)
    consts = [c for c, u in zip(closed.consts, used[:n_consts]) if u]
    used_ins = used[n_consts:] if prune_invars else [True] * len(closed.jaxpr.invars)
    return ClosedJaxpr(jaxpr, consts), used_ins


def dce_call_eqn(eqn: Eqn, used_outputs: Sequence[bool]) -> Eqn:
    """The DCE rule of a call-like primitive whose `jaxpr` parameter takes its operands."""
    body, used_ins = dce_closed_jaxpr(eqn.params["jaxpr"], used_outputs, prune_invars=True)
    return Eqn(eqn.primitive, [a for a, u in zip(eqn.invars, used_ins) if u],
               dict(eqn.params, jaxpr=body),
               [v for v, u in zip(eqn.outvars, used_outputs) if u])


def convert_constvars(closed: ClosedJaxpr) -> tuple[Jaxpr, list[Any]]:
    """Closure conversion: the constvars become leading invars, and their values are
    returned, to be passed as ordinary operands. A higher-order primitive does this so
    that every value its body uses is an input that transforms can see."""
    jaxpr = closed.jaxpr
    return Jaxpr([], [*jaxpr.constvars, *jaxpr.invars], jaxpr.outvars, jaxpr.eqns), closed.consts


def partial_eval_jaxpr(
    closed: ClosedJaxpr, unknowns: Sequence[bool], instantiate: bool | Sequence[bool] = False
) -> tuple[ClosedJaxpr, ClosedJaxpr, list[bool], int]:
    """Split `closed` by which inputs are unknown.

    Returns `(known, unknown, out_unknowns, num_residuals)`: `known` maps the known
    inputs to the known outputs followed by residuals; `unknown` maps the residuals
    followed by the unknown inputs to the unknown outputs. Outputs named by
    `instantiate` are made unknown even if they could be known.
    """
    from ..core import eval_jaxpr

    n_out = len(closed.out_avals)
    force = [instantiate] * n_out if isinstance(instantiate, bool) else list(instantiate)
    in_avals = closed.in_avals
    known_avals = [a for a, u in zip(in_avals, unknowns) if not u]
    found: dict[str, Any] = {}

    def known_part(*known_args):
        with new_interpreter(StagingInterpreter, "partial_eval", forward_known=True) as pe:
            given = iter(known_args)
            args = [pe.new_arg(a) if u else next(given) for a, u in zip(in_avals, unknowns)]
            with using(pe):
                outs = eval_jaxpr(closed.jaxpr, closed.consts, *args)
            out_unknowns = [pe.owns(o) or f for o, f in zip(outs, force)]
            found["unknown"] = pe.build([o for o, u in zip(outs, out_unknowns) if u])
            found["out_unknowns"] = out_unknowns
        residuals = found["unknown"].consts
        return [*[o for o, u in zip(outs, out_unknowns) if not u], *residuals]

    known = trace_to_jaxpr(known_part, known_avals, "partial_eval")
    unknown_jaxpr, _ = convert_constvars(found["unknown"])
    num_res = len(found["unknown"].consts)
    return known, ClosedJaxpr(unknown_jaxpr, []), found["out_unknowns"], num_res


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
