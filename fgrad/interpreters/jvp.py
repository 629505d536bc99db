"""Forward mode: carry a tangent beside every primal value.

Tangents may be the symbolic `Zero`, which costs nothing and is never
materialised unless a rule needs a concrete array. A value whose tangent is
zero is returned as its bare primal, so it leaves this interpreter's care.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..core import Interpreter, Tracer, get_aval, new_interpreter, using
from ..ir import ClosedJaxpr, ShapedArray


class Zero:
    """The symbolic zero tangent of a value of type `aval`."""

    __slots__ = ("aval",)

    def __init__(self, aval: ShapedArray):
        self.aval = aval

    @staticmethod
    def like(x: Any) -> Zero:
        return Zero(get_aval(x).strip_weak())

    def __repr__(self) -> str:
        return f"Zero({self.aval.str_short()})"


def instantiate(t: Any) -> Any:
    """A concrete (or traced) array for a tangent that might be symbolic."""
    if isinstance(t, Zero):
        from ..lax import lax

        return lax.full(t.aval.shape, 0, t.aval.dtype)
    return t


class JVPTracer(Tracer):
    __slots__ = ("primal", "tangent")

    def __init__(self, interp: JVPInterpreter, primal: Any, tangent: Any):
        self._interp = interp
        self.primal = primal
        self.tangent = tangent

    @property
    def aval(self) -> ShapedArray:
        return get_aval(self.primal)

    def to_concrete(self) -> Any:
        p = self.primal
        return p.to_concrete() if isinstance(p, Tracer) else p


class JVPInterpreter(Interpreter):
    transform = "jvp"

    def __init__(self, parent: Interpreter, transform: str = "jvp"):
        super().__init__(parent)
        self.transform = transform

    def lift(self, x: Any) -> tuple[Any, Any]:
        """(primal, tangent) of any value; foreign values are constants."""
        if self.owns(x):
            return x.primal, x.tangent
        if isinstance(x, Tracer):
            self.check_foreign(x)
        return x, Zero.like(x)

    def pack(self, primal: Any, tangent: Any) -> Any:
        return primal if isinstance(tangent, Zero) else JVPTracer(self, primal, tangent)

    def process_primitive(self, prim, args, params):
        if not any(self.owns(a) for a in args):
            with using(self.parent):  # every tangent is zero: nothing to do here
                return prim.bind(*args, **params)
        primals, tangents = zip(*map(self.lift, args))
        if prim.jvp is None:
            raise prim.missing("differentiation (jvp)")
        with using(self.parent):
            primal_out, tangent_out = prim.jvp(primals, tangents, **params)
        if prim.multiple_results:
            return [self.pack(p, t) for p, t in zip(primal_out, tangent_out)]
        return self.pack(primal_out, tangent_out)


def jvp_flat(
    fun: Callable[..., Sequence[Any]],
    primals: Sequence[Any],
    tangents: Sequence[Any],
    transform: str = "jvp",
) -> tuple[list[Any], list[Any]]:
    """Run `fun` (flat list in, flat list out) on primals carrying tangents."""
    with new_interpreter(JVPInterpreter, transform) as interp:
        with using(interp):
            outs = fun(*[interp.pack(p, t) for p, t in zip(primals, tangents)])
        pairs = [interp.lift(o) for o in outs]
    return [p for p, _ in pairs], [t for _, t in pairs]


def jvp_jaxpr(closed: ClosedJaxpr, nonzeros: Sequence[bool],
              instantiate_out: bool | Sequence[bool]) -> tuple[ClosedJaxpr, list[bool]]:
    """The JVP of `closed` as a jaxpr: (primals, nonzero tangents) -> (primal outputs,
    tangent outputs). Output tangents that are symbolically zero are left out unless
    `instantiate_out` asks for them; the returned mask says which are present."""
    from ..core import eval_jaxpr
    from .staging import trace_to_jaxpr

    n_out = len(closed.out_avals)
    force = ([instantiate_out] * n_out if isinstance(instantiate_out, bool)
             else list(instantiate_out))
    in_avals = closed.in_avals
    tangent_avals = [a.strip_weak() for a, nz in zip(in_avals, nonzeros) if nz]
    out_nonzeros: list[bool] = []

    def jvp_of(*args):
        primals, given = args[:len(in_avals)], iter(args[len(in_avals):])
        tangents = [next(given) if nz else Zero(a.strip_weak())
                    for a, nz in zip(in_avals, nonzeros)]
        outs, out_tangents = jvp_flat(
            lambda *xs: eval_jaxpr(closed.jaxpr, closed.consts, *xs), primals, tangents)
        out_nonzeros[:] = [not isinstance(t, Zero) or f for t, f in zip(out_tangents, force)]
        return [*outs, *[instantiate(t) for t, nz in zip(out_tangents, out_nonzeros) if nz]]

    jaxpr = trace_to_jaxpr(jvp_of, [*in_avals, *tangent_avals], "jvp")
    return jaxpr, out_nonzeros
