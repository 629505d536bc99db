"""fgrad.lax: the primitive operations (and, in a later issue, structured control flow)."""

from .lax import (  # noqa: F401
    abs, acos, add, argmax, argmin, asin, atan, atan2, bitwise_and, bitwise_not, bitwise_or,
    bitwise_xor, broadcast_in_dim, ceil, concatenate, convert_element_type, cos, cosh, div,
    dot_general, eq, exp, expand_dims, expm1, floor, full, full_like, ge, gt, integer_pow, iota,
    is_finite, le, log, log1p, logistic, lt, max, min, mul, ne, neg, pad, pow, reduce_max,
    reduce_min, reduce_prod, reduce_sum, rem, reshape, rev, round, rsqrt, select_n, sign, sin,
    sinh, slice, sqrt, square, squeeze, stop_gradient, sub, tan, tanh, transpose,
)


def select(pred, on_true, on_false):
    """`on_true` where `pred` is True, else `on_false` (all of one shape)."""
    return select_n(pred, on_false, on_true)
