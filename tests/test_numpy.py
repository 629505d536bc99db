"""The op-spec table for fgrad.numpy: values and dtypes against NumPy, derivatives
against finite differences, and the staged IR against eager evaluation.

See tests/_opspec.py for the machinery. Every differentiable function of
fgrad.numpy is crossed with the shape grid () (3,) (3,4) (3,1) (1,4) (2,3,4) (pairs
that broadcast, for binary functions) and float32/float64; non-differentiable ones
are checked for values and dtypes only.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from _opspec import (
    BINARY_SHAPES,
    FLOATS,
    REDUCTION_TOL,
    UNARY_SHAPES,
    OpSpec,
    assert_same,
    away_from_zero,
    bands,
    bools,
    cases,
    check_derivatives,
    check_jaxpr,
    check_jaxpr_agrees,
    check_unique_names,
    check_values,
    distinct,
    distinct_nonzero,
    distinct_sums,
    grid_offset,
    int_values,
    nonfinite,
    small_ints,
    uniform,
    with_zeros,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fgrad
import fgrad.numpy as fnp
from fgrad.core import eval_jaxpr
from fgrad.ir import check_jaxpr as type_check
from fgrad.numpy._indexing import getitem
from fgrad.test_util import check_grads

NORMAL = uniform(-2.0, 2.0)
POSITIVE = uniform(0.5, 2.0)
NONZERO = away_from_zero()


def _size(shape, axes=None):
    if axes is None:
        return int(np.prod(shape, dtype=np.int64))
    return int(np.prod([shape[a] for a in axes], dtype=np.int64))


def _nd(n):
    """A `when` filter: rank at least n."""
    return lambda *shapes: all(len(s) >= n for s in shapes)


# ============================================================================ elementwise


def _unary(name, sampler=NORMAL, ref=None, **kw):
    fn = getattr(fnp, name)
    return OpSpec(name, fn, 1, sampler, ref=ref or getattr(np, name), **kw)


def _binary(name, sampler=NORMAL, ref=None, **kw):
    fn = getattr(fnp, name)
    return OpSpec(name, fn, 2, sampler, ref=ref or getattr(np, name), **kw)


UNARY_SPECS = [
    _unary("negative"),
    _unary("abs", NONZERO),
    _unary("absolute", NONZERO),
    _unary("sign", NONZERO),
    _unary("exp"),
    _unary("exp2"),
    _unary("log", POSITIVE),
    _unary("log2", POSITIVE),
    _unary("log10", POSITIVE),
    _unary("log1p", uniform(-0.5, 2.0)),
    _unary("expm1"),
    _unary("sqrt", POSITIVE),
    _unary("square"),
    _unary("reciprocal", NONZERO),
    _unary("sin", uniform(-3.0, 3.0)),
    _unary("cos", uniform(-3.0, 3.0)),
    _unary("tan", uniform(-1.2, 1.2)),
    _unary("arcsin", uniform(-0.9, 0.9)),
    _unary("arccos", uniform(-0.9, 0.9)),
    _unary("arctan", uniform(-3.0, 3.0)),
    _unary("sinh"),
    _unary("cosh"),
    _unary("tanh"),
    _unary("positive"),
]

def _fmod_args(rng, shapes, dtype):
    """y = +-1.1 and x = (k + u) 1.1 with u in (0.2, 0.8): x / y stays away from the
    integers, where fmod jumps, whatever elements broadcasting pairs up."""
    x = (rng.integers(-2, 3, shapes[0]) + rng.uniform(0.2, 0.8, shapes[0])) * 1.1
    y = rng.choice([-1.1, 1.1], shapes[1])
    return x.astype(dtype), y.astype(dtype)


BINARY_SPECS = [
    _binary("add"),
    _binary("subtract"),
    _binary("multiply"),
    _binary("divide", (NORMAL, NONZERO)),
    _binary("true_divide", (NORMAL, NONZERO)),
    _binary("power", (POSITIVE, uniform(-1.5, 1.5))),
    _binary("arctan2", (NONZERO, NONZERO)),
    OpSpec("fmod", fnp.fmod, 2, None, ref=np.fmod, joint=_fmod_args),
    _binary("maximum", (grid_offset(0.0), grid_offset(0.5))),
    _binary("minimum", (grid_offset(0.0), grid_offset(0.5))),
]

SCALAR_OPERAND_SPECS = [
    # Python scalars are weak: float32 stays float32, as in NumPy 2.
    OpSpec("add_pyfloat", lambda x: fnp.add(x, 1.5), 1, NORMAL, ref=lambda x: np.add(x, 1.5)),
    OpSpec("add_pyint", lambda x: fnp.add(x, 2), 1, NORMAL, ref=lambda x: np.add(x, 2)),
    OpSpec("rsubtract_pyfloat", lambda x: fnp.subtract(1.5, x), 1, NORMAL,
           ref=lambda x: np.subtract(1.5, x)),
    OpSpec("multiply_pyfloat", lambda x: fnp.multiply(x, 2.0), 1, NORMAL,
           ref=lambda x: np.multiply(x, 2.0)),
    OpSpec("rdivide_pyfloat", lambda x: fnp.divide(1.0, x), 1, NONZERO,
           ref=lambda x: np.divide(1.0, x)),
    OpSpec("divide_pyint", lambda x: fnp.divide(x, 3), 1, NORMAL, ref=lambda x: np.divide(x, 3)),
    OpSpec("maximum_pyfloat", lambda x: fnp.maximum(x, 0.0), 1, NONZERO,
           ref=lambda x: np.maximum(x, 0.0)),
    OpSpec("minimum_pyfloat", lambda x: fnp.minimum(0.25, x), 1, bands((-2, 0), (0.5, 2)),
           ref=lambda x: np.minimum(0.25, x)),
    OpSpec("arctan2_pyfloat", lambda x: fnp.arctan2(x, 1.5), 1, NORMAL,
           ref=lambda x: np.arctan2(x, 1.5)),
    OpSpec("rpower_pyfloat", lambda x: fnp.power(2.0, x), 1, NORMAL,
           ref=lambda x: np.power(2.0, x)),
]



def _int_power(k):
    return OpSpec(f"power_int{k}", lambda x: fnp.power(x, k), 1, NONZERO if k < 0 else NORMAL,
                  ref=lambda x: np.power(x, k))


POWER_SPECS = [_int_power(k) for k in (0, 1, 2, 3, -1, -2)] + [
    OpSpec("power_pyfloat_half", lambda x: fnp.power(x, 0.5), 1, POSITIVE,
           ref=lambda x: np.power(x, 0.5)),
    OpSpec("power_pyfloat_2.5", lambda x: fnp.power(x, 2.5), 1, POSITIVE,
           ref=lambda x: np.power(x, 2.5)),
    # A NumPy integer is not weak: float32 ** np.int64(2) is float64, as in NumPy.
    OpSpec("power_npint64", lambda x: fnp.power(x, np.int64(2)), 1, NORMAL,
           ref=lambda x: np.power(x, np.int64(2))),
    OpSpec("power_npfloat64", lambda x: fnp.power(x, np.float64(1.5)), 1, POSITIVE,
           ref=lambda x: np.power(x, np.float64(1.5))),
    OpSpec("multiply_npfloat64", lambda x: fnp.multiply(x, np.float64(2.0)), 1, NORMAL,
           ref=lambda x: np.multiply(x, np.float64(2.0))),
    OpSpec("add_f64_array", lambda x: fnp.add(x, np.ones(1)), 1, NORMAL,
           ref=lambda x: np.add(x, np.ones(1))),
]

# Keep clip's input away from the bounds (its kinks).
CLIP_X = bands((-3.0, -1.7), (-0.4, 0.4), (1.7, 3.0))
WHERE_SPECS = [
    OpSpec("where", lambda c, x, y: fnp.where(c, x, y), 3, (bools(), NORMAL, NORMAL),
           ref=np.where),
    OpSpec("where_float_condition", lambda c, x, y: fnp.where(c > 0, x, y), 3,
           (NONZERO, NORMAL, NORMAL), ref=lambda c, x, y: np.where(c > 0, x, y)),
    OpSpec("where_pyscalar", lambda c, x: fnp.where(c, x, 0.0), 2, (bools(), NORMAL),
           ref=lambda c, x: np.where(c, x, 0.0)),
    OpSpec("clip", lambda x: fnp.clip(x, -0.5, 0.5), 1, bands((-2, -0.7), (-0.3, 0.3), (0.7, 2)),
           ref=lambda x: np.clip(x, -0.5, 0.5)),
    OpSpec("clip_max_only", lambda x: fnp.clip(x, None, 0.5), 1, bands((-2, 0.3), (0.7, 2)),
           ref=lambda x: np.clip(x, None, 0.5)),
    OpSpec("clip_arrays", fnp.clip, 3, (CLIP_X, uniform(-1.5, -1.1), uniform(1.1, 1.5)),
           ref=np.clip),
    OpSpec("clip_min_max_keywords", lambda x: fnp.clip(x, min=-0.5, max=0.5), 1,
           bands((-2, -0.7), (-0.3, 0.3), (0.7, 2)), ref=lambda x: np.clip(x, min=-0.5, max=0.5)),
]

# ============================================================================ reductions


def _reduction(fname, suffix="", sampler=NORMAL, ref_name=None, when=None, grad_when=None,
               **kwargs):
    fn, ref = getattr(fnp, fname), getattr(np, ref_name or fname)
    name = fname + (f"_{suffix}" if suffix else "")
    return OpSpec(name, lambda x: fn(x, **kwargs), 1, sampler, ref=lambda x: ref(x, **kwargs),
                  tol=REDUCTION_TOL, when=when, grad_when=grad_when)


def _reduction_variants(fname, sampler=NORMAL, std=False, **extra):
    """axis None / 0 / -1 with keepdims / a pair of negative axes, as the rank allows."""

    def spread(axes):  # std is differentiable only where some reduced axis has size > 1
        if not std:
            return None
        return lambda s: _size(s, axes(s)) > 1

    return [
        _reduction(fname, "", sampler, grad_when=spread(lambda s: range(len(s))), **extra),
        _reduction(fname, "axis0", sampler, when=_nd(1), grad_when=spread(lambda s: (0,)),
                   axis=0, **extra),
        _reduction(fname, "axis-1_keepdims", sampler, when=_nd(1),
                   grad_when=spread(lambda s: (len(s) - 1,)), axis=-1, keepdims=True, **extra),
        _reduction(fname, "axes-1-2", sampler, when=_nd(2),
                   grad_when=spread(lambda s: (len(s) - 1, len(s) - 2)), axis=(-1, -2), **extra),
    ]


REDUCTION_SPECS = [
    *_reduction_variants("sum"),
    *_reduction_variants("mean"),
    *_reduction_variants("prod", uniform(0.5, 1.5)),
    *_reduction_variants("max", distinct()),
    *_reduction_variants("min", distinct()),
    *_reduction_variants("var"),
    *_reduction_variants("std", std=True),
    _reduction("amax", "axis-1", distinct(), when=_nd(1), axis=-1),
    _reduction("amin", "axis-1", distinct(), when=_nd(1), axis=-1),
    _reduction("prod", "one_zero", with_zeros(uniform(0.5, 1.5), 1)),
    _reduction("prod", "one_zero_axis-1", with_zeros(uniform(0.5, 1.5), 1), when=_nd(1),
               axis=-1),
    _reduction("prod", "two_zeros", with_zeros(uniform(0.5, 1.5), 2)),
    _reduction("prod", "two_zeros_axis0", with_zeros(uniform(0.5, 1.5), 2), when=_nd(1),
               axis=0),
    _reduction("sum", "axes_tuple_keepdims", when=_nd(2), axis=(0, -1), keepdims=True),
    _reduction("mean", "axes-2_keepdims", when=_nd(2), axis=-2, keepdims=True),
    _reduction("var", "ddof1", when=lambda s: _size(s) > 1, ddof=1),
    _reduction("var", "ddof1_axis-1_keepdims", when=lambda s: len(s) >= 1 and s[-1] > 1,
               axis=-1, ddof=1, keepdims=True),
    _reduction("std", "ddof1", when=lambda s: _size(s) > 1, ddof=1),
    _reduction("std", "ddof1_axis0", when=lambda s: len(s) >= 1 and s[0] > 1, axis=0, ddof=1),
    _reduction("std", "axes-1-2_keepdims", when=lambda s: len(s) >= 2 and _size(s[-2:]) > 1,
               axis=(-2, -1), keepdims=True),
    _reduction("sum", "dtype_f64", dtype=np.float64),
    _reduction("mean", "dtype_f64_axis-1", when=_nd(1), axis=-1, dtype=np.float64),
    _reduction("max", "axis_empty_tuple", distinct(), axis=()),
    _reduction("sum", "axis_empty_tuple", axis=()),
]

# ============================================================================ shapes


def _shape_op(name, fn, ref, when=None, nargs=1, shapes=None, sampler=NORMAL):
    return OpSpec(name, fn, nargs, sampler, ref=ref, when=when, shapes=shapes)


def _same(fname, **kwargs):
    """fnp.fname and np.fname with the same keyword arguments."""
    fn, ref = getattr(fnp, fname), getattr(np, fname)
    return (lambda x: fn(x, **kwargs)), (lambda x: ref(x, **kwargs))


SHAPE_SPECS = [
    _shape_op("reshape_flat", lambda x: fnp.reshape(x, (-1,)), lambda x: np.reshape(x, (-1,))),
    _shape_op("reshape_reversed", lambda x: fnp.reshape(x, (1,) + x.shape[::-1]),
              lambda x: np.reshape(x, (1,) + x.shape[::-1])),
    _shape_op("reshape_minus1", lambda x: fnp.reshape(x, (x.shape[0], -1)),
              lambda x: np.reshape(x, (x.shape[0], -1)), when=_nd(1)),
    _shape_op("reshape_shape_keyword", lambda x: fnp.reshape(x, shape=(-1, 1)),
              lambda x: np.reshape(x, shape=(-1, 1))),
    _shape_op("reshape_int", lambda x: fnp.reshape(x, -1), lambda x: np.reshape(x, -1)),
    _shape_op("ravel", fnp.ravel, np.ravel),
    _shape_op("transpose", fnp.transpose, np.transpose),
    _shape_op("transpose_axes", *_same("transpose", axes=(1, -1, 0)), when=_nd(3)),
    _shape_op("transpose_axes_2d", *_same("transpose", axes=(-1, 0)),
              when=lambda s: len(s) == 2),
    _shape_op("swapaxes", *_same("swapaxes", axis1=0, axis2=-1), when=_nd(1)),
    _shape_op("moveaxis", *_same("moveaxis", source=0, destination=-1), when=_nd(1)),
    _shape_op("moveaxis_pair", *_same("moveaxis", source=(0, 1), destination=(-1, 0)),
              when=_nd(3)),
    _shape_op("squeeze", fnp.squeeze, np.squeeze),
    _shape_op("squeeze_axis-1", *_same("squeeze", axis=-1), when=lambda s: s[-1:] == (1,)),
    _shape_op("squeeze_axis0", *_same("squeeze", axis=0), when=lambda s: s[:1] == (1,)),
    _shape_op("expand_dims0", *_same("expand_dims", axis=0)),
    _shape_op("expand_dims-1", *_same("expand_dims", axis=-1)),
    _shape_op("expand_dims_pair", *_same("expand_dims", axis=(0, -1))),
    _shape_op("broadcast_to", lambda x: fnp.broadcast_to(x, (2,) + x.shape),
              lambda x: np.broadcast_to(x, (2,) + x.shape)),
    _shape_op("broadcast_to_stretch", lambda x: fnp.broadcast_to(x, (2, 3, 4)),
              lambda x: np.broadcast_to(x, (2, 3, 4)),
              when=lambda s: s in ((), (3, 1), (1, 4), (3, 4), (2, 3, 4))),
    _shape_op("concatenate_axis0", lambda x, y: fnp.concatenate([x, y]),
              lambda x, y: np.concatenate([x, y]), nargs=2,
              shapes=[((3, 4), (2, 4)), ((3,), (3,)), ((3, 4), (3, 4)), ((3, 1), (1, 1)),
                      ((1, 4), (3, 4)), ((2, 3, 4), (1, 3, 4))]),
    _shape_op("concatenate_axis-1", lambda x, y: fnp.concatenate((x, y), axis=-1),
              lambda x, y: np.concatenate((x, y), axis=-1), nargs=2,
              shapes=[((3, 4), (3, 1)), ((3,), (2,)), ((1, 4), (1, 4)), ((2, 3, 4), (2, 3, 1))]),
    _shape_op("concatenate_axisNone", lambda x, y: fnp.concatenate([x, y], axis=None),
              lambda x, y: np.concatenate([x, y], axis=None), nargs=2,
              shapes=[((3, 4), (2,)), ((), ()), ((3, 1), (2, 3, 4)), ((1, 4), ())]),
    _shape_op("concatenate_three", lambda x: fnp.concatenate([x, 2.0 * x, x], axis=0),
              lambda x: np.concatenate([x, 2.0 * x, x], axis=0), when=_nd(1)),
    _shape_op("concatenate_constant", lambda x: fnp.concatenate([np.ones((1,) + x.shape[1:]), x]),
              lambda x: np.concatenate([np.ones((1,) + x.shape[1:]), x]), when=_nd(1)),
    _shape_op("hstack", lambda x, y: fnp.hstack([x, y]), lambda x, y: np.hstack([x, y]),
              nargs=2, shapes=[((3, 4), (3, 1)), ((), ()), ((3,), (2,)), ((2, 3, 4), (2, 1, 4))]),
    _shape_op("vstack", lambda x, y: fnp.vstack([x, y]), lambda x, y: np.vstack([x, y]),
              nargs=2, shapes=[((3, 4), (1, 4)), ((), ()), ((3,), (3,)), ((2, 3, 4), (1, 3, 4))]),
    _shape_op("atleast_1d", fnp.atleast_1d, np.atleast_1d),
    _shape_op("atleast_2d", fnp.atleast_2d, np.atleast_2d),
    _shape_op("broadcast_arrays", fnp.broadcast_arrays, np.broadcast_arrays, nargs=2,
              shapes=BINARY_SHAPES),
    _shape_op("stack", lambda x, y: fnp.stack([x, y]), lambda x, y: np.stack([x, y]),
              nargs=2, shapes=[(s, s) for (s,) in UNARY_SHAPES]),
    _shape_op("stack_axis-1", lambda x, y: fnp.stack((x, y), axis=-1),
              lambda x, y: np.stack((x, y), axis=-1),
              nargs=2, shapes=[(s, s) for (s,) in UNARY_SHAPES]),
]

# ============================================================================ indexing


def _index(name, index, when):
    return OpSpec(f"getitem_{name}", lambda x: getitem(x, index), 1, NORMAL,
                  ref=lambda x: x[index], when=when)


INDEX_SPECS = [
    _index("1", 1, lambda s: len(s) >= 1 and s[0] > 1),
    _index("-1", -1, _nd(1)),
    _index("1:", slice(1, None), _nd(1)),
    _index("::2", slice(None, None, 2), _nd(1)),
    _index("::-1", slice(None, None, -1), _nd(1)),
    _index("-1:0:-2", slice(-1, 0, -2), _nd(1)),
    _index("None_ellipsis_1:3", (None, Ellipsis, slice(1, 3)), _nd(1)),
    _index("ellipsis_0", (Ellipsis, 0), _nd(1)),
    _index("1_::-1", (1, slice(None, None, -1)), lambda s: len(s) >= 2 and s[0] > 1),
    _index(":_None_-2", (slice(None), None, -2), lambda s: len(s) >= 2 and s[1] > 1),
    _index("3:0:-1", slice(3, 0, -1), _nd(1)),
    _index("-2::-2", slice(-2, None, -2), _nd(1)),
    _index("1:1_empty", slice(1, 1), _nd(1)),
    _index("10:_empty", slice(10, None), _nd(1)),
    _index("npint64", np.int64(-1), _nd(1)),
    _index("ellipsis", Ellipsis, None),
    _index("None", None, None),
]

# ============================================================================ products


def _product(name, fn, ref, shapes, sampler=NORMAL):
    return OpSpec(name, fn, 2, sampler, ref=ref, shapes=shapes, tol=REDUCTION_TOL)


PRODUCT_SPECS = [
    _product("dot", fnp.dot, np.dot,
             [((3, 4), (4, 2)), ((), (3,)), ((3,), ()), ((3,), (3,)), ((3, 4), (4,)),
              ((4,), (4, 3)), ((2, 3, 4), (4,)), ((2, 3, 4), (4, 2)), ((3,), (2, 3, 4)),
              ((1, 4), (4, 1)), ((3, 1), (1, 4))]),
    _product("vdot", fnp.vdot, np.vdot,
             [((3, 4), (3, 4)), ((3,), (3,)), ((3, 4), (4, 3)), ((2, 3, 4), (2, 3, 4)),
              ((3, 1), (1, 3)), ((1, 4), (4,))]),
    _product("inner", fnp.inner, np.inner,
             [((3, 4), (2, 4)), ((3,), (3,)), ((), (3, 4)), ((3, 4), ()), ((3, 4), (4,)),
              ((2, 3, 4), (3, 4)), ((3, 1), (1,)), ((1, 4), (2, 3, 4))]),
    _product("outer", fnp.outer, np.outer,
             [((3,), (4,)), ((), (3,)), ((3, 4), (2,)), ((3, 1), (1, 4)), ((2, 3, 4), ())]),
    _product("matmul", fnp.matmul, np.matmul,
             [((2, 3, 4), (4, 2)), ((3,), (3,)), ((3, 4), (4,)), ((4,), (4, 3)),
              ((3, 4), (4, 2)), ((3, 1), (1, 4)), ((1, 4), (4, 1)), ((2, 3, 4), (4,)),
              ((4,), (2, 4, 3)), ((2, 3, 4), (1, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
              ((2, 3, 4), (2, 4, 3))]),
    _product("matmul_constant", lambda a, b: fnp.matmul(a, np.ones(b.shape)) + b.sum(),
             lambda a, b: np.matmul(a, np.ones(b.shape)) + b.sum(),
             [((3, 4), (4, 2)), ((2, 3, 4), (4,))]),
    _product("tensordot_axes2", lambda a, b: fnp.tensordot(a, b, 2),
             lambda a, b: np.tensordot(a, b, 2),
             [((2, 3, 4), (3, 4)), ((3, 4), (3, 4)), ((2, 3, 4), (3, 4, 2)), ((3, 1), (3, 1))]),
    _product("tensordot_axes1", lambda a, b: fnp.tensordot(a, b, 1),
             lambda a, b: np.tensordot(a, b, 1),
             [((3, 4), (4, 2)), ((3,), (3,)), ((2, 3, 4), (4, 3)), ((1, 4), (4,))]),
    _product("tensordot_axes0", lambda a, b: fnp.tensordot(a, b, 0),
             lambda a, b: np.tensordot(a, b, 0), [((3,), (2, 2)), ((), (3, 4)), ((3, 1), ())]),
    _product("tensordot_pairs", lambda a, b: fnp.tensordot(a, b, ((0, 2), (1, 0))),
             lambda a, b: np.tensordot(a, b, ((0, 2), (1, 0))),
             [((2, 3, 4), (4, 2, 5)), ((2, 3, 4), (4, 2))]),
    _product("tensordot_pair_negative", lambda a, b: fnp.tensordot(a, b, (-1, 0)),
             lambda a, b: np.tensordot(a, b, (-1, 0)), [((3, 4), (4, 2)), ((2, 3, 4), (4,))]),
]

# ============================================================================ linalg.norm


def _norm(name, sampler, shapes, **kwargs):
    return OpSpec(f"norm_{name}", lambda x: fnp.linalg.norm(x, **kwargs), 1, sampler,
                  ref=lambda x: np.linalg.norm(x, **kwargs), shapes=shapes, tol=REDUCTION_TOL)


VECTOR = [((3,),), ((4,),)]
MATRIX = [((3, 4),), ((3, 1),), ((1, 4),), ((4, 3),)]
NORM_SPECS = [
    _norm("default", NONZERO, UNARY_SHAPES),
    _norm("keepdims", NONZERO, UNARY_SHAPES[:1] + UNARY_SHAPES[2:], keepdims=True),
    _norm("ord1", NONZERO, VECTOR, ord=1),
    _norm("ord2", NONZERO, VECTOR, ord=2),
    _norm("ordinf", distinct_nonzero(), VECTOR, ord=np.inf),
    _norm("ord-inf", distinct_nonzero(), VECTOR, ord=-np.inf),
    _norm("ord3", NONZERO, VECTOR, ord=3),
    _norm("ord0.5", NONZERO, VECTOR, ord=0.5),
    _norm("fro", NONZERO, MATRIX, ord="fro"),
    _norm("mat_ord1", distinct_sums(), MATRIX, ord=1),
    _norm("mat_ordinf", distinct_sums(), MATRIX, ord=np.inf),
    _norm("mat_ord-1", distinct_sums(), MATRIX, ord=-1),
    _norm("axis-1_ord2", NONZERO, [((3, 4),), ((2, 3, 4),), ((3, 1),)], axis=-1, ord=2),
    _norm("axis0_ord1", NONZERO, [((3, 4),), ((2, 3, 4),), ((1, 4),)], axis=0, ord=1),
    _norm("axis-1_ord3_keepdims", NONZERO, [((3, 4),), ((2, 3, 4),)], axis=-1, ord=3,
          keepdims=True),
    _norm("axes12_fro", NONZERO, [((2, 3, 4),)], axis=(1, 2), ord="fro"),
    _norm("axes01_default", NONZERO, [((2, 3, 4),), ((3, 4),)], axis=(0, 1)),
    _norm("axes12_ordinf", distinct_sums(), [((2, 3, 4),)], axis=(1, 2), ord=np.inf),
    _norm("axes-1-2_ord1_keepdims", distinct_sums(), [((2, 3, 4),)], axis=(-1, -2), ord=1,
          keepdims=True),
]

# ============================================================================ compositions


COMPOSITE_SPECS = [
    OpSpec("softplus_like", lambda x: fnp.log1p(fnp.exp(-fnp.abs(x))) + fnp.maximum(x, 0.0), 1,
           NONZERO, ref=lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)),
    OpSpec("normalize", lambda x: (x - fnp.mean(x, axis=-1, keepdims=True))
           / fnp.std(x, axis=-1, keepdims=True), 1, distinct(),
           ref=lambda x: (x - np.mean(x, axis=-1, keepdims=True))
           / np.std(x, axis=-1, keepdims=True), when=lambda s: len(s) >= 1 and s[-1] > 1,
           tol=REDUCTION_TOL),
    OpSpec("logsumexp", lambda x: fnp.log(fnp.sum(fnp.exp(x), axis=-1)), 1, NORMAL,
           ref=lambda x: np.log(np.sum(np.exp(x), axis=-1)), when=_nd(1), tol=REDUCTION_TOL),
    OpSpec("mlp_layer", lambda x, w: fnp.tanh(fnp.matmul(x, w)).sum(), 2, NORMAL,
           ref=lambda x, w: np.tanh(np.matmul(x, w)).sum(),
           shapes=[((3, 4), (4, 2)), ((4,), (4, 2)), ((2, 3, 4), (4, 1))], tol=REDUCTION_TOL),
]

DIFFERENTIABLE = (UNARY_SPECS + BINARY_SPECS + SCALAR_OPERAND_SPECS + POWER_SPECS + WHERE_SPECS
                  + REDUCTION_SPECS + SHAPE_SPECS + INDEX_SPECS + PRODUCT_SPECS + NORM_SPECS
                  + COMPOSITE_SPECS)

# ============================================================================ non-differentiable

I32, I64 = np.dtype(np.int32), np.dtype(np.int64)
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
I8, BOOL = np.dtype(np.int8), np.dtype(np.bool_)


def _nondiff(name, fn, ref, nargs=1, sampler=NORMAL, **kw):
    return OpSpec(name, fn, nargs, sampler, ref=ref, grad=False, **kw)


def _compare(name):
    return _nondiff(name, getattr(fnp, name), getattr(np, name), 2, small_ints())


def _arg(fname, suffix, when=None, **kwargs):
    fn, ref = getattr(fnp, fname), getattr(np, fname)
    return _nondiff(f"{fname}_{suffix}", lambda x: fn(x, **kwargs), lambda x: ref(x, **kwargs),
                    sampler=distinct(), when=when)


def _bool_reduction(fname, suffix, when=None, **kwargs):
    fn, ref = getattr(fnp, fname), getattr(np, fname)
    return _nondiff(f"{fname}_{suffix}", lambda x: fn(x, **kwargs), lambda x: ref(x, **kwargs),
                    sampler=with_zeros(small_ints(0, 2), 2), when=when)


NONDIFF_SPECS = [
    *[_compare(n) for n in ("equal", "not_equal", "less", "less_equal", "greater",
                            "greater_equal")],
    _nondiff("less_pyfloat", lambda x: fnp.less(x, 0.5), lambda x: np.less(x, 0.5)),
    *[_nondiff(n, getattr(fnp, n), getattr(np, n), 2, small_ints(-1, 1))
      for n in ("logical_and", "logical_or", "logical_xor")],
    _nondiff("logical_and_bool", fnp.logical_and, np.logical_and, 2, bools()),
    _nondiff("logical_not", fnp.logical_not, np.logical_not, 1, small_ints(-1, 1)),
    _nondiff("logical_not_bool", fnp.logical_not, np.logical_not, 1, bools()),
    _arg("argmax", "flat"),
    _arg("argmin", "flat"),
    _arg("argmax", "axis0", _nd(1), axis=0),
    _arg("argmin", "axis-1", _nd(1), axis=-1),
    _arg("argmax", "axis-1_keepdims", _nd(1), axis=-1, keepdims=True),
    _arg("argmin", "flat_keepdims", keepdims=True),
    _nondiff("argmax_ties", fnp.argmax, np.argmax, 1, small_ints(0, 1)),  # first of the ties
    _nondiff("argmin_ties_axis0", lambda x: fnp.argmin(x, axis=0),
             lambda x: np.argmin(x, axis=0), 1, small_ints(0, 1), when=_nd(1)),
    _bool_reduction("all", "flat"),
    _bool_reduction("any", "flat"),
    _bool_reduction("all", "axis-1", _nd(1), axis=-1),
    _bool_reduction("any", "axis0_keepdims", _nd(1), axis=0, keepdims=True),
    _nondiff("all_bool", fnp.all, np.all, 1, bools(0.8)),
    _nondiff("any_bool_axis-1", lambda x: fnp.any(x, axis=-1), lambda x: np.any(x, axis=-1), 1,
             bools(0.2), when=_nd(1)),
    _nondiff("max_bool", fnp.max, np.max, 1, bools()),
    _nondiff("maximum_bool", fnp.maximum, np.maximum, 2, bools(), dtypes=(BOOL,)),
    _nondiff("minimum_bool", fnp.minimum, np.minimum, 2, bools(), dtypes=(BOOL,)),
    _nondiff("abs_bool", fnp.abs, np.abs, 1, bools(), dtypes=(BOOL,)),
    _nondiff("floor_int32", fnp.floor, np.floor, 1, int_values(-3, 3, I32), dtypes=(I32,)),
    _nondiff("ceil_bool", fnp.ceil, np.ceil, 1, bools(), dtypes=(BOOL,)),
    _nondiff("floor", fnp.floor, np.floor, sampler=uniform(-3, 3)),
    _nondiff("ceil", fnp.ceil, np.ceil, sampler=uniform(-3, 3)),
    _nondiff("round", fnp.round, np.round, sampler=uniform(-3, 3)),
    _nondiff("round_halves", fnp.round, np.round,  # half to even
             sampler=lambda rng, s, d: (rng.integers(-6, 7, s) / 2).astype(d)),
    _nondiff("round_decimals1", lambda x: fnp.round(x, 1), lambda x: np.round(x, 1),
             sampler=uniform(-3, 3)),
    _nondiff("around", fnp.around, np.around, sampler=uniform(-3, 3)),
    _nondiff("round_decimals-1", lambda x: fnp.round(x, -1), lambda x: np.round(x, -1),
             sampler=lambda rng, s, d: (rng.integers(-40, 40, s) * 2.5).astype(d)),
    _nondiff("round_int32_decimals-1", lambda x: fnp.round(x, -1), lambda x: np.round(x, -1),
             sampler=int_values(-40, 40, I32), dtypes=(I32,)),
    _nondiff("round_int32", fnp.round, np.round, sampler=int_values(-4, 4, I32), dtypes=(I32,)),
    _nondiff("isfinite", fnp.isfinite, np.isfinite, sampler=nonfinite(NORMAL)),
    _nondiff("isfinite_int32", fnp.isfinite, np.isfinite, sampler=int_values(-3, 3, I32),
             dtypes=(I32,)),
    _nondiff("norm_ord0", lambda x: fnp.linalg.norm(x, 0), lambda x: np.linalg.norm(x, 0),
             sampler=small_ints(), shapes=[((3,),), ((4,),)]),
    _nondiff("norm_int32", fnp.linalg.norm, np.linalg.norm, sampler=int_values(-3, 3, I32),
             dtypes=(I32,)),
    _nondiff("power_int8_pyint", lambda x: fnp.power(x, 2), lambda x: np.power(x, 2),
             sampler=int_values(-3, 3, I8), dtypes=(I8,)),
    _nondiff("power_bool_pyint", lambda x: fnp.power(x, 2), lambda x: np.power(x, 2),
             sampler=bools(), dtypes=(BOOL,)),
    _nondiff("concatenate_mixed_dtypes", lambda x: fnp.concatenate([x, np.ones(2)], axis=None),
             lambda x: np.concatenate([x, np.ones(2)], axis=None)),
    _nondiff("sign_zeros", fnp.sign, np.sign, sampler=small_ints()),
    # Integer inputs: NumPy's own result dtypes (float64 for sin of int32, int for sum).
    _nondiff("sin_int32", fnp.sin, np.sin, sampler=int_values(-3, 3, I32), dtypes=(I32,)),
    _nondiff("sqrt_int64", fnp.sqrt, np.sqrt, sampler=int_values(0, 9, I64), dtypes=(I64,)),
    _nondiff("add_int32_pyint", lambda x: fnp.add(x, 3), lambda x: np.add(x, 3),
             sampler=int_values(-3, 3, I32), dtypes=(I32,)),
    _nondiff("multiply_int32_pyfloat", lambda x: fnp.multiply(x, 0.5),
             lambda x: np.multiply(x, 0.5), sampler=int_values(-3, 3, I32), dtypes=(I32,)),
    _nondiff("divide_int32", fnp.divide, np.divide, 2,
             (int_values(-5, 5, I32), int_values(1, 3, I32)), dtypes=(I32,)),
    _nondiff("sum_int32", fnp.sum, np.sum, sampler=int_values(-3, 3, I32), dtypes=(I32,)),
    _nondiff("prod_int32_axis-1", lambda x: fnp.prod(x, axis=-1), lambda x: np.prod(x, axis=-1),
             sampler=int_values(-3, 3, I32), dtypes=(I32,), when=_nd(1)),
    _nondiff("mean_int64", fnp.mean, np.mean, sampler=int_values(-3, 3, I64), dtypes=(I64,)),
    _nondiff("max_int64_axis0", lambda x: fnp.max(x, axis=0), lambda x: np.max(x, axis=0),
             sampler=int_values(-3, 3, I64), dtypes=(I64,), when=_nd(1)),
    _nondiff("power_int64_int", lambda x: fnp.power(x, 3), lambda x: np.power(x, 3),
             sampler=int_values(-3, 3, I64), dtypes=(I64,)),
    _nondiff("abs_int32", fnp.abs, np.abs, sampler=int_values(-3, 3, I32), dtypes=(I32,)),
    _nondiff("square_int32", fnp.square, np.square, sampler=int_values(-3, 3, I32),
             dtypes=(I32,)),
    _nondiff("matmul_int64", fnp.matmul, np.matmul, 2, int_values(-3, 3, I64), dtypes=(I64,),
             shapes=[((3, 4), (4, 2)), ((2, 3, 4), (4,))]),
    _nondiff("var_int32", fnp.var, np.var, sampler=int_values(-3, 3, I32), dtypes=(I32,)),
]

# Mixed-dtype operands: NumPy's promotion (the case's dtype is unused: each operand has its own).


def _of(dtype):
    if dtype.kind == "f":
        return lambda rng, shape, _: rng.uniform(0.5, 2.0, shape).astype(dtype)
    return int_values(0 if dtype.kind == "b" else 1, 1 if dtype.kind == "b" else 3, dtype)


PROMOTION_SPECS = [
    _nondiff(f"{op}_{a.name}_{b.name}", getattr(fnp, op), getattr(np, op), 2, (_of(a), _of(b)),
             dtypes=(F64,), shapes=[((3, 4), (3, 1)), ((), (3,))])
    for op in ("add", "multiply", "divide", "maximum", "power", "arctan2")
    for a, b in ((F32, F64), (F32, I32), (I64, F32), (I8, F32), (I32, I64), (BOOL, F32),
                 (F32, BOOL))
    if not (op == "power" and a.kind + b.kind in ("ii", "bf", "fb"))
]

ALL_SPECS = DIFFERENTIABLE + NONDIFF_SPECS + PROMOTION_SPECS
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


# ============================================================================ other dtypes

# Every elementwise function and reduction on bools and small and unsigned integers:
# NumPy's result dtype and values, eagerly and staged. Known differences are strict xfails.
DTYPE_UNARY = ("negative abs absolute sign exp exp2 log log2 log10 log1p expm1 sqrt square "
               "reciprocal sin cos tan arcsin arccos arctan sinh cosh tanh floor ceil round "
               "isfinite logical_not invert positive sum mean prod max min var std argmax "
               "argmin all any ravel transpose").split()
DTYPE_BINARY = ("add subtract multiply divide power arctan2 maximum minimum fmod equal not_equal "
                "less less_equal greater greater_equal logical_and logical_or logical_xor "
                "bitwise_and bitwise_or bitwise_xor dot vdot inner outer matmul").split()
U8, F16 = np.dtype(np.uint8), np.dtype(np.float16)
DTYPE_SINGLES = (BOOL, I8, U8, I32, I64, F16)
DTYPE_PAIRS = ((BOOL, BOOL), (I8, U8), (U8, U8), (I32, I64), (I8, F16), (U8, F32), (BOOL, I32),
               (I64, F32))
KNOWN_DIFFERENCES = {
    # fgrad.numpy refuses these on purpose (documented errors):
    **{("power", a.name, b.name): "integer ** integer array is not supported"
       for a, b in DTYPE_PAIRS if a.kind in "biu" and b.kind in "biu"},
    **{(n, "bool", "bool"): "boolean products are not supported"
       for n in ("dot", "vdot", "inner", "outer", "matmul")},
    # NumPy's own loop choices for bools and mixed-sign small integers:
    ("square", "bool"): "NumPy: int8",
    ("reciprocal", "bool"): "NumPy: int8",
    ("round", "bool"): "NumPy: float16",
    ("arctan2", "int8", "uint8"): "NumPy: float16 (promotes to int16 first here: float32)",
    ("positive", "bool"): "NumPy raises TypeError; fgrad.numpy returns the bools",
}


def _small_values(dtype, rng):
    if dtype.kind == "b":
        return rng.uniform(size=(2, 3)) < 0.5
    if dtype.kind in "iu":
        return rng.integers(1, 4, (2, 3)).astype(dtype)
    return rng.uniform(0.2, 0.9, (2, 3)).astype(dtype)


def _dtype_cases():
    out = []
    for name in DTYPE_UNARY:
        out += [(name, (d,)) for d in DTYPE_SINGLES]
    for name in DTYPE_BINARY:
        out += [(name, pair) for pair in DTYPE_PAIRS]
    params = []
    for name, dts in out:
        key = (name, *[d.name for d in dts])
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[key])] \
            if key in KNOWN_DIFFERENCES else []
        params.append(pytest.param(name, dts, marks=marks, id="-".join(key)))
    return params


@pytest.mark.parametrize("name, dts", _dtype_cases())
def test_integer_and_bool_dtypes(name, dts):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    args = [_small_values(d, rng) for d in dts]
    if name in ("dot", "matmul"):
        args[1] = args[1].T
    fn, ref = getattr(fnp, name), getattr(np, name)
    with np.errstate(all="ignore"):
        try:
            want = ref(*args)
        except TypeError:  # NumPy has no loop for these dtypes either
            with pytest.raises((TypeError, ValueError)):
                fn(*args)
            return
    assert_same(fn(*args), want, 1e-3, what=f"{name} eager")
    check_jaxpr_agrees(fn, args, 1e-3, what=f"{name} staged")


# ============================================================================ tracer operators

# `x op y` on traced values means the fgrad.numpy function; compared with NumPy's operators.
OPERATORS = [
    ("add", lambda x, y: x + y), ("radd_float", lambda x, y: 2.0 + x),
    ("sub", lambda x, y: x - y), ("rsub_int", lambda x, y: 1 - x),
    ("mul", lambda x, y: x * y), ("mul_float", lambda x, y: x * 2.0),
    ("truediv", lambda x, y: x / (y * y + 1.0)), ("rtruediv", lambda x, y: 1.0 / (x * x + 1.0)),
    ("pow_int", lambda x, y: x ** 3), ("pow_float", lambda x, y: (x * x + 1.0) ** 0.5),
    ("rpow", lambda x, y: 2.0 ** x), ("neg", lambda x, y: -x), ("pos", lambda x, y: +x),
    ("abs", lambda x, y: abs(x)),
    ("matmul", lambda x, y: x @ y.T), ("T", lambda x, y: x.T), ("mT", lambda x, y: x.mT),
    ("lt", lambda x, y: x < y), ("le", lambda x, y: x <= 0.5), ("gt", lambda x, y: x > y),
    ("ge", lambda x, y: x >= y), ("eq", lambda x, y: x == x), ("ne", lambda x, y: x != y),
    ("getitem", lambda x, y: x[1, ::-1]), ("getitem_none", lambda x, y: x[None, :, 2]),
    ("sum", lambda x, y: x.sum(axis=0)), ("mean", lambda x, y: x.mean()),
    ("max", lambda x, y: x.max(axis=1)), ("min", lambda x, y: x.min(keepdims=True)),
    ("prod", lambda x, y: x.prod(axis=-1)), ("var", lambda x, y: x.var(axis=0, ddof=1)),
    ("std", lambda x, y: x.std()), ("argmax", lambda x, y: x.argmax(axis=1)),
    ("reshape_args", lambda x, y: x.reshape(2, 6)),
    ("reshape_tuple", lambda x, y: x.reshape((-1,))),
    ("transpose", lambda x, y: x.transpose()), ("transpose_args", lambda x, y: x.transpose(1, 0)),
    ("squeeze", lambda x, y: x[None].squeeze()), ("ravel", lambda x, y: x.ravel()),
    ("flatten", lambda x, y: x.flatten()), ("dot", lambda x, y: x.dot(y.T)),
    ("astype", lambda x, y: x.astype(np.float64)), ("clip", lambda x, y: x.clip(-0.5, 0.5)),
    ("swapaxes", lambda x, y: x.swapaxes(0, 1)),
    ("np_ufunc", lambda x, y: np.sin(x) + np.maximum(x, y)),
    ("np_function", lambda x, y: np.sum(x, axis=0)),
    ("shape_attrs", lambda x, y: x * (x.ndim + x.size + x.shape[0] + len(x))),
]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize("fn", [f for _, f in OPERATORS], ids=[n for n, _ in OPERATORS])
def test_tracer_operators(fn, dtype):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, 4)).astype(dtype)
    y = rng.uniform(-1, 1, (3, 4)).astype(dtype)
    want = fn(x, y)  # NumPy's operators on NumPy arrays
    tol = REDUCTION_TOL[dtype]
    # Under jvp the values are concrete: the tracer's operators compute them.
    traced, _ = fgrad.jvp(fn, (x, y), (np.ones_like(x), np.ones_like(y)))
    assert_same(traced, want, tol, what="operator under jvp")
    check_jaxpr_agrees(fn, (x, y), tol, what="operator under make_jaxpr")
    closed = fgrad.make_jaxpr(fn)(x, y)
    (out,) = eval_jaxpr(closed.jaxpr, closed.consts, x, y)
    assert_same(np.asarray(out), want, tol, what="operator staged")


def test_operator_grads():
    rng = np.random.default_rng(2)
    for dtype in FLOATS:
        x = rng.uniform(0.5, 1.5, (3, 4)).astype(dtype)
        y = rng.uniform(0.5, 1.5, (4, 2)).astype(dtype)
        check_grads(lambda a, b: ((a @ b) ** 2 / (1.0 + a.sum()) - 2.0 ** b.T.mean()), (x, y),
                    order=2)
        check_grads(lambda a, b: (a[1:, ::-2] * 3).max(axis=0) - b[::-2, 0], (x, y), order=1)


# ============================================================================ creation


CREATION = [
    ("zeros", lambda: fnp.zeros((2, 3)), lambda: np.zeros((2, 3))),
    ("zeros_int", lambda: fnp.zeros(3, np.int32), lambda: np.zeros(3, np.int32)),
    ("ones_f32", lambda: fnp.ones((2,), dtype=np.float32), lambda: np.ones((2,), np.float32)),
    ("full", lambda: fnp.full((2, 2), 1.5), lambda: np.full((2, 2), 1.5)),
    ("full_int_fill", lambda: fnp.full(3, 7), lambda: np.full(3, 7)),
    ("full_dtype", lambda: fnp.full((2,), 2, np.float32), lambda: np.full((2,), 2, np.float32)),
    ("arange_stop", lambda: fnp.arange(5), lambda: np.arange(5)),
    ("arange_float", lambda: fnp.arange(0.0, 1.0, 0.25), lambda: np.arange(0.0, 1.0, 0.25)),
    ("arange_dtype", lambda: fnp.arange(1, 7, 2, dtype=np.float32),
     lambda: np.arange(1, 7, 2, dtype=np.float32)),
    ("linspace", lambda: fnp.linspace(0.0, 1.0, 5), lambda: np.linspace(0.0, 1.0, 5)),
    ("linspace_no_endpoint", lambda: fnp.linspace(-1, 1, 4, endpoint=False),
     lambda: np.linspace(-1, 1, 4, endpoint=False)),
    ("linspace_dtype", lambda: fnp.linspace(0, 2, 3, dtype=np.float32),
     lambda: np.linspace(0, 2, 3, dtype=np.float32)),
    ("eye", lambda: fnp.eye(3), lambda: np.eye(3)),
    ("eye_rect_k", lambda: fnp.eye(3, 4, k=1, dtype=np.float32),
     lambda: np.eye(3, 4, k=1, dtype=np.float32)),
    ("identity", lambda: fnp.identity(2), lambda: np.identity(2)),
    ("zeros_like_f32", lambda: fnp.zeros_like(np.ones((2, 3), np.float32)),
     lambda: np.zeros_like(np.ones((2, 3), np.float32))),
    ("ones_like_dtype", lambda: fnp.ones_like(np.ones(3), dtype=np.int32),
     lambda: np.ones_like(np.ones(3), dtype=np.int32)),
    ("full_like_f32", lambda: fnp.full_like(np.ones(3, np.float32), 2),
     lambda: np.full_like(np.ones(3, np.float32), 2)),
    ("full_like_int_of_float", lambda: fnp.full_like(np.ones(3, np.int64), 2.7),
     lambda: np.full_like(np.ones(3, np.int64), 2.7)),
    ("array_nested", lambda: fnp.array([[1.0, 2.0], [3.0, 4.0]]),
     lambda: np.array([[1.0, 2.0], [3.0, 4.0]])),
    ("asarray_dtype", lambda: fnp.asarray([1, 2], dtype=np.float32),
     lambda: np.asarray([1, 2], dtype=np.float32)),
]


@pytest.mark.parametrize("make, ref", [c[1:] for c in CREATION], ids=[c[0] for c in CREATION])
def test_creation(make, ref):
    assert_same(make(), ref(), 0.0, what="creation")


def test_creation_under_tracing():
    """Creation functions used on traced values: shapes/dtypes from the tracer, and
    linspace/full differentiable in traced bounds and fill values."""
    x32 = np.arange(6, dtype=np.float32).reshape(2, 3)

    def f(x):
        return (x + fnp.zeros_like(x) + fnp.ones_like(x) * fnp.full_like(x, 2.0)
                + fnp.full(x.shape, x[0, 0]))

    check_jaxpr_agrees(f, (x32,), what="creation on traced values")
    assert f(x32).dtype == np.float32
    out, _ = fgrad.jvp(f, (x32,), (np.ones_like(x32),))
    assert_same(out, x32 + 2 + x32[0, 0], 0.0)
    for dtype in FLOATS:
        a, b = dtype.type(0.5), dtype.type(2.0)
        check_grads(lambda s, t: fnp.linspace(s, t, 5), (a, b), order=2)
        out, _ = fgrad.jvp(lambda s, t: fnp.linspace(s, t, 5), (a, b), (a, b))
        np.testing.assert_allclose(out, np.linspace(a, b, 5), rtol=1e-6)
        check_grads(lambda s: fnp.full((2, 3), s), (a,), order=2)


# ============================================================================ properties


def _broadcast_operands(draw, num, dtype):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=num, min_dims=0, max_dims=3,
                                                    min_side=1, max_side=3))
    width = 32 if dtype == np.float32 else 64
    elements = st.floats(-10, 10, width=width, allow_nan=False, allow_infinity=False)
    return [draw(hnp.arrays(dtype, s, elements=elements)) for s in shapes.input_shapes]


_OPS = {
    # name: (arity, fgrad, numpy)
    "add": (2, fnp.add, np.add),
    "subtract": (2, fnp.subtract, np.subtract),
    "multiply": (2, fnp.multiply, np.multiply),
    "maximum": (2, fnp.maximum, np.maximum),
    "minimum": (2, fnp.minimum, np.minimum),
    "where_greater": (2, lambda a, b: fnp.where(fnp.greater(a, b), a, b),
                      lambda a, b: np.where(np.greater(a, b), a, b)),
    "tanh": (1, fnp.tanh, np.tanh),
    "sin": (1, fnp.sin, np.sin),
    "negative": (1, fnp.negative, np.negative),
    "abs": (1, fnp.abs, np.abs),
    "half": (1, lambda a: a * 0.5, lambda a: a * 0.5),
    "sum_last": (1, lambda a: fnp.sum(a, axis=-1, keepdims=True) if a.ndim else a,
                 lambda a: np.sum(a, axis=-1, keepdims=True) if a.ndim else a),
}


@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_broadcasting_ops_match_numpy(data, dtype):
    x, y, c = _broadcast_operands(data.draw, 3, dtype)
    cond = c > 0
    for fn, ref in ((fnp.add, np.add), (fnp.multiply, np.multiply),
                    (fnp.maximum, np.maximum)):
        assert_same(fn(x, y), ref(x, y), 0.0, what=fn.__name__)
    assert_same(fnp.where(cond, x, y), np.where(cond, x, y), 0.0, what="where")
    assert_same(fnp.where(cond, x, 1.5), np.where(cond, x, 1.5), 0.0, what="where scalar")


@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_random_expression_matches_numpy(data, dtype):
    """A random program over broadcast-compatible operands: fgrad (eager and staged) and
    NumPy agree on values, shapes and dtypes."""
    inputs = _broadcast_operands(data.draw, 3, dtype)
    steps = data.draw(st.lists(
        st.tuples(st.sampled_from(sorted(_OPS)), st.integers(0, 100), st.integers(0, 100)),
        min_size=1, max_size=6))

    def run(values, which):
        pool = list(values)
        for name, i, j in steps:
            arity, f, r = _OPS[name]
            fn = f if which == "fgrad" else r
            args = [pool[i % len(pool)], pool[j % len(pool)]][:arity]
            pool.append(fn(*args))
        return pool[-1]

    with np.errstate(all="ignore"):
        want = run(inputs, "numpy")
    got = run(inputs, "fgrad")
    tol = REDUCTION_TOL[np.dtype(dtype)]
    assert_same(got, want, tol, what=f"{steps}")
    closed = fgrad.make_jaxpr(lambda *a: run(a, "fgrad"))(*inputs)
    type_check(closed.jaxpr)
    (staged,) = eval_jaxpr(closed.jaxpr, closed.consts, *inputs)
    assert_same(np.asarray(staged), np.asarray(want), tol, what=f"staged {steps}")
