"""Jaxpr-to-jaxpr clean-up before fusion: inline calls, fold constants, CSE, DCE.

`optimize(closed)` runs, in one forward walk over the equations:

* **inlining**: a nested `jit`, `checkpoint`, `custom_jvp_call` or `custom_vjp_call`
  equation is replaced by the equations of the jaxpr it holds (under the backend
  these are plain function calls; their special meaning is for the transforms);
* **forwarding**: operations that do nothing (`stop_gradient`, a reshape to the same
  shape, a convert to the same dtype, a reduction over no axes, ...) are dropped and
  their result replaced by their operand; a transpose or broadcast that only moves or
  adds size-1 axes becomes a reshape (free on the backend's flat buffers);
* **constant folding**: an equation whose operands are all scalar literals and
  whose results are scalars is evaluated now (by its NumPy impl) into literals;
* **common subexpressions**: an equation equal to an earlier one (same primitive,
  operands and parameters) reuses the earlier results.

Then transposes next to matrix products are absorbed (`absorb_transposes`: BLAS reads
either operand layout, so `x.T @ y` needs no copy, and `(x @ y).T` is `y.T @ x.T`), and
dead code is removed (`dce_jaxpr`). Control-flow bodies are optimised when they are
lowered, so these passes walk one level.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..interpreters.staging import dce_jaxpr
from ..ir import Atom, ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var

# Call-like primitives whose inner jaxpr is simply inlined, and the parameter naming it.
INLINED_CALLS = {
    "jit": "jaxpr",
    "checkpoint": "jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
}

# Primitives that must never be folded or merged (they carry code, not values).
_HIGHER_ORDER = {"cond", "scan", "while", *INLINED_CALLS, "custom_lin"}


def optimize(closed: ClosedJaxpr) -> ClosedJaxpr:
    """The same program, with calls inlined, constants folded, duplicates and dead code
    removed. Inputs (constvars, invars) keep their order and count."""
    rewriter = _Rewriter(closed)
    rewriter.run(closed.jaxpr)
    return rewriter.result()


def literal(value: Any, dtype: Any) -> Literal:
    """A scalar literal of `dtype`."""
    dtype = np.dtype(dtype)
    return Literal(np.asarray(value, dtype), ShapedArray((), dtype))


def _literal_key(lit: Literal) -> tuple:
    """Equal keys for bit-identical literals (so -0.0 and 0.0 differ)."""
    value = np.asarray(lit.val, lit.aval.dtype)
    return ("lit", value.dtype.str, value.tobytes())


def _params_key(params: dict) -> Any:
    try:
        key = tuple(sorted(params.items()))
        hash(key)
        return key
    except TypeError:  # an unhashable parameter: never merged
        return None


class _Rewriter:
    """One forward walk producing a new equation list (see the module docstring)."""

    def __init__(self, closed: ClosedJaxpr):
        self.source = closed.jaxpr
        self.env: dict[Var, Atom] = {}
        self.eqns: list[Eqn] = []
        self.seen: dict[tuple, list[Var]] = {}
        self.ones: set[Var] = set()  # arrays of ones (a literal 1 broadcast)
        # Constants: scalar ones become literals; inlined jaxprs may add more.
        self.constvars: list[Var] = []
        self.constvals: list[Any] = []
        for var, value in zip(closed.jaxpr.constvars, closed.consts):
            self.constvars.append(var)
            self.constvals.append(value)
            if np.shape(value) == ():
                self.env[var] = literal(value, var.aval.dtype)

    def read(self, atom: Atom) -> Atom:
        if isinstance(atom, Literal):
            return atom
        return self.env.get(atom, atom)

    def run(self, jaxpr: Jaxpr) -> None:
        for eqn in jaxpr.eqns:
            self.visit(Eqn(eqn.primitive, [self.read(a) for a in eqn.invars], eqn.params,
                           eqn.outvars))

    def visit(self, eqn: Eqn) -> None:
        name = eqn.primitive.name
        if name in INLINED_CALLS:
            self.inline(eqn, eqn.params[INLINED_CALLS[name]])
            return
        forwarded = _forward(eqn)
        if forwarded is None and name in ("mul", "div"):
            forwarded = self.times_one(eqn)
        if forwarded is not None:
            self.env[eqn.outvars[0]] = forwarded
            return
        eqn = _as_reshape(eqn)
        folded = self.fold(eqn)
        if folded is not None:
            self.env.update(zip(eqn.outvars, folded))
            return
        key = self.key(eqn)
        if key is not None:
            earlier = self.seen.get(key)
            if earlier is not None:
                self.env.update(zip(eqn.outvars, earlier))
                return
            self.seen[key] = eqn.outvars
        if name == "broadcast_in_dim" and _is_one(eqn.invars[0]):
            self.ones.add(eqn.outvars[0])
        self.eqns.append(eqn)

    def times_one(self, eqn: Eqn) -> Atom | None:
        """x for `x * 1`, `1 * x` and `x / 1` (exact for every value, NaN and -0.0
        included); gradients are full of them (the seed cotangent is 1)."""
        out = eqn.outvars[0].aval
        x, y = eqn.invars
        pairs = [(x, y), (y, x)] if eqn.primitive.name == "mul" else [(x, y)]
        for value, factor in pairs:
            one = _is_one(factor) or factor in self.ones
            if one and value.aval.shape == out.shape and value.aval.dtype == out.dtype:
                return value
        return None

    def inline(self, eqn: Eqn, inner: ClosedJaxpr) -> None:
        """Splice the inner jaxpr in, with fresh variables (it may be inlined twice)."""
        j = inner.jaxpr
        outer_env = self.env
        self.env = dict(zip(j.invars, eqn.invars))
        for var, value in zip(j.constvars, inner.consts):
            if np.shape(value) == ():
                self.env[var] = literal(value, var.aval.dtype)
            else:
                fresh = Var(var.aval)
                self.constvars.append(fresh)
                self.constvals.append(value)
                self.env[var] = fresh
        for inner_eqn in j.eqns:
            fresh_outs = [Var(v.aval) for v in inner_eqn.outvars]
            self.env.update(zip(inner_eqn.outvars, fresh_outs))
            renamed = Eqn(inner_eqn.primitive, [self.read(a) for a in inner_eqn.invars],
                          inner_eqn.params, fresh_outs)
            # Visiting may forward or fold the equation: read its results back after.
            inner_env, self.env = self.env, outer_env
            self.visit(renamed)
            resolved = [self.read(v) for v in fresh_outs]
            self.env = inner_env
            self.env.update(zip(inner_eqn.outvars, resolved))
        results = [self.read(a) for a in j.outvars]
        self.env = outer_env
        self.env.update(zip(eqn.outvars, results))

    def fold(self, eqn: Eqn) -> list[Literal] | None:
        """Scalar literals in, scalar results out: evaluate now."""
        if eqn.primitive.name in _HIGHER_ORDER or eqn.primitive.impl is None:
            return None
        if not all(isinstance(a, Literal) for a in eqn.invars):
            return None
        if any(v.aval.shape != () for v in eqn.outvars):
            return None
        if not eqn.invars:
            return None
        if eqn.primitive.name == "div" and _maybe_count(eqn.invars[1]):
            return None  # 1 / N stays a division: see `sizes.py`, N is written from sizes
        try:
            with np.errstate(all="ignore"):
                outs = eqn.primitive.impl(*[a.val for a in eqn.invars], **eqn.params)
        except Exception:  # leave it to run (and raise) at run time
            return None
        outs = outs if eqn.primitive.multiple_results else [outs]
        return [literal(o, v.aval.dtype) for o, v in zip(outs, eqn.outvars)]

    def key(self, eqn: Eqn) -> tuple | None:
        if eqn.primitive.name in _HIGHER_ORDER:
            return None
        params = _params_key(eqn.params)
        if params is None:
            return None
        operands = tuple(_literal_key(a) if isinstance(a, Literal) else a for a in eqn.invars)
        return (eqn.primitive, operands, params)

    def result(self) -> ClosedJaxpr:
        src = self.source
        outvars = [self.read(a) for a in src.outvars]
        jaxpr = Jaxpr(self.constvars, list(src.invars), outvars, self.eqns)
        jaxpr, used = dce_jaxpr(absorb_transposes(jaxpr))
        consts = [c for c, u in zip(self.constvals, used) if u]
        return ClosedJaxpr(jaxpr, consts)


def _is_one(atom: Atom) -> bool:
    return isinstance(atom, Literal) and atom.aval.dtype != np.bool_ and atom.val == 1


def _maybe_count(atom: Literal) -> bool:
    """An integral float constant above 1: perhaps the number of elements of a mean."""
    if atom.aval.dtype.kind != "f":
        return False
    value = float(atom.val)
    return value > 1 and value.is_integer()


def _forward(eqn: Eqn) -> Atom | None:
    """The operand, if this equation returns it unchanged."""
    name, params = eqn.primitive.name, eqn.params
    if len(eqn.outvars) != 1 or not eqn.invars:
        return None
    x, out = eqn.invars[0], eqn.outvars[0].aval
    same_type = x.aval.shape == out.shape and x.aval.dtype == out.dtype
    if not same_type:
        return None
    if name in ("stop_gradient", "convert_element_type", "reshape", "squeeze",
                "expand_dims", "broadcast_in_dim"):
        return x
    if name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod") and not params["axes"]:
        return x
    if name == "transpose" and tuple(params["permutation"]) == tuple(range(out.ndim)):
        return x
    if name == "rev" and all(x.aval.shape[d] <= 1 for d in params["dimensions"]):
        return x
    if name == "slice" and all(s == 0 for s in params["start_indices"]):
        return x
    if name == "pad" and all(c == (0, 0, 0) for c in params["padding_config"]):
        return x
    return None


def _as_reshape(eqn: Eqn) -> Eqn:
    """A transpose or broadcast that leaves the elements in memory order (it only moves
    or adds size-1 axes) is a reshape, which costs nothing on flat buffers."""
    from ..lax.lax import reshape_p

    name = eqn.primitive.name
    if name not in ("transpose", "broadcast_in_dim") or not isinstance(eqn.invars[0], Var):
        return eqn
    src, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
    if name == "transpose":
        moved = [p for p in eqn.params["permutation"] if src[p] != 1]
        same_order = moved == sorted(moved)
    else:
        same_order = int(np.prod(src, dtype=np.int64)) == int(np.prod(out, dtype=np.int64))
    if not same_order:
        return eqn
    return Eqn(reshape_p, eqn.invars, {"new_sizes": tuple(out)}, eqn.outvars)


# ----------------------------------------------------------------------------- transposes


def absorb_transposes(jaxpr: Jaxpr) -> Jaxpr:
    """Fold `transpose` equations into the `dot_general`s next to them.

    * An operand `x = transpose(a, perm)` of a dot_general is replaced by `a`, with the
      dimension numbers renumbered through `perm`, when that keeps the order of x's free
      axes (which order the result).
    * `transpose(dot_general(x, y), perm)` whose perm swaps the x-free and y-free blocks
      of the result is `dot_general(y, x)`, when the product has no other use.
    The replaced transposes become dead code.
    """
    defined: dict[Var, Eqn] = {v: e for e in jaxpr.eqns for v in e.outvars}
    uses: dict[Var, int] = {}
    for atom in [*(a for e in jaxpr.eqns for a in e.invars), *jaxpr.outvars]:
        if isinstance(atom, Var):
            uses[atom] = uses.get(atom, 0) + 1
    eqns = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            eqn = _dot_through_transposes(eqn, defined)
        elif eqn.primitive.name == "transpose":
            eqn = _transpose_of_dot(eqn, defined, uses)
            if eqn.primitive.name == "dot_general":  # its operands may be transposes too
                eqn = _dot_through_transposes(eqn, defined)
        eqns.append(eqn)
    return Jaxpr(jaxpr.constvars, jaxpr.invars, jaxpr.outvars, eqns)


def _dot_through_transposes(eqn: Eqn, defined: dict[Var, Eqn]) -> Eqn:
    (xc, yc), (xb, yb) = eqn.params["dimension_numbers"]
    operands, dims = list(eqn.invars), [[xc, xb], [yc, yb]]
    for side in (0, 1):
        source = defined.get(operands[side]) if isinstance(operands[side], Var) else None
        if source is None or source.primitive.name != "transpose":
            continue
        perm = source.params["permutation"]
        contract, batch = dims[side]
        free = [i for i in range(len(perm)) if i not in contract and i not in batch]
        if [perm[i] for i in free] != sorted(perm[i] for i in free):
            continue  # the result's axes would come out in another order
        operands[side] = source.invars[0]
        dims[side] = [tuple(perm[i] for i in contract), tuple(perm[i] for i in batch)]
    if operands == list(eqn.invars):
        return eqn
    numbers = ((dims[0][0], dims[1][0]), (dims[0][1], dims[1][1]))
    return Eqn(eqn.primitive, operands, dict(eqn.params, dimension_numbers=numbers),
               eqn.outvars)


def _transpose_of_dot(eqn: Eqn, defined: dict[Var, Eqn], uses: dict[Var, int]) -> Eqn:
    (operand,) = eqn.invars
    dot = defined.get(operand) if isinstance(operand, Var) else None
    if dot is None or dot.primitive.name != "dot_general" or uses.get(operand, 0) != 1:
        return eqn
    (xc, yc), (xb, yb) = dot.params["dimension_numbers"]
    x, y = dot.invars
    nb = len(xb)
    nx = x.aval.ndim - len(xc) - nb
    ny = y.aval.ndim - len(yc) - nb
    swapped = [*range(nb), *range(nb + nx, nb + nx + ny), *range(nb, nb + nx)]
    if tuple(eqn.params["permutation"]) != tuple(swapped):
        return eqn
    numbers = ((tuple(yc), tuple(xc)), (tuple(yb), tuple(xb)))
    return Eqn(dot.primitive, [y, x], dict(dot.params, dimension_numbers=numbers),
               eqn.outvars)
