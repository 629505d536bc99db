"""Shapes and data movement in fgrad.numpy: split, array_split, tile, repeat, flip, pad,
roll, diagonal, trace, triu, tril, cumsum, cumprod, sort, argsort (and all/any, where).

Values against NumPy for the same arguments, `check_grads` in both modes at order 2 on
each spec's first shape (order 1 on the others), float32 and float64, `make_jaxpr`
type checks against eager, `vmap` against a loop, and bad input.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from _opspec import (
    FLOATS,
    REDUCTION_TOL,
    OpSpec,
    assert_same,
    bools,
    cases,
    check_derivatives,
    check_jaxpr,
    check_unique_names,
    check_values,
    distinct,
    int_values,
    small_ints,
    uniform,
    with_zeros,
)

import fgrad
import fgrad.numpy as fnp
from fgrad import make_jaxpr, vmap
from fgrad.errors import ConcretizationError
from fgrad.ir import check_jaxpr as type_check
from fgrad.test_util import check_grads
from fgrad.tree_util import tree_leaves, tree_map

NORMAL = uniform(-2.0, 2.0)
I32, I64 = np.dtype(np.int32), np.dtype(np.int64)
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
BOOL = np.dtype(np.bool_)


def _same(name, fname, shapes, sampler=NORMAL, tol=None, suffix=None, **kwargs):
    """fnp.fname and np.fname with the same keyword arguments, on one array."""
    fn, ref = getattr(fnp, fname), getattr(np, fname)
    return OpSpec(f"{fname}_{suffix or name}", lambda x: fn(x, **kwargs), 1, sampler,
                  ref=lambda x: ref(x, **kwargs), shapes=[(s,) for s in shapes], tol=tol)


S2, S3 = (3, 4), (2, 3, 4)

SPLIT_SPECS = [
    _same("sections", "split", [(4, 3), (6,), (2, 4, 2)], indices_or_sections=2),
    _same("sections_axis-1", "split", [S2, (2, 3, 2)], indices_or_sections=2, axis=-1),
    _same("indices", "split", [(5, 3), (6,)], indices_or_sections=[1, 3]),
    _same("indices_odd", "split", [(5, 3), (4, 2)], indices_or_sections=[-1, 10, 2]),
    _same("indices_empty", "split", [S2], indices_or_sections=[], axis=1),
    _same("sections", "array_split", [(5, 2), (7,), (2, 3, 4)], indices_or_sections=3),
    _same("more_sections_than_elements", "array_split", [(2, 3)], indices_or_sections=4),
]

MOVE_SPECS = [
    _same("int", "tile", [S2, (3,), ()], reps=2),
    _same("longer_reps", "tile", [S2, (3,), ()], reps=(2, 1, 3)),
    _same("shorter_reps", "tile", [S3, S2], reps=(2, 3)),
    _same("zero", "tile", [S2], reps=(0, 2)),
    _same("int", "repeat", [S2, (3,), ()], repeats=2),
    _same("int_axis0", "repeat", [S2, (3,)], repeats=3, axis=0),
    _same("counts_axis-1", "repeat", [S2, (2, 3, 4)], repeats=[2, 0, 1, 3], axis=-1),
    _same("counts_flat", "repeat", [(2, 2), (4,)], repeats=[1, 3, 0, 2]),
    _same("one_count_list", "repeat", [S2], repeats=[2], axis=1),
    _same("zero", "repeat", [S2], repeats=0, axis=0),
    _same("all", "flip", [S2, (3,), (), S3]),
    _same("axis0", "flip", [S2, (3,)], axis=0),
    _same("axes", "flip", [S3], axis=(0, -1)),
    _same("", "fliplr", [S2, S3], suffix="2d"),
    _same("", "flipud", [S2, (3,)], suffix="1d"),
    _same("int", "roll", [S2, (5,), ()], shift=2),
    _same("negative_axis", "roll", [S2, S3], shift=-5, axis=-1),
    _same("tuple", "roll", [S2, S3], shift=(1, 7), axis=(0, 1)),
    _same("repeated_axis", "roll", [S2], shift=(1, 2), axis=(1, 1)),
    _same("empty_axis", "roll", [(3, 0)], shift=1, axis=1),
]

PAD_SPECS = [
    _same("constant_int", "pad", [S2, (3,), S3], pad_width=1),
    _same("constant_pairs", "pad", [S2, (2, 2, 2)], pad_width=(1, 2), constant_values=1.5),
    _same("constant_per_axis", "pad", [S2], pad_width=((0, 1), (2, 0)),
          constant_values=((1, 2), (3, 4))),
    _same("edge", "pad", [S2, (3,), S3], pad_width=((1, 2),), mode="edge"),
    _same("edge_per_axis", "pad", [S2], pad_width=((0, 2), (3, 1)), mode="edge"),
    _same("reflect", "pad", [S2, (1,), (5,)], pad_width=3, mode="reflect"),
    _same("symmetric", "pad", [S2, (2,)], pad_width=(2, 3), mode="symmetric"),
    _same("wrap", "pad", [S2, (3,)], pad_width=(4, 1), mode="wrap"),
    _same("zero_width", "pad", [S2], pad_width=0, mode="edge"),
    _same("size0", "pad", [(0, 2)], pad_width=1),
    OpSpec("pad_traced_value", lambda x, c: fnp.pad(x, ((1, 0), (2, 1)), constant_values=c),
           2, NORMAL, ref=lambda x, c: np.pad(x, ((1, 0), (2, 1)), constant_values=c),
           shapes=[(S2, ()), ((1, 1), ())]),
]

DIAG_SPECS = [
    _same("", "diagonal", [S2, (4, 3), (2, 2), S3], suffix="default"),
    _same("offset1", "diagonal", [S2, (4, 3), S3], offset=1),
    _same("offset-2", "diagonal", [S2, (4, 3), S3], offset=-2),
    _same("offset_past", "diagonal", [S2], offset=5),
    _same("axes", "diagonal", [S3, (3, 2, 3)], axis1=-1, axis2=0),
    _same("axes_offset", "diagonal", [S3], axis1=2, axis2=1, offset=-1),
    _same("", "trace", [S2, (4, 3), S3], suffix="default", tol=REDUCTION_TOL),
    _same("offset_axes", "trace", [S3], offset=1, axis1=1, axis2=2, tol=REDUCTION_TOL),
    _same("", "tril", [S2, (4, 3), S3, (3,)], suffix="default"),
    _same("k1", "tril", [S2, S3], k=1),
    _same("k-2", "triu", [S2, S3, (4,)], k=-2),
    _same("", "triu", [S2, (4, 3)], suffix="default"),
]

_ZEROS = with_zeros(uniform(0.5, 1.5), 1)
_TWO_ZEROS = with_zeros(uniform(0.5, 1.5), 2)
CUMULATIVE_SPECS = [
    _same("flat", "cumsum", [S2, (), (5,)], tol=REDUCTION_TOL),
    _same("axis0", "cumsum", [S2, S3, (3,)], tol=REDUCTION_TOL, axis=0),
    _same("axis-1", "cumsum", [S3, (0, 2)], tol=REDUCTION_TOL, axis=-1),
    _same("dtype_f64", "cumsum", [S2], tol=REDUCTION_TOL, axis=1, dtype=np.float64),
    _same("flat", "cumprod", [S2, (), (5,)], uniform(0.5, 1.5), tol=REDUCTION_TOL),
    _same("axis-1", "cumprod", [S2, S3, (1,), (2, 0)], uniform(0.5, 1.5), tol=REDUCTION_TOL,
          axis=-1),
    _same("one_zero", "cumprod", [(6,), S2], _ZEROS, tol=REDUCTION_TOL),
    _same("two_zeros_axis0", "cumprod", [(5, 2), S2], _TWO_ZEROS, tol=REDUCTION_TOL, axis=0),
    _same("two_zeros_axis1", "cumprod", [S2, S3], _TWO_ZEROS, tol=REDUCTION_TOL, axis=1),
]

SORT_SPECS = [
    _same("", "sort", [S2, (5,), S3], distinct(), suffix="default"),
    _same("axis0", "sort", [S2, S3], distinct(), axis=0),
    _same("flat", "sort", [S2], distinct(), axis=None),
    _same("kind", "sort", [(5,)], distinct(), kind="stable"),
]

DIFFERENTIABLE = (SPLIT_SPECS + MOVE_SPECS + PAD_SPECS + DIAG_SPECS + CUMULATIVE_SPECS
                  + SORT_SPECS)


def _nondiff(name, fn, ref, sampler, dtypes=FLOATS, shapes=((S2,),), nargs=1):
    return OpSpec(name, fn, nargs, sampler, ref=ref, grad=False, dtypes=dtypes,
                  shapes=list(shapes))


NONDIFF_SPECS = [
    # ties: argsort is stable (NumPy's kind="stable"), sort values match
    _nondiff("argsort_ties", fnp.argsort, lambda x: np.argsort(x, kind="stable"), small_ints(),
             shapes=[(S2,), ((7,),), (S3,)]),
    _nondiff("argsort_ties_axis0", lambda x: fnp.argsort(x, axis=0),
             lambda x: np.argsort(x, axis=0, kind="stable"), small_ints(), shapes=[(S2,)]),
    _nondiff("argsort_flat", lambda x: fnp.argsort(x, axis=None),
             lambda x: np.argsort(x, axis=None, kind="stable"), small_ints()),
    _nondiff("sort_ties", fnp.sort, np.sort, small_ints(), shapes=[(S2,), ((7,),)]),
    _nondiff("sort_nan", fnp.sort, np.sort,
             lambda rng, s, d: np.where(rng.uniform(size=s) < 0.3, np.nan,
                                        rng.normal(size=s)).astype(d)),
    _nondiff("sort_int32", fnp.sort, np.sort, int_values(-5, 5, I32), dtypes=(I32,)),
    _nondiff("sort_bool", fnp.sort, np.sort, bools(), dtypes=(BOOL,)),
    _nondiff("cumsum_int32", fnp.cumsum, np.cumsum, int_values(-5, 5, I32), dtypes=(I32,)),
    _nondiff("cumsum_bool_axis0", lambda x: fnp.cumsum(x, 0), lambda x: np.cumsum(x, 0),
             bools(), dtypes=(BOOL,)),
    _nondiff("cumprod_int32_axis1", lambda x: fnp.cumprod(x, 1), lambda x: np.cumprod(x, 1),
             int_values(-3, 3, I32), dtypes=(I32,)),
    _nondiff("cumprod_dtype", lambda x: fnp.cumprod(x, dtype=np.float32),
             lambda x: np.cumprod(x, dtype=np.float32), int_values(-3, 3, I64), dtypes=(I64,)),
    _nondiff("trace_int32", fnp.trace, np.trace, int_values(-5, 5, I32), dtypes=(I32,)),
    _nondiff("repeat_int32", lambda x: fnp.repeat(x, [1, 0, 2], 0),
             lambda x: np.repeat(x, [1, 0, 2], 0), int_values(-5, 5, I32), dtypes=(I32,)),
    _nondiff("pad_edge_bool", lambda x: fnp.pad(x, 1, "edge"), lambda x: np.pad(x, 1, "edge"),
             bools(), dtypes=(BOOL,)),
    _nondiff("pad_int_constant_float", lambda x: fnp.pad(x, 1, constant_values=2.7),
             lambda x: np.pad(x, 1, constant_values=2.7), int_values(-5, 5, I64), dtypes=(I64,)),
    _nondiff("tril_bool", fnp.tril, np.tril, bools(), dtypes=(BOOL,)),
    _nondiff("roll_int32", lambda x: fnp.roll(x, 1), lambda x: np.roll(x, 1),
             int_values(-5, 5, I32), dtypes=(I32,)),
    _nondiff("all_empty", lambda x: fnp.all(x[:0]), lambda x: np.all(x[:0]), NORMAL),
    _nondiff("any_empty_axis", lambda x: fnp.any(x[:, :0], axis=1),
             lambda x: np.any(x[:, :0], axis=1), NORMAL),
    _nondiff("any_nan", lambda x: fnp.any(x * np.nan), lambda x: np.any(x * np.nan), NORMAL),
    _nondiff("all_axes_keepdims", lambda x: fnp.all(x > 0, axis=(0, -1), keepdims=True),
             lambda x: np.all(x > 0, axis=(0, -1), keepdims=True), NORMAL, shapes=[(S3,)]),
]

ALL_SPECS = DIFFERENTIABLE + NONDIFF_SPECS
check_unique_names(ALL_SPECS)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(ALL_SPECS))
def test_values(spec, shapes, dtype, representative):
    check_values(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(ALL_SPECS))
def test_jaxpr(spec, shapes, dtype, representative):
    check_jaxpr(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative",
                         cases(DIFFERENTIABLE, grad_only=True))
def test_grads(spec, shapes, dtype, representative):
    check_derivatives(spec, shapes, dtype, representative)


def test_sort_with_ties_differentiates_through_the_permutation():
    """At a tie sort is not differentiable; fgrad's derivative is that of the stable
    permutation: each output slot takes the tangent of the element placed there."""
    x = np.array([2.0, 1.0, 2.0, 0.5])
    t = np.array([10.0, 20.0, 30.0, 40.0])
    out, tangent = fgrad.jvp(fnp.sort, (x,), (t,))
    np.testing.assert_array_equal(out, [0.5, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(tangent, [40.0, 20.0, 10.0, 30.0])
    g = fgrad.grad(lambda x: (fnp.sort(x) * np.arange(4.0)).sum())(x)
    np.testing.assert_array_equal(g, [2.0, 1.0, 3.0, 0.0])


def test_cumprod_with_zeros_exact_derivatives():
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])
    jac = fgrad.jacfwd(fnp.cumprod)(x)
    want = np.zeros((5, 5))
    for i in range(5):
        for k in range(i + 1):
            want[i, k] = np.prod(np.delete(x[:i + 1], k))
    np.testing.assert_array_equal(jac, want)
    np.testing.assert_array_equal(fgrad.jacrev(fnp.cumprod)(x), want)
    check_grads(fnp.cumprod, (x,), order=2)


def test_cumulative_of_empty_and_0d():
    for fn in (fnp.cumsum, fnp.cumprod):
        ref = getattr(np, fn.__name__)
        assert_same(fn(np.float32(2.0)), ref(np.float32(2.0)), 0.0)
        assert_same(fn(np.zeros((0, 3))), ref(np.zeros((0, 3))), 0.0)
        assert_same(fn(np.zeros((2, 0)), axis=1), ref(np.zeros((2, 0)), axis=1), 0.0)


def test_split_pieces_are_differentiable_separately():
    x = np.arange(12.0).reshape(4, 3)

    def f(x):
        a, b, c = fnp.split(x, [1, 3])
        return (a * 2).sum() + (b ** 2).sum() - c.sum()

    g = fgrad.grad(f)(x)
    np.testing.assert_array_equal(g, np.r_[np.full((1, 3), 2.0), 2 * x[1:3], -np.ones((1, 3))])


# ============================================================================ vmap


def _loop(fn, args, in_axes):
    size = next(np.shape(a)[ax] for a, ax in zip(args, in_axes) if ax is not None)
    outs = [fn(*[a if ax is None else np.take(a, b, axis=ax) for a, ax in zip(args, in_axes)])
            for b in range(size)]
    return tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *outs)


def _vmap_spec(name, fn, shape, sampler=NORMAL):
    return OpSpec(f"vmap_{name}", fn, 1, sampler, ref=fn, shapes=[(shape,)])


# Small specs, also in tests/test_vmap.py's table (cumsum and argsort batching rules).
VMAP_SPECS = [
    _vmap_spec("cumsum", lambda x: fnp.cumsum(x, axis=-1), S2),
    _vmap_spec("cumprod", lambda x: fnp.cumprod(x, axis=0), S2, _ZEROS),
    _vmap_spec("sort", lambda x: fnp.sort(x, axis=0), S2, distinct()),
    _vmap_spec("argsort", fnp.argsort, S2, small_ints()),
    _vmap_spec("pad_edge", lambda x: fnp.pad(x, ((1, 0), (0, 2)), "edge"), S2),
    _vmap_spec("repeat_counts", lambda x: fnp.repeat(x, [1, 0, 2], axis=0), S2),
    _vmap_spec("diagonal_trace", lambda x: (fnp.diagonal(x, 1), fnp.trace(x)), S3),
    _vmap_spec("split_tile_roll", lambda x: [fnp.tile(p, 2) for p in fnp.split(fnp.roll(
        x, 1, axis=-1), 2, axis=-1)], S2),
    _vmap_spec("tril_flip", lambda x: fnp.flip(fnp.tril(x, -1), -1), S3),
]


@pytest.mark.parametrize("spec", VMAP_SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("in_axis", [0, 1, -1])
def test_vmap_matches_loop(spec, in_axis):
    for dtype in FLOATS:
        rng = np.random.default_rng(zlib.crc32(f"{spec.name}{in_axis}".encode()))
        (shape,) = spec.grid()[0]
        xs = np.stack([spec.samplers()[0](rng, shape, dtype) for _ in range(3)], in_axis)
        got, want = vmap(spec.fn, in_axes=in_axis)(xs), _loop(spec.fn, [xs], [in_axis])
        for g, w in zip(tree_leaves(got), tree_leaves(want)):
            assert_same(g, w, REDUCTION_TOL[dtype], what=f"{spec.name} in_axes={in_axis}")
        type_check(make_jaxpr(vmap(spec.fn, in_axes=in_axis))(xs).jaxpr)


def test_pad_with_batched_constant_value():
    xs, cs = np.ones((3, 2, 2)), np.array([1.0, 2.0, 3.0])
    f = lambda x, c: fnp.pad(x, 1, constant_values=c)  # noqa: E731
    got = vmap(f)(xs, cs)
    np.testing.assert_array_equal(got, np.stack([np.pad(x, 1, constant_values=c)
                                                 for x, c in zip(xs, cs)]))
    got = vmap(f, in_axes=(None, 0))(xs[0], cs)
    np.testing.assert_array_equal(got[2], np.pad(xs[0], 1, constant_values=3.0))


# ============================================================================ errors

X = np.arange(12.0).reshape(3, 4)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: fnp.split(X, 3, axis=1), ValueError, "does not result in an equal division"),
    (lambda: fnp.split(X, 0), ValueError, "equal division"),
    (lambda: fnp.array_split(X, 0), ValueError, "larger than 0"),
    (lambda: fnp.split(X, 2, axis=2), np.exceptions.AxisError, "axis 2 is out of bounds"),
    (lambda: fnp.split(X, [1.5]), TypeError, "integers"),
    (lambda: fnp.tile(X, (-1, 2)), ValueError, "negative"),
    (lambda: fnp.repeat(X, -1), ValueError, "negative"),
    (lambda: fnp.repeat(X, [1, 2], axis=0), ValueError, "could not be broadcast"),
    (lambda: fnp.repeat(X, 1.5), TypeError, "integers"),
    (lambda: fnp.flip(X, 2), np.exceptions.AxisError, "out of bounds"),
    (lambda: fnp.pad(X, 1, mode="mean"), NotImplementedError, "mode 'mean'"),
    (lambda: fnp.pad(X, -1), ValueError, "negative"),
    (lambda: fnp.pad(X, ((1, 2, 3),)), ValueError, "pad_width"),
    (lambda: fnp.pad(np.zeros((0, 2)), 1, mode="edge"), ValueError, "empty axis 0"),
    (lambda: fnp.pad(X, 1, mode="edge", constant_values=1), TypeError, "constant_values"),
    (lambda: fnp.roll(X, (1, 2), axis=(0, 1, 0)), ValueError, "same length"),
    (lambda: fnp.diagonal(np.ones(3)), ValueError, "at least two dimensions"),
    (lambda: fnp.diagonal(X, axis1=1, axis2=-1), ValueError, "cannot be the same"),
    (lambda: fnp.trace(X, axis1=3), np.exceptions.AxisError, "out of bounds"),
    (lambda: fnp.tril(np.float64(1.0)), ValueError, "at least 1-d"),
    (lambda: fnp.cumsum(X, axis=2), np.exceptions.AxisError, "out of bounds"),
    (lambda: fnp.cumprod(X, dtype=bool), TypeError, "bool"),
    (lambda: fnp.sort(X, axis=2), np.exceptions.AxisError, "out of bounds"),
    (lambda: fnp.sort(X, order="a"), NotImplementedError, "order"),
    (lambda: fnp.argsort(X, kind="bogus"), ValueError, "kind"),
    (lambda: fnp.where(X > 1), ValueError, "one-argument form"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_value_dependent_counts_need_concrete_values():
    """Shapes can't depend on traced values: repeat counts, tile reps, split points and roll
    shifts under vmap/make_jaxpr raise ConcretizationError; under grad they are concrete."""
    counts = np.array([1, 2, 0])
    with pytest.raises(ConcretizationError, match="repeats"):
        make_jaxpr(lambda x, r: fnp.repeat(x, r, axis=0))(X, counts)
    with pytest.raises(ConcretizationError, match="shift"):
        vmap(lambda x, s: fnp.roll(x, s))(X, np.array([1, 2, 3]))
    g = fgrad.grad(lambda x, s: (fnp.roll(x, s, axis=0) * X).sum())(X, 1)
    np.testing.assert_array_equal(g, np.roll(X, -1, axis=0))
