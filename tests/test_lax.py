"""The op-spec table for the lax primitives, called directly (strict shapes and dtypes),
including what fgrad.numpy does not reach: rem, pad with negative and interior
padding, rev, select_n with an integer selector, reduce_prod with zeros,
integer_pow, logistic, is_finite, iota, argmax/argmin, dot_general with batch
dimensions and odd contraction orders, convert_element_type, broadcast_in_dim,
concatenate, strided slices, squeeze/expand_dims and transpose.
"""

from __future__ import annotations

import numpy as np
import pytest
from _opspec import (
    EQUAL_PAIRS,
    FLOATS,
    REDUCTION_TOL,
    UNARY_SHAPES,
    OpSpec,
    assert_same,
    away_from_zero,
    bools,
    cases,
    check_derivatives,
    check_jaxpr,
    check_jaxpr_agrees,
    check_unique_names,
    check_values,
    distinct,
    int_values,
    nonfinite,
    small_ints,
    uniform,
    with_zeros,
)

import fgrad
from fgrad import lax

NORMAL = uniform(-2.0, 2.0)
POSITIVE = uniform(0.5, 2.0)
NONZERO = away_from_zero()
I32, I64 = np.dtype(np.int32), np.dtype(np.int64)
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
EQUAL_TRIPLES = [(s, s, s) for (s,) in UNARY_SHAPES]


def _cast_like(ref):
    """NumPy's result in the operand's dtype (lax keeps the dtype; NumPy's ufuncs mostly
    do too, this only guards against Python-scalar constants widening it)."""
    return lambda *args: np.asarray(ref(*args)).astype(np.asarray(args[0]).dtype)


# ============================================================================ elementwise


def _unary(name, ref, sampler=NORMAL, **kw):
    return OpSpec(f"{name}", getattr(lax, name), 1, sampler, ref=ref, **kw)


def _logistic_ref(x):
    return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


UNARY_SPECS = [
    _unary("neg", np.negative),
    _unary("abs", np.abs, NONZERO),
    _unary("sign", np.sign, NONZERO),
    _unary("exp", np.exp),
    _unary("log", np.log, POSITIVE),
    _unary("log1p", np.log1p, uniform(-0.5, 2.0)),
    _unary("expm1", np.expm1),
    _unary("sin", np.sin, uniform(-3, 3)),
    _unary("cos", np.cos, uniform(-3, 3)),
    _unary("tan", np.tan, uniform(-1.2, 1.2)),
    _unary("asin", np.arcsin, uniform(-0.9, 0.9)),
    _unary("acos", np.arccos, uniform(-0.9, 0.9)),
    _unary("atan", np.arctan, uniform(-3, 3)),
    _unary("sinh", np.sinh),
    _unary("cosh", np.cosh),
    _unary("tanh", np.tanh),
    _unary("sqrt", np.sqrt, POSITIVE),
    _unary("rsqrt", _cast_like(lambda x: 1 / np.sqrt(x)), POSITIVE),
    _unary("logistic", _logistic_ref, uniform(-6, 6)),
    OpSpec("logistic_extreme", lax.logistic, 1, uniform(-200, 200), ref=_logistic_ref,
           grad=False),  # no overflow warnings or NaNs far out
    _unary("square", np.square),
    OpSpec("stop_gradient", lax.stop_gradient, 1, NORMAL, ref=lambda x: x, grad=False),
]


def _integer_pow(y):
    return OpSpec(f"integer_pow_{y}", lambda x: lax.integer_pow(x, y), 1,
                  NONZERO if y < 0 else NORMAL, ref=lambda x: np.power(x, x.dtype.type(y)))


INTEGER_POW_SPECS = [_integer_pow(y) for y in (0, 1, 2, 3, 5, -1, -2, -3)]


def _binary(name, ref, sampler=NORMAL, **kw):
    return OpSpec(name, getattr(lax, name), 2, sampler, ref=ref, shapes=EQUAL_PAIRS, **kw)


def _rem_args(rng, shapes, dtype):
    """x = (k + u) y with k an integer and u in (0.2, 0.8): x / y is never near an
    integer, where fmod jumps."""
    y = away_from_zero(1.0, 1.5)(rng, shapes[1], dtype)
    q = rng.integers(-2, 3, shapes[0]) + rng.uniform(0.2, 0.8, shapes[0])
    return (q * y).astype(dtype), y


def _max_args(rng, shapes, dtype):
    """Independent values for max/min, kept at least 0.2 apart elementwise (no ties)."""
    x = rng.integers(-2, 3, shapes[0]) + rng.uniform(0, 0.3, shapes[0])
    y = rng.integers(-2, 3, shapes[1]) + 0.5 + rng.uniform(0, 0.3, shapes[1])
    return x.astype(dtype), y.astype(dtype)


BINARY_SPECS = [
    _binary("add", np.add),
    _binary("sub", np.subtract),
    _binary("mul", np.multiply),
    _binary("div", np.divide, (NORMAL, NONZERO)),
    OpSpec("rem", lax.rem, 2, None, ref=np.fmod, shapes=EQUAL_PAIRS, joint=_rem_args),
    _binary("pow", np.power, (POSITIVE, uniform(-1.5, 1.5))),
    _binary("atan2", np.arctan2, (NONZERO, NONZERO)),
    OpSpec("max", lax.max, 2, None, ref=np.maximum, shapes=EQUAL_PAIRS, joint=_max_args),
    OpSpec("min", lax.min, 2, None, ref=np.minimum, shapes=EQUAL_PAIRS, joint=_max_args),
    OpSpec("mul_pyfloat", lambda x: lax.mul(x, 2.0), 1, NORMAL,
           ref=_cast_like(lambda x: x * 2.0)),
    OpSpec("rsub_pyint", lambda x: lax.sub(1, x), 1, NORMAL, ref=_cast_like(lambda x: 1 - x)),
    OpSpec("max_pyfloat", lambda x: lax.max(x, 0.0), 1, NONZERO,
           ref=_cast_like(lambda x: np.maximum(x, 0.0))),
]


def _max_ties(rng, shapes, dtype):
    x = small_ints()(rng, shapes[0], dtype)
    return x, np.where(rng.uniform(0, 1, shapes[0]) < 0.5, x, x + 1).astype(dtype)


# At ties max and min split the derivative evenly (as JAX does): d max(x, x) = (dx + dy) / 2.
TIE_SPECS = [
    OpSpec("max_ties", lax.max, 2, None, ref=np.maximum, shapes=EQUAL_PAIRS, joint=_max_ties,
           grad=False),
    OpSpec("min_ties", lax.min, 2, None, ref=np.minimum, shapes=EQUAL_PAIRS, joint=_max_ties,
           grad=False),
]


def _int_division_ref(x, y):
    """C's integer division: the quotient rounded toward zero."""
    q = np.abs(x) // np.abs(y)
    return (np.sign(x) * np.sign(y) * q).astype(x.dtype)


INT_SPECS = [
    OpSpec("div_int32", lax.div, 2, (int_values(-9, 9, I32), int_values(1, 4, I32)),
           ref=_int_division_ref, dtypes=(I32,), shapes=EQUAL_PAIRS, grad=False),
    OpSpec("div_int64_negative_divisor", lax.div, 2,
           (int_values(-9, 9, I64), int_values(-4, -1, I64)), ref=_int_division_ref,
           dtypes=(I64,), shapes=EQUAL_PAIRS, grad=False),
    OpSpec("rem_int32", lax.rem, 2, (int_values(-9, 9, I32), int_values(1, 4, I32)),
           ref=np.fmod, dtypes=(I32,), shapes=EQUAL_PAIRS, grad=False),
    OpSpec("rem_int64_negative_divisor", lax.rem, 2,
           (int_values(-9, 9, I64), int_values(-4, -1, I64)), ref=np.fmod, dtypes=(I64,),
           shapes=EQUAL_PAIRS, grad=False),
    OpSpec("integer_pow_int32", lambda x: lax.integer_pow(x, 3), 1, int_values(-3, 3, I32),
           ref=lambda x: x ** 3, dtypes=(I32,), grad=False),
    OpSpec("abs_int64", lax.abs, 1, int_values(-3, 3, I64), ref=np.abs, dtypes=(I64,),
           grad=False),
    OpSpec("max_int32", lax.max, 2, int_values(-3, 3, I32), ref=np.maximum, dtypes=(I32,),
           shapes=EQUAL_PAIRS, grad=False),
    OpSpec("neg_int32", lax.neg, 1, int_values(-3, 3, I32), ref=np.negative, dtypes=(I32,),
           grad=False),
    OpSpec("sign_int32", lax.sign, 1, int_values(-3, 3, I32), ref=np.sign, dtypes=(I32,),
           grad=False),
]


def _nondiff_unary(name, ref, sampler, **kw):
    return OpSpec(name, getattr(lax, name), 1, sampler, ref=ref, grad=False, **kw)


def _halves(rng, shape, dtype):
    return (rng.integers(-6, 7, shape) / 2).astype(dtype)


NONDIFF_SPECS = [
    _nondiff_unary("floor", np.floor, uniform(-3, 3)),
    _nondiff_unary("ceil", np.ceil, uniform(-3, 3)),
    _nondiff_unary("round", np.round, _halves),  # half to even, as NumPy
    _nondiff_unary("is_finite", np.isfinite, nonfinite(NORMAL)),
    OpSpec("sign_zeros", lax.sign, 1, small_ints(), ref=np.sign, grad=False),
    *[OpSpec(name, getattr(lax, name), 2, small_ints(), ref=ref, shapes=EQUAL_PAIRS, grad=False)
      for name, ref in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                        ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal))],
    *[OpSpec(f"{name}_bool", getattr(lax, name), 2, bools(), ref=ref, shapes=EQUAL_PAIRS,
             grad=False)
      for name, ref in (("bitwise_and", np.logical_and), ("bitwise_or", np.logical_or),
                        ("bitwise_xor", np.logical_xor))],
    *[OpSpec(f"{name}_int32", getattr(lax, name), 2, int_values(-8, 8, I32), ref=ref,
             shapes=EQUAL_PAIRS, dtypes=(I32,), grad=False)
      for name, ref in (("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                        ("bitwise_xor", np.bitwise_xor))],
    OpSpec("bitwise_not_bool", lax.bitwise_not, 1, bools(), ref=np.logical_not, grad=False),
    OpSpec("bitwise_not_int32", lax.bitwise_not, 1, int_values(-8, 8, I32), ref=np.invert,
           dtypes=(I32,), grad=False),
    OpSpec("eq_int32", lax.eq, 2, int_values(-1, 1, I32), ref=np.equal, shapes=EQUAL_PAIRS,
           dtypes=(I32,), grad=False),
    *TIE_SPECS,
]

# ============================================================================ select_n


def _selector(n):
    return bools() if n == 2 else int_values(0, n - 1, I32)


def _select_ref(which, *cases):
    if which.dtype == np.bool_:
        return np.where(which, cases[1], cases[0])
    return np.choose(which, cases)


SELECT_SPECS = [
    OpSpec("select_n_bool", lax.select_n, 3, (bools(), NORMAL, NORMAL), ref=_select_ref,
           shapes=EQUAL_TRIPLES),
    OpSpec("select_n_int3", lax.select_n, 4, (int_values(0, 2, I32), NORMAL, NORMAL, NORMAL),
           ref=_select_ref, shapes=[(s, s, s, s) for (s,) in UNARY_SHAPES]),
    OpSpec("select_n_int64_2cases", lax.select_n, 3, (int_values(0, 1, I64), NORMAL, NORMAL),
           ref=_select_ref, shapes=EQUAL_TRIPLES),
    OpSpec("select_n_1case", lax.select_n, 2, (int_values(0, 0, I32), NORMAL),
           ref=_select_ref, shapes=EQUAL_PAIRS),
    OpSpec("select", lax.select, 3, (bools(), NORMAL, NORMAL),
           ref=lambda p, t, f: np.where(p, t, f), shapes=EQUAL_TRIPLES),
]

# ============================================================================ conversion


def _convert(name, to, sampler=NORMAL, grad=True, dtypes=FLOATS):
    return OpSpec(f"convert_{name}", lambda x: lax.convert_element_type(x, to), 1, sampler,
                  ref=lambda x: x.astype(to), grad=grad, dtypes=dtypes)


CONVERT_SPECS = [
    _convert("to_f64", F64),
    _convert("to_f32", F32),
    _convert("to_int32", I32, uniform(-3.9, 3.9), grad=False),  # truncation toward zero
    _convert("to_bool", np.bool_, small_ints(-1, 1), grad=False),
    _convert("int32_to_f32", F32, int_values(-3, 3, I32), grad=False, dtypes=(I32,)),
    _convert("bool_to_f64", F64, bools(), grad=False, dtypes=(F64,)),
    _convert("int64_to_int32", I32, int_values(-3, 3, I64), grad=False, dtypes=(I64,)),
]

# ============================================================================ shapes


def _fixed(name, fn, ref, shapes, sampler=NORMAL, nargs=1, **kw):
    return OpSpec(name, fn, nargs, sampler, ref=ref, shapes=shapes, **kw)


def _bcast(shape, dims):
    def ref(x):
        expanded = [1] * len(shape)
        for i, d in enumerate(dims):
            expanded[d] = x.shape[i]
        return np.broadcast_to(x.reshape(expanded), shape)

    return (lambda x: lax.broadcast_in_dim(x, shape, dims)), ref


BROADCAST_SPECS = [
    _fixed("broadcast_in_dim_scalar", *_bcast((2, 3), ()), [((),)]),
    _fixed("broadcast_in_dim_row", *_bcast((2, 3), (1,)), [((3,),)]),
    _fixed("broadcast_in_dim_column", *_bcast((3, 2), (0,)), [((3,),)]),
    _fixed("broadcast_in_dim_stretch", *_bcast((3, 4), (0, 1)), [((3, 1),)]),
    _fixed("broadcast_in_dim_stretch_lead", *_bcast((2, 3, 4), (1, 2)), [((1, 4),)]),
    _fixed("broadcast_in_dim_middle", *_bcast((3, 2, 4), (0, 2)), [((3, 4),)]),
    _fixed("broadcast_in_dim_both", *_bcast((2, 3, 4), (0, 2)), [((1, 1),)]),
    _fixed("broadcast_in_dim_identity_stretch", *_bcast((2, 3, 4), (0, 1, 2)), [((2, 1, 4),)]),
]


def _reshape(new):
    return (lambda x: lax.reshape(x, new)), (lambda x: np.reshape(x, new))


def _transpose(perm):
    return (lambda x: lax.transpose(x, perm)), (lambda x: np.transpose(x, perm))


def _rev(dims):
    return (lambda x: lax.rev(x, dims)), (lambda x: np.flip(x, dims))


def _squeeze(dims):
    return (lambda x: lax.squeeze(x, dims)), (lambda x: np.squeeze(x, dims))


def _expand(dims):
    return (lambda x: lax.expand_dims(x, dims)), (lambda x: np.expand_dims(x, dims))


def _slice(start, limit, strides=None):
    index = tuple(slice(s, lim, st) for s, lim, st in
                  zip(start, limit, strides or (1,) * len(start)))
    return (lambda x: lax.slice(x, start, limit, strides)), (lambda x: x[index])


SHAPE_SPECS = [
    _fixed("reshape_3x4_to_2x6", *_reshape((2, 6)), [((3, 4),)]),
    _fixed("reshape_2x3x4_to_4x6", *_reshape((4, 6)), [((2, 3, 4),)]),
    _fixed("reshape_scalar_to_1x1", *_reshape((1, 1)), [((),)]),
    _fixed("reshape_3x1_to_3", *_reshape((3,)), [((3, 1),)]),
    _fixed("reshape_1x4_to_2x2", *_reshape((2, 2)), [((1, 4),)]),
    _fixed("reshape_3_to_1x3x1", *_reshape((1, 3, 1)), [((3,),)]),
    _fixed("squeeze_3x1", *_squeeze((1,)), [((3, 1),)]),
    _fixed("squeeze_1x4", *_squeeze((0,)), [((1, 4),)]),
    _fixed("squeeze_1x3x1", *_squeeze((0, 2)), [((1, 3, 1),)]),
    _fixed("squeeze_none", *_squeeze(()), [((3, 4),)]),
    _fixed("expand_dims_scalar", *_expand((0,)), [((),)]),
    _fixed("expand_dims_0_2", *_expand((0, 2)), [((3, 4),)]),
    _fixed("expand_dims_last", *_expand((1,)), [((3,),)]),
    _fixed("expand_dims_unsorted", *_expand((3, 0)), [((3, 4),)]),
    _fixed("transpose_201", *_transpose((2, 0, 1)), [((2, 3, 4),)]),
    _fixed("transpose_120", *_transpose((1, 2, 0)), [((2, 3, 4),)]),
    _fixed("transpose_10", *_transpose((1, 0)), [((3, 4),), ((3, 1),), ((1, 4),)]),
    _fixed("transpose_identity", *_transpose((0, 1)), [((3, 4),)]),
    _fixed("rev_0", *_rev((0,)), [((3, 4),), ((3,),), ((3, 1),), ((1, 4),)]),
    _fixed("rev_0_2", *_rev((0, 2)), [((2, 3, 4),)]),
    _fixed("rev_all", *_rev((0, 1)), [((3, 4),)]),
    _fixed("rev_none", *_rev(()), [((3, 4),), ((),)]),
    _fixed("slice_strided", *_slice((0, 1), (3, 4), (2, 2)), [((3, 4),)]),
    _fixed("slice_strided_3d", *_slice((1, 0, 1), (2, 3, 4), (1, 2, 3)), [((2, 3, 4),)]),
    _fixed("slice_stride3", *_slice((1,), (5,), (3,)), [((5,),)]),
    _fixed("slice_unit", *_slice((1, 0), (3, 3)), [((3, 4),)]),
    _fixed("slice_empty", *_slice((1, 2), (1, 4)), [((3, 4),)]),
    _fixed("slice_stride_past_end", *_slice((0,), (3,), (5,)), [((3,),)]),
    _fixed("slice_size1", *_slice((0, 2), (1, 3), (4, 4)), [((1, 4),)]),
    _fixed("slice_scalar", *_slice((), ()), [((),)]),
]


def _pad_ref(x, padding_value, config):
    """lax.pad from its definition: input element i of an axis lands at lo + i (interior + 1);
    positions outside [0, size) are dropped, every other position is padding_value."""
    out_shape = [lo + hi + n + max(n - 1, 0) * it for n, (lo, hi, it) in zip(x.shape, config)]
    out = np.full(out_shape, padding_value, x.dtype)
    keep, where = [], []
    for n, m, (lo, _, it) in zip(x.shape, out_shape, config):
        pos = lo + np.arange(n) * (it + 1)
        ok = (pos >= 0) & (pos < m)
        keep.append(np.nonzero(ok)[0])
        where.append(pos[ok])
    if all(len(k) for k in keep):
        out[np.ix_(*where)] = x[np.ix_(*keep)]
    return out


def _pad(name, config, shapes):
    def fn(x, pv):
        return lax.pad(x, pv, config)

    return OpSpec(f"pad_{name}", fn, 2, NORMAL, ref=lambda x, pv: _pad_ref(x, pv, config),
                  shapes=shapes)


PAD_SPECS = [
    _pad("low_high", ((1, 2, 0), (0, 1, 0)), [((3, 4), ())]),
    _pad("interior", ((0, 0, 1), (1, 0, 2)), [((3, 4), ()), ((3, 1), ()), ((1, 4), ())]),
    _pad("negative", ((-1, 0, 0), (-1, -2, 0)), [((3, 4), ())]),
    _pad("negative_interior", ((-1, 2, 1), (2, -3, 1)), [((3, 4), ())]),
    _pad("crop_into_interior", ((-2, -1, 2),), [((3,), ())]),
    _pad("3d_mixed", ((0, 0, 0), (1, -1, 1), (-1, 2, 2)), [((2, 3, 4), ())]),
    _pad("scalar", (), [((), ())]),
    _pad("crop_everything", ((-3, 0, 0),), [((3,), ())]),
    # Only the padding value is differentiated (the operand is a constant).
    OpSpec("pad_value_only", lambda pv: lax.pad(np.arange(6.0).reshape(2, 3).astype(pv.dtype),
                                                pv, ((1, -1, 1), (0, 2, 0))), 1, NORMAL,
           ref=lambda pv: _pad_ref(np.arange(6.0).reshape(2, 3).astype(pv.dtype), pv,
                                   ((1, -1, 1), (0, 2, 0))), shapes=[((),)]),
]


def _concat(dim):
    return (lambda *xs: lax.concatenate(xs, dim)), (lambda *xs: np.concatenate(xs, dim))


CONCAT_SPECS = [
    _fixed("concatenate_dim1", *_concat(1), [((3, 4), (3, 2), (3, 1))], nargs=3),
    _fixed("concatenate_dim0", *_concat(0), [((2, 3), (1, 3)), ((3,), (4,)), ((1, 4), (1, 4))],
           nargs=2),
    _fixed("concatenate_dim2", *_concat(2), [((2, 3, 4), (2, 3, 1))], nargs=2),
    _fixed("concatenate_one", *_concat(0), [((3,),)]),
]

# ============================================================================ reductions


def _reduce(name, lax_fn, ref, axes, shapes, sampler=NORMAL, **kw):
    return OpSpec(f"{lax_fn.__name__}_{name}", lambda x: lax_fn(x, axes), 1, sampler,
                  ref=lambda x: ref(x, axis=axes), shapes=shapes, tol=REDUCTION_TOL, **kw)


R2 = [((3, 4),), ((3, 1),), ((1, 4),)]
R3 = [((2, 3, 4),)]
PROD = uniform(0.5, 1.5)
REDUCTION_SPECS = [
    _reduce("0", lax.reduce_sum, np.sum, (0,), R2 + [((3,),)]),
    _reduce("1", lax.reduce_sum, np.sum, (1,), R2),
    _reduce("all2", lax.reduce_sum, np.sum, (0, 1), R2),
    _reduce("0_2", lax.reduce_sum, np.sum, (0, 2), R3),
    _reduce("none", lax.reduce_sum, np.sum, (), [((3, 4),), ((),)]),
    _reduce("1", lax.reduce_max, np.max, (1,), R2, distinct()),
    _reduce("0_2", lax.reduce_max, np.max, (0, 2), R3, distinct()),
    _reduce("all3", lax.reduce_min, np.min, (0, 1, 2), R3, distinct()),
    _reduce("0", lax.reduce_min, np.min, (0,), R2 + [((3,),)], distinct()),
    _reduce("1", lax.reduce_prod, np.prod, (1,), R2, PROD),
    _reduce("all2", lax.reduce_prod, np.prod, (0, 1), R2, PROD),
    _reduce("1_2", lax.reduce_prod, np.prod, (1, 2), R3, PROD),
    _reduce("0_one_zero", lax.reduce_prod, np.prod, (0,), R2 + [((3,),)], with_zeros(PROD, 1)),
    _reduce("1_two_zeros", lax.reduce_prod, np.prod, (1,), [((3, 4),)], with_zeros(PROD, 2)),
    _reduce("all_two_zeros", lax.reduce_prod, np.prod, (0, 1, 2), R3, with_zeros(PROD, 2)),
    _reduce("0_2_three_zeros", lax.reduce_prod, np.prod, (0, 2), R3, with_zeros(PROD, 3)),
    _reduce("all_zeros", lax.reduce_prod, np.prod, (1,), [((3, 4),)],
            lambda rng, s, d: np.zeros(s, d)),
    _reduce("long_axis", lax.reduce_prod, np.prod, (0,), [((9,),), ((9, 2),)],
            with_zeros(PROD, 1)),
]


def _max_ties_sampler(rng, shape, dtype):
    return small_ints(0, 1)(rng, shape, dtype)


# Ties in reduce_max / reduce_min share the derivative equally: the tangent is the mean of
# the tied inputs' tangents.
REDUCTION_TIE_SPECS = [
    OpSpec("reduce_max_ties", lambda x: lax.reduce_max(x, (1,)), 1, _max_ties_sampler,
           ref=lambda x: np.max(x, axis=1), shapes=R2, grad=False),
    OpSpec("reduce_min_ties", lambda x: lax.reduce_min(x, (0, 2)), 1, _max_ties_sampler,
           ref=lambda x: np.min(x, axis=(0, 2)), shapes=R3, grad=False),
    OpSpec("reduce_sum_int32", lambda x: lax.reduce_sum(x, (0,)), 1, int_values(-3, 3, I32),
           ref=lambda x: np.sum(x, axis=0, dtype=np.int32), dtypes=(I32,), shapes=R2,
           grad=False),
    OpSpec("reduce_prod_int32", lambda x: lax.reduce_prod(x, (1,)), 1, int_values(-3, 3, I32),
           ref=lambda x: np.prod(x, axis=1, dtype=np.int32), dtypes=(I32,), shapes=R2,
           grad=False),
    OpSpec("reduce_max_bool", lambda x: lax.reduce_max(x, (1,)), 1, bools(),
           ref=lambda x: np.max(x, axis=1), dtypes=(np.dtype(np.bool_),), shapes=R2,
           grad=False),
]


def _arg(lax_fn, ref, axis, index_dtype, shapes, sampler=None):
    name = f"{lax_fn.__name__}_{axis}_{np.dtype(index_dtype).name}"
    return OpSpec(name, lambda x: lax_fn(x, axis, index_dtype), 1, sampler or distinct(),
                  ref=lambda x: ref(x, axis=axis).astype(index_dtype), shapes=shapes,
                  grad=False)


ARG_SPECS = [
    _arg(lax.argmax, np.argmax, 0, I64, R2 + [((3,),)]),
    _arg(lax.argmax, np.argmax, 1, I32, R2),
    _arg(lax.argmin, np.argmin, 2, I32, R3),
    _arg(lax.argmin, np.argmin, 0, I64, R2 + R3),
    _arg(lax.argmax, np.argmax, 1, I64, R2, small_ints(0, 1)),  # ties: the first index
]

# ============================================================================ dot_general


def _dot(name, dims, subscripts, shapes):
    return OpSpec(f"dot_general_{name}", lambda x, y: lax.dot_general(x, y, dims), 2, NORMAL,
                  ref=lambda x, y: np.einsum(subscripts, x, y), shapes=shapes,
                  tol=REDUCTION_TOL)


DOT_SPECS = [
    _dot("matmul", (((1,), (0,)), ((), ())), "ik,kj->ij", [((3, 4), (4, 2))]),
    _dot("contract_first_last", (((0,), (1,)), ((), ())), "ka,bk->ab", [((4, 3), (2, 4))]),
    _dot("batch_middle", (((2,), (0,)), ((1,), (1,))), "ibk,kbj->bij",
         [((3, 2, 4), (4, 2, 5))]),
    _dot("two_contractions_crossed", (((1, 2), (1, 0)), ((), ())), "ijk,kjl->il",
         [((2, 3, 4), (4, 3, 5))]),
    _dot("two_contractions_listed_backwards", (((2, 1), (0, 1)), ((), ())), "ijk,kjl->il",
         [((2, 3, 4), (4, 3, 5))]),
    _dot("two_batch_swapped", (((2,), (2,)), ((0, 1), (1, 0))), "abk,bakl->abl",
         [((2, 3, 4), (3, 2, 4, 5))]),
    _dot("batch_last", (((0,), (1,)), ((2,), (0,))), "kib,bkj->bij",
         [((4, 3, 2), (2, 4, 5))]),
    _dot("outer", (((), ()), ((), ())), "i,j->ij", [((3,), (4,))]),
    _dot("full_contraction", (((0, 1), (0, 1)), ((), ())), "ij,ij->", [((3, 4), (3, 4))]),
    _dot("full_contraction_transposed", (((0, 1), (1, 0)), ((), ())), "ij,ji->",
         [((3, 4), (4, 3))]),
    _dot("batch_and_contract", (((1,), (1,)), ((0,), (0,))), "bk,bk->b", [((3, 4), (3, 4))]),
    _dot("batch_only", (((), ()), ((0,), (0,))), "b,b->b", [((3,), (3,))]),
    _dot("size_one_axes", (((1,), (0,)), ((), ())), "ik,kj->ij", [((3, 1), (1, 4))]),
    _dot("scalar_operand", (((), ()), ((), ())), ",ij->ij", [((), (3, 4))]),
    _dot("vector_matrix", (((0,), (1,)), ((), ())), "k,jk->j", [((4,), (3, 4))]),
]

ALL_SPECS = (UNARY_SPECS + INTEGER_POW_SPECS + BINARY_SPECS + INT_SPECS + NONDIFF_SPECS
             + SELECT_SPECS + CONVERT_SPECS + BROADCAST_SPECS + SHAPE_SPECS + PAD_SPECS
             + CONCAT_SPECS + REDUCTION_SPECS + REDUCTION_TIE_SPECS + ARG_SPECS + DOT_SPECS)
check_unique_names(ALL_SPECS)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(ALL_SPECS))
def test_values(spec, shapes, dtype, representative):
    check_values(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(ALL_SPECS))
def test_jaxpr(spec, shapes, dtype, representative):
    check_jaxpr(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative",
                         cases(ALL_SPECS, grad_only=True))
def test_grads(spec, shapes, dtype, representative):
    check_derivatives(spec, shapes, dtype, representative)


# ============================================================================ targeted checks


@pytest.mark.parametrize("dtype", [I32, F32, F64], ids=lambda d: d.name)
@pytest.mark.parametrize("shape, dimension", [((3, 4), 1), ((2, 3, 4), 0), ((5,), 0),
                                              ((2, 3, 4), 2)])
def test_iota(shape, dimension, dtype):
    def fn():
        return lax.iota(dtype, shape, dimension)

    index = [1] * len(shape)
    index[dimension] = shape[dimension]
    want = np.broadcast_to(np.arange(shape[dimension], dtype=dtype).reshape(index), shape)
    assert_same(fn(), want, 0.0, what="iota")
    check_jaxpr_agrees(fn, (), what="iota")
    out = fn()
    out[...] = 0  # a fresh writable array, not a broadcast view
    assert_same(fn(), want, 0.0, what="iota after writing to an earlier result")


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_tie_derivatives_are_split_evenly(dtype):
    x = np.array([1.0, 2.0, 2.0, 0.5], dtype)
    t = np.array([1.0, 10.0, 100.0, 1000.0], dtype)
    _, dmax = fgrad.jvp(lambda a: lax.reduce_max(a, (0,)), (x,), (t,))
    assert_same(dmax, np.asarray(55.0, dtype), 1e-6)
    y = np.array([1.0, 3.0, 2.0, 0.25], dtype)
    _, d = fgrad.jvp(lax.max, (x, y), (t, t * 2))
    assert_same(d, np.array([1.5, 20.0, 150.0, 1000.0], dtype), 1e-6)
    _, d = fgrad.jvp(lax.min, (x, y), (t, t * 2))
    assert_same(d, np.array([1.5, 10.0, 150.0, 2000.0], dtype), 1e-6)
    ct = fgrad.grad(lambda a: lax.reduce_min(a, (0,)))(np.array([3.0, 1.0, 1.0], dtype))
    assert_same(ct, np.array([0.0, 0.5, 0.5], dtype), 1e-6)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_reduce_prod_zero_derivatives_exact(dtype):
    """With one zero, d prod / dx_i is the product of the others (non-zero only at the
    zero); with two zeros the gradient vanishes but the Hessian does not."""
    x = np.array([2.0, 0.0, 3.0, 0.5], dtype)
    g = fgrad.grad(lambda a: lax.reduce_prod(a, (0,)))(x)
    assert_same(g, np.array([0.0, 3.0, 0.0, 0.0], dtype), 1e-6)
    x2 = np.array([2.0, 0.0, 0.0, 0.5], dtype)
    g2 = fgrad.grad(lambda a: lax.reduce_prod(a, (0,)))(x2)
    assert_same(g2, np.zeros(4, dtype), 1e-6)
    h = fgrad.hessian(lambda a: lax.reduce_prod(a, (0,)))(x2)
    want = np.zeros((4, 4), dtype)
    want[1, 2] = want[2, 1] = 1.0
    assert_same(h, want, 1e-6)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_stop_gradient_and_rounding_have_zero_derivative(dtype):
    x = np.array([0.3, -1.7, 2.2], dtype)
    for fn in (lax.stop_gradient, lax.floor, lax.ceil, lax.round, lax.sign):
        g = fgrad.grad(lambda a, fn=fn: lax.reduce_sum(lax.mul(fn(a), a), (0,)))(x)
        assert_same(g, np.asarray(fn(x)), 1e-6, what=fn.__name__)  # d(f(a) a) = f(a)
        _, t = fgrad.jvp(fn, (x,), (np.ones_like(x),))
        assert_same(t, np.zeros_like(x), 0.0, what=fn.__name__)


def test_python_scalars_take_the_operand_dtype():
    x32 = np.array([1.0, 2.0], np.float32)
    for out in (lax.add(x32, 1.0), lax.mul(2, x32), lax.sub(x32, 0.5), lax.div(x32, 3),
                lax.max(x32, 1.5), lax.pow(x32, 2.0), lax.atan2(1.0, x32)):
        assert out.dtype == np.float32 and out.shape == (2,)
    closed = fgrad.make_jaxpr(lambda a: lax.mul(a, 2.0))(x32)
    assert [(a.shape, a.dtype) for a in closed.out_avals] == [((2,), np.float32)]


INVALID = {
    "add_shapes": lambda: lax.add(np.ones(3), np.ones(4)),
    "add_dtypes": lambda: lax.add(np.ones(3, np.float32), np.ones(3)),
    "sin_int": lambda: lax.sin(np.ones(3, np.int32)),
    "dot_general_batch_sizes": lambda: lax.dot_general(np.ones((3, 4)), np.ones((3, 4)),
                                                       (((1,), (0,)), ((0,), (1,)))),
    "dot_general_contract_sizes": lambda: lax.dot_general(np.ones((3, 4)), np.ones((5, 2)),
                                                          (((1,), (0,)), ((), ()))),
    "dot_general_dtypes": lambda: lax.dot_general(np.ones(3), np.ones(3, np.float32),
                                                  (((0,), (0,)), ((), ()))),
    "broadcast_in_dim_size": lambda: lax.broadcast_in_dim(np.ones(3), (3, 4), (1,)),
    "broadcast_in_dim_order": lambda: lax.broadcast_in_dim(np.ones((3, 4)), (4, 3), (1, 0)),
    "reshape_size": lambda: lax.reshape(np.ones((3, 4)), (5, 2)),
    "squeeze_not_one": lambda: lax.squeeze(np.ones((3, 4)), (0,)),
    "transpose_not_perm": lambda: lax.transpose(np.ones((3, 4)), (0, 0)),
    "slice_past_end": lambda: lax.slice(np.ones((3, 4)), (0, 0), (4, 4)),
    "slice_backwards": lambda: lax.slice(np.ones((3, 4)), (2, 0), (1, 4)),
    "pad_value_dtype": lambda: lax.pad(np.ones(3), np.float32(0), ((0, 0, 0),)),
    "pad_negative_size": lambda: lax.pad(np.ones(3), 0.0, ((-3, -1, 0),)),
    "pad_negative_interior": lambda: lax.pad(np.ones(3), 0.0, ((0, 0, -1),)),
    "concatenate_shapes": lambda: lax.concatenate([np.ones((3, 4)), np.ones((2, 3))], 0),
    "select_n_bool_three": lambda: lax.select_n(np.ones(3, bool), np.ones(3), np.ones(3),
                                                np.ones(3)),
    "select_n_case_dtypes": lambda: lax.select_n(np.ones(3, bool), np.ones(3),
                                                 np.ones(3, np.float32)),
    "select_n_selector_shape": lambda: lax.select_n(np.ones(2, bool), np.ones(3), np.ones(3)),
    "select_n_float_selector": lambda: lax.select_n(np.ones(3), np.ones(3), np.ones(3)),
    "reduce_sum_axis": lambda: lax.reduce_sum(np.ones((3, 4)), (2,)),
    "argmax_axis": lambda: lax.argmax(np.ones((3, 4)), 2),
    "iota_dimension": lambda: lax.iota(np.int32, (3, 4), 2),
    "rev_dimension": lambda: lax.rev(np.ones(3), (1,)),
    "expand_dims_dimension": lambda: lax.expand_dims(np.ones(3), (2,)),
}


@pytest.mark.parametrize("call", list(INVALID.values()), ids=list(INVALID))
def test_invalid_operands_are_rejected_while_tracing(call):
    """The abstract evaluation rules reject what the primitives do not define (the same
    call staged with make_jaxpr fails with a TypeError, not a NumPy error later)."""
    with pytest.raises(TypeError):
        fgrad.make_jaxpr(call)()
