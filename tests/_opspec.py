"""The op-spec table machinery shared by tests/test_numpy.py and tests/test_lax.py.

An `OpSpec` names a function under test, its NumPy reference, how to sample its
arguments (inside the function's smooth domain), the dtypes and the shape grid.
`cases(specs)` crosses the table with shapes and dtypes into pytest parameters,
and the `check_*` functions are the per-case checks:

* `check_values`: the eager result is a NumPy value equal to the reference, with the
  reference's shape and dtype, and the inputs are not mutated;
* `check_jaxpr`: `make_jaxpr` type-checks, its output avals agree with the eager
  result (abstract evaluation agrees with the impl), and `eval_jaxpr` agrees too;
* `check_derivatives`: `check_grads` at the spec's order on the representative
  shape (the first of the grid), order 1 elsewhere.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import fgrad
from fgrad.core import eval_jaxpr
from fgrad.ir import Jaxpr, Literal, Var
from fgrad.ir import check_jaxpr as type_check_jaxpr
from fgrad.test_util import check_grads

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

Shape = tuple[int, ...]
Sampler = Callable[[np.random.Generator, Shape, np.dtype], np.ndarray]

# The shape grid. The first entry of each grid is the representative one, where the
# derivative checks run at the spec's full order (2 by default).
UNARY_SHAPES: list[tuple[Shape, ...]] = [
    ((3, 4),), ((),), ((3,),), ((3, 1),), ((1, 4),), ((2, 3, 4),),
]
EQUAL_PAIRS: list[tuple[Shape, ...]] = [(s, s) for (s,) in UNARY_SHAPES]
BINARY_SHAPES: list[tuple[Shape, ...]] = [
    ((3, 4), (3, 1)),  # representative: broadcasting in the second operand
    *EQUAL_PAIRS,
    ((3, 1), (1, 4)),
    ((), (2, 3, 4)),
    ((4,), (2, 3, 4)),
    ((2, 3, 4), (3, 1)),
    ((3,), ()),
]
TERNARY_SHAPES: list[tuple[Shape, ...]] = [
    ((3, 4), (3, 1), (1, 4)),
    *[(s, s, s) for (s,) in UNARY_SHAPES],
    ((2, 3, 4), (3, 4), ()),
    ((3, 1), (1, 4), (3, 4)),
    ((), (3,), (2, 1, 3)),
]

# Tolerances of the value comparisons (rtol, and atol for results near zero).
VALUE_TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}
REDUCTION_TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One row of the table.

    `fn` is the function under test and `ref` its NumPy reference, both called on the
    same sampled arguments. `sampler` is one sampler for every argument or a tuple with
    one per argument. `shapes` is the grid (tuples of per-argument shapes, the first
    one representative); `when(shapes)` filters it for variants that need, say, a
    certain rank. `grad_when(shapes)` excludes points where the function is not
    differentiable (std of a single element). `tol` overrides `VALUE_TOL`,
    `grad_tol` passes atol/rtol to check_grads. `joint`, if given, samples all the
    arguments together (for domains that couple them, like fmod's).
    """

    name: str
    fn: Callable
    nargs: int
    sampler: Sampler | tuple[Sampler, ...]
    dtypes: tuple[np.dtype, ...] = FLOATS
    tol: dict | None = None
    grad: bool = True
    order: int = 2
    modes: tuple[str, ...] = ("fwd", "rev")
    ref: Callable | None = None
    shapes: Sequence[tuple[Shape, ...]] | None = None
    when: Callable[..., bool] | None = None
    grad_when: Callable[..., bool] | None = None
    grad_tol: float | None = None
    joint: Callable[..., tuple] | None = None  # (rng, shapes, dtype) -> all the arguments

    def grid(self) -> list[tuple[Shape, ...]]:
        shapes = self.shapes
        if shapes is None:
            shapes = {1: UNARY_SHAPES, 2: BINARY_SHAPES, 3: TERNARY_SHAPES}[self.nargs]
        return [s for s in shapes if self.when is None or self.when(*s)]

    def samplers(self) -> tuple[Sampler, ...]:
        if isinstance(self.sampler, tuple):
            assert len(self.sampler) == self.nargs, self.name
            return self.sampler
        return (self.sampler,) * self.nargs

    def args(self, shapes: tuple[Shape, ...], dtype: np.dtype) -> tuple[np.ndarray, ...]:
        """Deterministic arguments for this case (seeded by the case's id)."""
        seed = zlib.crc32(f"{self.name}|{shapes}|{np.dtype(dtype).name}".encode())
        rng = np.random.default_rng(seed)
        if self.joint is not None:
            return tuple(self.joint(rng, shapes, np.dtype(dtype)))
        return tuple(s(rng, shape, np.dtype(dtype)) for s, shape in zip(self.samplers(), shapes))


def shape_id(shapes: tuple[Shape, ...]) -> str:
    return "_".join("x".join(map(str, s)) if s else "scalar" for s in shapes)


def cases(specs: Sequence[OpSpec], *, grad_only: bool = False) -> list[Any]:
    """pytest parameters (spec, shapes, dtype, representative) over the grid, with ids."""
    out = []
    for spec in specs:
        if grad_only and not spec.grad:
            continue
        for i, shapes in enumerate(spec.grid()):
            if grad_only and spec.grad_when is not None and not spec.grad_when(*shapes):
                continue
            for dtype in spec.dtypes:
                out.append(pytest.param(
                    spec, shapes, np.dtype(dtype), i == 0,
                    id=f"{spec.name}-{shape_id(shapes)}-{np.dtype(dtype).name}",
                ))
    return out


def check_unique_names(specs: Sequence[OpSpec]) -> None:
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"duplicate spec names: {dupes}"


# ============================================================================ samplers


def uniform(lo: float, hi: float) -> Sampler:
    def sample(rng, shape, dtype):
        return rng.uniform(lo, hi, shape).astype(dtype)

    return sample


def away_from_zero(lo: float = 0.5, hi: float = 2.0) -> Sampler:
    """Magnitudes in [lo, hi], either sign (for abs, sign, divisors, ...)."""

    def sample(rng, shape, dtype):
        return (rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)

    return sample


def bands(*intervals: tuple[float, float]) -> Sampler:
    """Values drawn from a random one of the given intervals (to stay off kinks)."""

    def sample(rng, shape, dtype):
        which = rng.integers(0, len(intervals), shape)
        lo = np.array([a for a, _ in intervals])[which]
        hi = np.array([b for _, b in intervals])[which]
        return (lo + (hi - lo) * rng.uniform(0, 1, shape)).astype(dtype)

    return sample


def grid_offset(offset: float) -> Sampler:
    """An integer in [-2, 2] plus offset plus noise in [0, 0.3): two samplers with offsets
    0 and 0.5 never come within 0.2 of each other (max/min without ties)."""

    def sample(rng, shape, dtype):
        return (rng.integers(-2, 3, shape) + offset + rng.uniform(0, 0.3, shape)).astype(dtype)

    return sample


def distinct(step: float = 0.5, center: bool = True) -> Sampler:
    """All elements different, at least 0.9 * step apart (reductions without ties)."""

    def sample(rng, shape, dtype):
        n = int(np.prod(shape, dtype=np.int64))
        values = rng.permutation(n) * step + rng.uniform(0, 0.1 * step, n)
        if center:
            values -= step * (n - 1) / 2
        return values.reshape(shape).astype(dtype)

    return sample


def distinct_nonzero(step: float = 0.5) -> Sampler:
    """Distinct magnitudes >= 0.5 with random signs (norms with abs and max)."""

    def sample(rng, shape, dtype):
        n = int(np.prod(shape, dtype=np.int64))
        mags = 0.5 + rng.permutation(n) * step + rng.uniform(0, 0.1 * step, n)
        return (mags * rng.choice([-1.0, 1.0], n)).reshape(shape).astype(dtype)

    return sample


def distinct_sums() -> Sampler:
    """Magnitudes 0.5 + a_i + b_j (+ noise) with distinct row offsets a (step 1) and column
    offsets b (step 0.6), random signs: over the last two axes, the sums of |x| along rows
    and along columns are all well apart (matrix norms 1 and inf without ties)."""

    def sample(rng, shape, dtype):
        if len(shape) < 2:
            return distinct_nonzero()(rng, shape, dtype)
        m, n = shape[-2:]
        a = rng.permutation(m)[:, None] * 1.0
        b = rng.permutation(n)[None, :] * 0.6
        mags = 0.5 + a + b + rng.uniform(0, 0.05, shape)
        return (mags * rng.choice([-1.0, 1.0], shape)).astype(dtype)

    return sample


def with_zeros(base: Sampler, count: int = 1) -> Sampler:
    """`base` with `count` elements set to exactly zero (where the shape has room)."""

    def sample(rng, shape, dtype):
        x = np.array(base(rng, shape, dtype))
        n = x.size
        if n:
            idx = rng.choice(n, size=min(count, n), replace=False)
            x.reshape(-1)[idx] = 0
        return x

    return sample


def small_ints(lo: int = -2, hi: int = 2) -> Sampler:
    """Integer-valued floats (ties and exact zeros are likely: comparisons, logic)."""

    def sample(rng, shape, dtype):
        return rng.integers(lo, hi + 1, shape).astype(dtype)

    return sample


def bools(p: float = 0.5) -> Sampler:
    def sample(rng, shape, dtype):
        return np.asarray(rng.uniform(0, 1, shape) < p)

    return sample


def int_values(lo: int, hi: int, dtype: Any) -> Sampler:
    """Integers of a fixed dtype whatever the case's float dtype."""

    def sample(rng, shape, _dtype):
        return rng.integers(lo, hi + 1, shape).astype(dtype)

    return sample


def nonfinite(base: Sampler) -> Sampler:
    """`base` with some elements replaced by inf, -inf and nan."""

    def sample(rng, shape, dtype):
        x = np.array(base(rng, shape, dtype))
        special = np.array([np.inf, -np.inf, np.nan], dtype)
        mask = rng.uniform(0, 1, shape) < 0.4
        x[mask] = special[rng.integers(0, 3, shape)][mask]
        return x

    return sample


# ============================================================================ checks


def _is_numpy_value(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def assert_same(got: Any, want: Any, rtol: float, atol: float | None = None,
                what: str = "") -> None:
    """Same pytree structure, and per leaf a NumPy value of the same shape and dtype whose
    values agree (exactly for non-floats, NaNs in the same places)."""
    g_leaves = got if isinstance(got, (list, tuple)) else [got]
    w_leaves = want if isinstance(want, (list, tuple)) else [want]
    assert len(g_leaves) == len(w_leaves), f"{what}: {len(g_leaves)} results, want {len(w_leaves)}"
    for g, w in zip(g_leaves, w_leaves):
        assert _is_numpy_value(g), f"{what}: got a {type(g).__name__}, not a NumPy value"
        w = np.asarray(w)
        assert np.shape(g) == w.shape, f"{what}: shape {np.shape(g)}, NumPy gives {w.shape}"
        assert g.dtype == w.dtype, f"{what}: dtype {g.dtype}, NumPy gives {w.dtype}"
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol if atol is None else atol,
                                       equal_nan=True, err_msg=what)
        else:
            np.testing.assert_array_equal(g, w, err_msg=what)


def _value_tol(spec: OpSpec, dtype: np.dtype) -> float:
    table = spec.tol or VALUE_TOL
    return table.get(np.dtype(dtype), VALUE_TOL.get(np.dtype(dtype), 0.0))


def check_values(spec: OpSpec, shapes: tuple[Shape, ...], dtype: np.dtype) -> None:
    args = spec.args(shapes, dtype)
    saved = [np.array(a, copy=True) for a in args]
    with np.errstate(all="ignore"):
        want = spec.ref(*args)
    got = spec.fn(*args)
    assert_same(got, want, _value_tol(spec, dtype), what=f"{spec.name} against NumPy")
    for a, s in zip(args, saved):
        np.testing.assert_array_equal(a, s, err_msg=f"{spec.name} mutated an input")


def check_jaxpr_agrees(fn: Callable, args: Sequence[Any], rtol: float = 0.0,
                       what: str = "") -> None:
    """make_jaxpr type-checks; its out avals match the eager result's shapes and dtypes,
    and evaluating it reproduces the eager result."""
    eager = fn(*args)
    eager_leaves = list(eager) if isinstance(eager, (list, tuple)) else [eager]
    closed = fgrad.make_jaxpr(fn)(*args)
    type_check_jaxpr(closed.jaxpr)
    in_avals = [(a.shape, a.dtype) for a in closed.in_avals]
    assert in_avals == [(np.shape(a), np.asarray(a).dtype) for a in args], what
    out_avals = [(a.shape, a.dtype) for a in closed.out_avals]
    assert out_avals == [(np.shape(e), np.asarray(e).dtype) for e in eager_leaves], (
        f"{what}: abstract evaluation gives {out_avals}, the eager result is "
        f"{[(np.shape(e), np.asarray(e).dtype) for e in eager_leaves]}"
    )
    outs = eval_jaxpr(closed.jaxpr, closed.consts, *args)
    assert_same([np.asarray(o) for o in outs], eager_leaves, rtol=rtol, atol=rtol,
                what=f"{what}: eval_jaxpr against eager")
    check_impls_match_avals(closed.jaxpr, closed.consts, args, what)


def check_impls_match_avals(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any],
                            what: str = "") -> None:
    """Run every equation's NumPy impl and compare each result's shape and dtype with the
    type its outvar was given by abstract evaluation (equation by equation, not just at
    the outputs)."""
    env: dict[Var, Any] = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))

    def read(atom):
        return atom.val if isinstance(atom, Literal) else env[atom]

    for eqn in jaxpr.eqns:
        outs = eqn.primitive.impl(*[read(a) for a in eqn.invars], **eqn.params)
        outs = outs if eqn.primitive.multiple_results else [outs]
        for var, out in zip(eqn.outvars, outs):
            got = (np.shape(out), np.asarray(out).dtype)
            assert got == (var.aval.shape, var.aval.dtype), (
                f"{what}: {eqn.primitive.name}{eqn.params}: impl gives {got}, abstract "
                f"evaluation {var.aval}"
            )
            env[var] = out


def check_jaxpr(spec: OpSpec, shapes: tuple[Shape, ...], dtype: np.dtype) -> None:
    args = spec.args(shapes, dtype)
    # The same primitives on the same values: only accumulation order could differ.
    check_jaxpr_agrees(spec.fn, args, rtol=_value_tol(spec, dtype), what=spec.name)


def check_derivatives(spec: OpSpec, shapes: tuple[Shape, ...], dtype: np.dtype,
                      representative: bool) -> None:
    args = spec.args(shapes, dtype)
    order = spec.order if representative else 1
    kwargs = {}
    if spec.grad_tol is not None:
        kwargs = {"atol": spec.grad_tol, "rtol": spec.grad_tol}
    check_grads(spec.fn, args, order=order, modes=spec.modes, **kwargs)
