"""The primitive operations, each in one block with all of its rules beside it.

A block reads: the wrapper users call, the `Primitive`, its NumPy `impl`, its
abstract evaluation (shape and dtype rule), its JVP, and its transpose if it is
linear. Batching (`prim.batch`) and Numba lowering (`prim.lowering`) are added
in their own issues, in the same blocks.

Primitives are strict: elementwise operands have one shape and one dtype.
Broadcasting and type promotion are `fgrad.numpy`'s job. As a convenience for
writing rules, a Python scalar operand takes the other operand's type.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import dtypes
from ..core import Primitive, Tracer, get_aval
from ..interpreters.batching import move_batch_axis
from ..interpreters.jvp import Zero, instantiate
from ..interpreters.transpose import is_undefined
from ..ir import ShapedArray

Array = Any  # a NumPy array, a NumPy scalar or a Tracer

# ============================================================================ rule helpers


def _aval(x: Any) -> ShapedArray:
    return x.aval if is_undefined(x) else get_aval(x)


def _shape_error(name: str, *avals: ShapedArray, why: str = "") -> TypeError:
    listed = ", ".join(a.str_short() for a in avals)
    return TypeError(
        f"lax.{name}: operands must have one shape and one dtype, got {listed}{why}. "
        f"fgrad.numpy functions broadcast and promote; lax primitives do not."
    )


def _check_kinds(name: str, aval: ShapedArray, kinds: str) -> None:
    if aval.dtype.kind not in kinds:
        names = {"f": "floating", "i": "signed integer", "u": "unsigned integer",
                 "b": "bool", "c": "complex"}
        allowed = " or ".join(names[k] for k in kinds)
        raise TypeError(f"lax.{name} needs {allowed} operands, got {aval.str_short()}")


def _elementwise_aval(name: str, kinds: str, out_dtype: Any = None):
    def rule(*avals: ShapedArray, **params) -> ShapedArray:
        first = avals[0]
        for a in avals[1:]:
            if a.shape != first.shape or a.dtype != first.dtype:
                raise _shape_error(name, *avals)
        _check_kinds(name, first, kinds)
        weak = all(a.weak_type for a in avals)
        if out_dtype is not None:
            return ShapedArray(first.shape, out_dtype, False)
        return ShapedArray(first.shape, first.dtype, weak)

    return rule


def _quiet(fn: Callable) -> Callable:
    """NumPy without floating-point warnings: inf and nan are results, as in JAX."""

    def impl(*args, **params):
        with np.errstate(all="ignore"):
            return fn(*args, **params)

    impl.__name__ = getattr(fn, "__name__", "impl")
    return impl


def elementwise(name: str, numpy_fn: Callable, kinds: str, out_dtype: Any = None) -> Primitive:
    """A same-shape, same-dtype elementwise primitive computed by a NumPy ufunc."""
    prim = Primitive(name)
    prim.impl = _quiet(numpy_fn)
    prim.abstract_eval_rule = _elementwise_aval(name, kinds, out_dtype)
    defbroadcasting(prim)
    return prim


def defjvp(prim: Primitive, *rules: Callable | None) -> None:
    """Forward rule from one partial rule per argument.

    `rules[i](g, ans, *primals, **params)` is the output tangent contributed by
    argument i's tangent `g`; `None` marks an argument as not differentiable.
    """

    def jvp(primals, tangents, **params):
        ans = prim.bind(*primals, **params)
        out = None
        for rule, t in zip(rules, tangents):
            if rule is None or isinstance(t, Zero):
                continue
            contribution = rule(t, ans, *primals, **params)
            out = contribution if out is None else add(out, contribution)
        return ans, (Zero.like(ans) if out is None else out)

    prim.jvp = jvp


def defjvp_zero(prim: Primitive) -> None:
    """The output does not depend differentiably on any input (integer, bool, rounding)."""

    def jvp(primals, tangents, **params):
        ans = prim.bind(*primals, **params)
        if prim.multiple_results:
            return ans, [Zero.like(a) for a in ans]
        return ans, Zero.like(ans)

    prim.jvp = jvp


def deflinear(prim: Primitive, transpose: Callable) -> None:
    """A primitive linear in all its array inputs: its JVP is itself applied to tangents."""

    def jvp(primals, tangents, **params):
        ans = prim.bind(*primals, **params)
        if all(isinstance(t, Zero) for t in tangents):
            return ans, Zero.like(ans)
        return ans, prim.bind(*map(instantiate, tangents), **params)

    prim.jvp = jvp
    prim.transpose = transpose


def batch_at_front(x: Any, dim: int | None, axis_size: int) -> Any:
    """x with its batch axis first; an unbatched x is broadcast along a new first axis."""
    return move_batch_axis(x, dim, 0, axis_size)


def defbroadcasting(prim: Primitive) -> None:
    """Batching for same-shape elementwise primitives: give every operand the batch axis."""

    def rule(vals, dims, *, axis_size, **params):
        if all(d == dims[0] for d in dims) and dims[0] is not None:
            return prim.bind(*vals, **params), dims[0]
        return prim.bind(*[batch_at_front(v, d, axis_size) for v, d in zip(vals, dims)],
                         **params), 0

    prim.batch = rule


def defvectorized(prim: Primitive) -> None:
    """Batching for one-operand primitives that act on each element alone."""
    prim.batch = lambda vals, dims, *, axis_size, **params: (prim.bind(vals[0], **params),
                                                              dims[0])


def _shifted(axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(a + 1 for a in axes)


def _scalar_to(x: Any, like: Any) -> Any:
    """A Python scalar becomes a constant of `like`'s shape and dtype (for writing rules)."""
    if dtypes.python_scalar_dtype(x) is None:
        return x
    aval = get_aval(like)
    if aval.weak_type and dtypes.python_scalar_dtype(x) == aval.dtype:
        return broadcast_in_dim(x, aval.shape, ())  # stays weak, like its partner
    return full(aval.shape, x, aval.dtype)


def _binary(prim: Primitive, x: Any, y: Any) -> Array:
    if dtypes.python_scalar_dtype(x) is not None:  # exact Python types: np.float64 is a float
        x = _scalar_to(x, y)
    elif dtypes.python_scalar_dtype(y) is not None:
        y = _scalar_to(y, x)
    return prim.bind(x, y)


# ============================================================================ arithmetic

FLOAT = "f"
NUMERIC = "iuf"
INTEGRAL = "biu"
ANY = "biuf"


def add(x: Array, y: Array) -> Array:
    return _binary(add_p, x, y)


add_p = elementwise("add", np.add, NUMERIC)
deflinear(add_p, lambda ct, x, y: [ct, ct])


def sub(x: Array, y: Array) -> Array:
    return _binary(sub_p, x, y)


sub_p = elementwise("sub", np.subtract, NUMERIC)
deflinear(sub_p, lambda ct, x, y: [ct, neg(ct)])


def mul(x: Array, y: Array) -> Array:
    return _binary(mul_p, x, y)


def _mul_transpose(ct, x, y):
    if is_undefined(x) and is_undefined(y):
        raise TypeError("mul of two tangents is not linear; a JVP rule is wrong")
    return [mul(ct, y), None] if is_undefined(x) else [None, mul(x, ct)]


mul_p = elementwise("mul", np.multiply, NUMERIC)
defjvp(mul_p, lambda g, ans, x, y: mul(g, y), lambda g, ans, x, y: mul(x, g))
mul_p.transpose = _mul_transpose


def div(x: Array, y: Array) -> Array:
    """True division for floats; division rounding toward zero for integers (as C, as JAX)."""
    return _binary(div_p, x, y)


def _div_impl(x, y):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind in "iu":
        q = np.floor_divide(x, y)
        fix = (np.remainder(x, y) != 0) & ((x < 0) != (y < 0))
        return (q + fix.astype(q.dtype)).astype(x.dtype)
    return np.true_divide(x, y)


def _div_transpose(ct, x, y):
    if is_undefined(y):
        raise TypeError("division by a tangent is not linear; a JVP rule is wrong")
    return [div(ct, y), None]


div_p = elementwise("div", _div_impl, NUMERIC)
defjvp(div_p, lambda g, ans, x, y: div(g, y), lambda g, ans, x, y: neg(mul(g, div(ans, y))))
div_p.transpose = _div_transpose


def rem(x: Array, y: Array) -> Array:
    """Remainder with the sign of the dividend (C's fmod)."""
    return _binary(rem_p, x, y)


rem_p = elementwise("rem", np.fmod, NUMERIC)
defjvp(
    rem_p,
    lambda g, ans, x, y: g,
    lambda g, ans, x, y: mul(neg(g), mul(sign(div(x, y)), floor(abs(div(x, y))))),
)


def neg(x: Array) -> Array:
    return neg_p.bind(x)


neg_p = elementwise("neg", np.negative, NUMERIC)
deflinear(neg_p, lambda ct, x: [neg(ct)])


def _balanced_pick(x, y, pick_x):
    """Weights 1, 1/2, 0 for where x wins, ties, loses: max/min split ties evenly."""
    one, half = full_like(x, 1), full_like(x, 0.5)
    zero = full_like(x, 0)
    return select_n(pick_x, select_n(eq(x, y), zero, half), one)


def max(x: Array, y: Array) -> Array:  # noqa: A001 (lax's name)
    return _binary(max_p, x, y)


max_p = elementwise("max", np.maximum, NUMERIC)
defjvp(
    max_p,
    lambda g, ans, x, y: mul(g, _balanced_pick(x, y, gt(x, y))),
    lambda g, ans, x, y: mul(g, _balanced_pick(y, x, gt(y, x))),
)


def min(x: Array, y: Array) -> Array:  # noqa: A001 (lax's name)
    return _binary(min_p, x, y)


min_p = elementwise("min", np.minimum, NUMERIC)
defjvp(
    min_p,
    lambda g, ans, x, y: mul(g, _balanced_pick(x, y, lt(x, y))),
    lambda g, ans, x, y: mul(g, _balanced_pick(y, x, lt(y, x))),
)


def pow(x: Array, y: Array) -> Array:  # noqa: A001 (lax's name)
    """`x ** y` for floating x and y."""
    return _binary(pow_p, x, y)


def _pow_jvp_base(g, ans, x, y):
    # d/dx x**y = y * x**(y-1), taken as 0 where y == 0 (so 0**0 has derivative 0).
    safe = select_n(eq(y, full_like(y, 0)), mul(y, pow(x, sub(y, 1))), full_like(x, 0))
    return mul(g, safe)


def _pow_jvp_exponent(g, ans, x, y):
    # d/dy x**y = log(x) * x**y, taken as 0 where x == 0 (x**y is 0 or 1 there).
    is_zero = eq(x, full_like(x, 0))
    log_x = log(select_n(is_zero, x, full_like(x, 1)))
    return mul(g, mul(log_x, ans))


pow_p = elementwise("pow", np.power, FLOAT)
defjvp(pow_p, _pow_jvp_base, _pow_jvp_exponent)


def integer_pow(x: Array, y: int) -> Array:
    """`x ** y` for a static Python integer y."""
    if y == 1:
        return x
    return integer_pow_p.bind(x, y=int(y))


def _integer_pow_impl(x, *, y):
    x = np.asarray(x)
    if y < 0 and x.dtype.kind in "iu":
        raise ValueError(f"integer_pow: integers cannot be raised to the negative power {y}")
    with np.errstate(all="ignore"):
        return np.power(x, x.dtype.type(y)) if y >= 0 else np.reciprocal(np.power(x, -y))


def _integer_pow_jvp(g, ans, x, *, y):
    if y == 0:
        return full_like(g, 0)
    return mul(g, mul(full_like(x, y), integer_pow(x, y - 1) if y != 1 else full_like(x, 1)))


integer_pow_p = Primitive("integer_pow")
integer_pow_p.impl = _integer_pow_impl
integer_pow_p.abstract_eval_rule = _elementwise_aval("integer_pow", NUMERIC)
defvectorized(integer_pow_p)
defjvp(integer_pow_p, _integer_pow_jvp)


def atan2(x: Array, y: Array) -> Array:
    return _binary(atan2_p, x, y)


atan2_p = elementwise("atan2", np.arctan2, FLOAT)
defjvp(
    atan2_p,
    lambda g, ans, x, y: mul(g, div(y, add(square(x), square(y)))),
    lambda g, ans, x, y: mul(g, div(neg(x), add(square(x), square(y)))),
)


def square(x: Array) -> Array:
    return integer_pow(x, 2)


# ============================================================================ unary math


def _unary(name: str, numpy_fn: Callable, jvp_rule: Callable | None, kinds: str = FLOAT):
    prim = elementwise(name, numpy_fn, kinds)
    if jvp_rule is None:
        defjvp_zero(prim)
    else:
        defjvp(prim, jvp_rule)
    return prim


exp_p = _unary("exp", np.exp, lambda g, ans, x: mul(g, ans))
log_p = _unary("log", np.log, lambda g, ans, x: div(g, x))
log1p_p = _unary("log1p", np.log1p, lambda g, ans, x: div(g, add(x, 1)))
expm1_p = _unary("expm1", np.expm1, lambda g, ans, x: mul(g, add(ans, 1)))
sin_p = _unary("sin", np.sin, lambda g, ans, x: mul(g, cos(x)))
cos_p = _unary("cos", np.cos, lambda g, ans, x: neg(mul(g, sin(x))))
tan_p = _unary("tan", np.tan, lambda g, ans, x: mul(g, add(square(ans), 1)))
asin_p = _unary("asin", np.arcsin, lambda g, ans, x: mul(g, rsqrt(sub(1, square(x)))))
acos_p = _unary("acos", np.arccos, lambda g, ans, x: neg(mul(g, rsqrt(sub(1, square(x))))))
atan_p = _unary("atan", np.arctan, lambda g, ans, x: div(g, add(square(x), 1)))
sinh_p = _unary("sinh", np.sinh, lambda g, ans, x: mul(g, cosh(x)))
cosh_p = _unary("cosh", np.cosh, lambda g, ans, x: mul(g, sinh(x)))
tanh_p = _unary("tanh", np.tanh, lambda g, ans, x: mul(g, sub(1, square(ans))))
sqrt_p = _unary("sqrt", np.sqrt, lambda g, ans, x: div(g, mul(ans, 2)))
rsqrt_p = _unary(
    "rsqrt", lambda x: np.reciprocal(np.sqrt(x)), lambda g, ans, x: mul(g, mul(div(ans, x), -0.5))
)


def _logistic_impl(x):
    # 1 / (1 + exp(-x)) without overflow: exp is only ever taken of a non-positive number.
    e = np.exp(-np.abs(x))
    return np.where(np.asarray(x) >= 0, 1 / (1 + e), e / (1 + e)).astype(np.asarray(x).dtype)


logistic_p = _unary("logistic", _logistic_impl, lambda g, ans, x: mul(g, mul(ans, sub(1, ans))))
abs_p = _unary("abs", np.abs, lambda g, ans, x: mul(g, sign(x)), NUMERIC)
sign_p = _unary("sign", np.sign, None, NUMERIC)
floor_p = _unary("floor", np.floor, None)
ceil_p = _unary("ceil", np.ceil, None)
round_p = _unary("round", np.round, None)  # half to even, as NumPy
is_finite_p = elementwise("is_finite", np.isfinite, FLOAT, out_dtype=np.bool_)
defjvp_zero(is_finite_p)


def exp(x: Array) -> Array:
    return exp_p.bind(x)


def log(x: Array) -> Array:
    return log_p.bind(x)


def log1p(x: Array) -> Array:
    return log1p_p.bind(x)


def expm1(x: Array) -> Array:
    return expm1_p.bind(x)


def sin(x: Array) -> Array:
    return sin_p.bind(x)


def cos(x: Array) -> Array:
    return cos_p.bind(x)


def tan(x: Array) -> Array:
    return tan_p.bind(x)


def asin(x: Array) -> Array:
    return asin_p.bind(x)


def acos(x: Array) -> Array:
    return acos_p.bind(x)


def atan(x: Array) -> Array:
    return atan_p.bind(x)


def sinh(x: Array) -> Array:
    return sinh_p.bind(x)


def cosh(x: Array) -> Array:
    return cosh_p.bind(x)


def tanh(x: Array) -> Array:
    return tanh_p.bind(x)


def sqrt(x: Array) -> Array:
    return sqrt_p.bind(x)


def rsqrt(x: Array) -> Array:
    return rsqrt_p.bind(x)


def logistic(x: Array) -> Array:
    return logistic_p.bind(x)


def abs(x: Array) -> Array:  # noqa: A001 (lax's name)
    return abs_p.bind(x)


def sign(x: Array) -> Array:
    return sign_p.bind(x)


def floor(x: Array) -> Array:
    return floor_p.bind(x)


def ceil(x: Array) -> Array:
    return ceil_p.bind(x)


def round(x: Array) -> Array:  # noqa: A001 (lax's name)
    return round_p.bind(x)


def is_finite(x: Array) -> Array:
    return is_finite_p.bind(x)


# ============================================================================ comparison, logic


def _comparison(name: str, numpy_fn: Callable) -> Primitive:
    prim = elementwise(name, numpy_fn, ANY, out_dtype=np.bool_)
    defjvp_zero(prim)
    return prim


eq_p = _comparison("eq", np.equal)
ne_p = _comparison("ne", np.not_equal)
lt_p = _comparison("lt", np.less)
le_p = _comparison("le", np.less_equal)
gt_p = _comparison("gt", np.greater)
ge_p = _comparison("ge", np.greater_equal)


def eq(x: Array, y: Array) -> Array:
    return _binary(eq_p, x, y)


def ne(x: Array, y: Array) -> Array:
    return _binary(ne_p, x, y)


def lt(x: Array, y: Array) -> Array:
    return _binary(lt_p, x, y)


def le(x: Array, y: Array) -> Array:
    return _binary(le_p, x, y)


def gt(x: Array, y: Array) -> Array:
    return _binary(gt_p, x, y)


def ge(x: Array, y: Array) -> Array:
    return _binary(ge_p, x, y)


def _bitwise(name: str, numpy_fn: Callable) -> Primitive:
    prim = elementwise(name, numpy_fn, INTEGRAL)
    defjvp_zero(prim)
    return prim


and_p = _bitwise("and", np.bitwise_and)
or_p = _bitwise("or", np.bitwise_or)
xor_p = _bitwise("xor", np.bitwise_xor)
not_p = _bitwise("not", np.invert)


def bitwise_and(x: Array, y: Array) -> Array:
    """Logical and for bools, bitwise and for integers."""
    return _binary(and_p, x, y)


def bitwise_or(x: Array, y: Array) -> Array:
    return _binary(or_p, x, y)


def bitwise_xor(x: Array, y: Array) -> Array:
    return _binary(xor_p, x, y)


def bitwise_not(x: Array) -> Array:
    return not_p.bind(x)


# ============================================================================ select


def select_n(which: Array, *cases: Array) -> Array:
    """`cases[which]` elementwise; `which` is bool (two cases) or integer."""
    return select_n_p.bind(which, *cases)


def _select_n_impl(which, *cases):
    which = np.asarray(which)
    if which.dtype == np.bool_:
        return np.where(which, cases[1], cases[0])
    return np.choose(which, cases, mode="clip")


def _select_n_aval(which: ShapedArray, *cases: ShapedArray) -> ShapedArray:
    if not cases:
        raise TypeError("lax.select_n needs at least one case")
    first = cases[0]
    for c in cases[1:]:
        if c.shape != first.shape or c.dtype != first.dtype:
            raise _shape_error("select_n", *cases, why=" (all cases must match)")
    if which.shape != first.shape:
        raise TypeError(
            f"lax.select_n: the selector has shape {which.shape} but the cases have "
            f"shape {first.shape}"
        )
    if which.dtype.kind not in "biu" or (which.dtype.kind == "b" and len(cases) != 2):
        raise TypeError(
            f"lax.select_n: the selector must be bool (with two cases) or integer, "
            f"got {which.str_short()} with {len(cases)} cases"
        )
    return ShapedArray(first.shape, first.dtype, all(c.weak_type for c in cases))


def _select_n_jvp(primals, tangents):
    which, *cases = primals
    ans = select_n(which, *cases)
    if all(isinstance(t, Zero) for t in tangents[1:]):
        return ans, Zero.like(ans)
    return ans, select_n(which, *map(instantiate, tangents[1:]))


def _select_n_transpose(ct, which, *cases):
    if is_undefined(which):
        raise TypeError("select_n's selector cannot be a tangent")
    zeros = full_like(ct, 0)
    out: list[Any] = [None]
    for i, case in enumerate(cases):
        if is_undefined(case):
            out.append(select_n(which, *[ct if j == i else zeros for j in range(len(cases))]))
        else:
            out.append(None)
    return out


select_n_p = Primitive("select_n")
select_n_p.impl = _select_n_impl
select_n_p.abstract_eval_rule = _select_n_aval
select_n_p.jvp = _select_n_jvp
select_n_p.transpose = _select_n_transpose
defbroadcasting(select_n_p)


# ============================================================================ dtype conversion


def convert_element_type(x: Array, new_dtype: Any, weak_type: bool = False) -> Array:
    new_dtype = np.dtype(new_dtype)
    aval = get_aval(x)
    if aval.dtype == new_dtype and aval.weak_type == weak_type:
        return x
    return convert_element_type_p.bind(x, new_dtype=new_dtype, weak_type=weak_type)


def _convert_jvp(primals, tangents, *, new_dtype, weak_type):
    (x,), (t,) = primals, tangents
    ans = convert_element_type(x, new_dtype, weak_type)
    if isinstance(t, Zero) or not dtypes.is_differentiable(new_dtype):
        return ans, Zero.like(ans)
    return ans, convert_element_type(t, new_dtype, weak_type)


def _convert_transpose(ct, x, *, new_dtype, weak_type):
    return [convert_element_type(ct, x.aval.dtype, x.aval.weak_type)]


convert_element_type_p = Primitive("convert_element_type")
convert_element_type_p.impl = lambda x, *, new_dtype, weak_type: np.asarray(x).astype(new_dtype)
convert_element_type_p.abstract_eval_rule = (
    lambda x, *, new_dtype, weak_type: ShapedArray(x.shape, new_dtype, weak_type)
)
convert_element_type_p.jvp = _convert_jvp
convert_element_type_p.transpose = _convert_transpose
defvectorized(convert_element_type_p)


# ============================================================================ shapes


def full(shape: Sequence[int], fill_value: Any, dtype: Any) -> Array:
    """An array of `shape` filled with `fill_value`, via `broadcast_in_dim` of a scalar."""
    if isinstance(fill_value, Tracer):
        scalar = convert_element_type(fill_value, dtype)
    else:
        scalar = np.asarray(fill_value, dtype=dtype)
    return broadcast_in_dim(scalar, tuple(shape), ())


def full_like(x: Any, fill_value: Any) -> Array:
    aval = _aval(x)
    return full(aval.shape, fill_value, aval.dtype)


def broadcast_in_dim(x: Array, shape: Sequence[int], broadcast_dimensions: Sequence[int]) -> Array:
    """Place x's axis i at output axis `broadcast_dimensions[i]`; size-1 axes stretch."""
    shape, dims = tuple(int(d) for d in shape), tuple(int(d) for d in broadcast_dimensions)
    if get_aval(x).shape == shape and dims == tuple(range(len(shape))):
        return x
    return broadcast_in_dim_p.bind(x, shape=shape, broadcast_dimensions=dims)


def _broadcast_in_dim_impl(x, *, shape, broadcast_dimensions):
    x = np.asarray(x)
    expanded = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        expanded[d] = x.shape[i]
    return np.broadcast_to(x.reshape(expanded), shape)


def _broadcast_in_dim_aval(x, *, shape, broadcast_dimensions):
    ok = len(broadcast_dimensions) == x.ndim and all(
        0 <= d < len(shape) and x.shape[i] in (1, shape[d])
        for i, d in enumerate(broadcast_dimensions)
    )
    ok = ok and list(broadcast_dimensions) == sorted(set(broadcast_dimensions))
    if not ok:
        raise TypeError(
            f"lax.broadcast_in_dim: cannot broadcast an operand of shape {x.shape} to {shape} "
            f"with broadcast_dimensions={broadcast_dimensions} (one increasing output axis "
            "per operand axis, of equal size or size 1 in the operand)"
        )
    return ShapedArray(shape, x.dtype, x.weak_type)


def _broadcast_in_dim_transpose(ct, x, *, shape, broadcast_dimensions):
    in_shape = x.aval.shape
    new_axes = [d for d in range(len(shape)) if d not in broadcast_dimensions]
    stretched = [d for i, d in enumerate(broadcast_dimensions)
                 if in_shape[i] == 1 and shape[d] != 1]
    summed = reduce_sum(ct, tuple(sorted(new_axes + stretched)))
    return [reshape(summed, in_shape)]


broadcast_in_dim_p = Primitive("broadcast_in_dim")
broadcast_in_dim_p.impl = _broadcast_in_dim_impl
broadcast_in_dim_p.abstract_eval_rule = _broadcast_in_dim_aval
deflinear(broadcast_in_dim_p, _broadcast_in_dim_transpose)
broadcast_in_dim_p.batch = lambda vals, dims, *, axis_size, shape, broadcast_dimensions: (
    broadcast_in_dim(batch_at_front(vals[0], dims[0], axis_size), (axis_size, *shape),
                     (0, *_shifted(broadcast_dimensions))), 0)


def reshape(x: Array, new_sizes: Sequence[int]) -> Array:
    new_sizes = tuple(int(d) for d in new_sizes)
    if get_aval(x).shape == new_sizes:
        return x
    return reshape_p.bind(x, new_sizes=new_sizes)


def _reshape_aval(x, *, new_sizes):
    if int(np.prod(new_sizes, dtype=np.int64)) != x.size or any(d < 0 for d in new_sizes):
        raise TypeError(f"lax.reshape: cannot reshape an array of shape {x.shape} "
                        f"(size {x.size}) into shape {new_sizes}")
    return ShapedArray(new_sizes, x.dtype, x.weak_type)


reshape_p = Primitive("reshape")
reshape_p.impl = lambda x, *, new_sizes: np.reshape(x, new_sizes)
reshape_p.abstract_eval_rule = _reshape_aval
deflinear(reshape_p, lambda ct, x, *, new_sizes: [reshape(ct, x.aval.shape)])
reshape_p.batch = lambda vals, dims, *, axis_size, new_sizes: (
    reshape(batch_at_front(vals[0], dims[0], axis_size), (axis_size, *new_sizes)), 0)


def squeeze(x: Array, dimensions: Sequence[int]) -> Array:
    return squeeze_p.bind(x, dimensions=tuple(sorted(int(d) for d in dimensions)))


def _squeeze_aval(x, *, dimensions):
    if any(not 0 <= d < x.ndim or x.shape[d] != 1 for d in dimensions):
        raise TypeError(f"lax.squeeze: dimensions {dimensions} are not all size-1 axes of "
                        f"shape {x.shape}")
    shape = [s for i, s in enumerate(x.shape) if i not in dimensions]
    return ShapedArray(shape, x.dtype, x.weak_type)


squeeze_p = Primitive("squeeze")
squeeze_p.impl = lambda x, *, dimensions: np.squeeze(x, axis=dimensions)
squeeze_p.abstract_eval_rule = _squeeze_aval
deflinear(squeeze_p, lambda ct, x, *, dimensions: [expand_dims(ct, dimensions)])
squeeze_p.batch = lambda vals, dims, *, axis_size, dimensions: (
    squeeze(batch_at_front(vals[0], dims[0], axis_size), _shifted(dimensions)), 0)


def expand_dims(x: Array, dimensions: Sequence[int]) -> Array:
    """Insert size-1 axes so that they sit at `dimensions` of the result."""
    return expand_dims_p.bind(x, dimensions=tuple(sorted(int(d) for d in dimensions)))


def _expand_dims_aval(x, *, dimensions):
    ndim = x.ndim + len(dimensions)
    if any(not 0 <= d < ndim for d in dimensions) or len(set(dimensions)) != len(dimensions):
        raise TypeError(f"lax.expand_dims: bad dimensions {dimensions} for shape {x.shape}")
    shape, rest = [], iter(x.shape)
    for i in range(ndim):
        shape.append(1 if i in dimensions else next(rest))
    return ShapedArray(shape, x.dtype, x.weak_type)


expand_dims_p = Primitive("expand_dims")
expand_dims_p.impl = lambda x, *, dimensions: np.expand_dims(x, dimensions)
expand_dims_p.abstract_eval_rule = _expand_dims_aval
deflinear(expand_dims_p, lambda ct, x, *, dimensions: [squeeze(ct, dimensions)])
expand_dims_p.batch = lambda vals, dims, *, axis_size, dimensions: (
    expand_dims(batch_at_front(vals[0], dims[0], axis_size), _shifted(dimensions)), 0)


def transpose(x: Array, permutation: Sequence[int]) -> Array:
    permutation = tuple(int(p) for p in permutation)
    if permutation == tuple(range(len(permutation))):
        return x
    return transpose_p.bind(x, permutation=permutation)


def _transpose_aval(x, *, permutation):
    if sorted(permutation) != list(range(x.ndim)):
        raise TypeError(f"lax.transpose: {permutation} is not a permutation of the axes of "
                        f"shape {x.shape}")
    return ShapedArray([x.shape[p] for p in permutation], x.dtype, x.weak_type)


transpose_p = Primitive("transpose")
transpose_p.impl = lambda x, *, permutation: np.transpose(x, permutation)
transpose_p.abstract_eval_rule = _transpose_aval
deflinear(transpose_p,
          lambda ct, x, *, permutation: [transpose(ct, tuple(np.argsort(permutation)))])
transpose_p.batch = lambda vals, dims, *, axis_size, permutation: (
    transpose(batch_at_front(vals[0], dims[0], axis_size), (0, *_shifted(permutation))), 0)


def rev(x: Array, dimensions: Sequence[int]) -> Array:
    """Reverse the order of elements along `dimensions`."""
    return rev_p.bind(x, dimensions=tuple(sorted(int(d) for d in dimensions)))


def _rev_aval(x, *, dimensions):
    if any(not 0 <= d < x.ndim for d in dimensions):
        raise TypeError(f"lax.rev: dimensions {dimensions} out of range for shape {x.shape}")
    return x


rev_p = Primitive("rev")
rev_p.impl = lambda x, *, dimensions: np.flip(x, dimensions)
rev_p.abstract_eval_rule = _rev_aval
deflinear(rev_p, lambda ct, x, *, dimensions: [rev(ct, dimensions)])
rev_p.batch = lambda vals, dims, *, axis_size, dimensions: (
    rev(batch_at_front(vals[0], dims[0], axis_size), _shifted(dimensions)), 0)


def slice(  # noqa: A001 (lax's name)
    x: Array,
    start_indices: Sequence[int],
    limit_indices: Sequence[int],
    strides: Sequence[int] | None = None,
) -> Array:
    """x[start:limit:stride] along every axis; indices are static and non-negative."""
    strides = tuple(strides) if strides is not None else (1,) * len(start_indices)
    return slice_p.bind(x, start_indices=tuple(int(i) for i in start_indices),
                        limit_indices=tuple(int(i) for i in limit_indices),
                        strides=tuple(int(s) for s in strides))


def _slice_impl(x, *, start_indices, limit_indices, strides):
    index = tuple(map(builtins.slice, start_indices, limit_indices, strides))
    return np.asarray(x)[index]


def _slice_aval(x, *, start_indices, limit_indices, strides):
    ok = len(start_indices) == len(limit_indices) == len(strides) == x.ndim and all(
        0 <= s <= lim <= n and st >= 1
        for s, lim, n, st in zip(start_indices, limit_indices, x.shape, strides)
    )
    if not ok:
        raise TypeError(
            f"lax.slice: start {start_indices}, limit {limit_indices}, strides {strides} do "
            f"not fit shape {x.shape} (need 0 <= start <= limit <= size, stride >= 1)"
        )
    shape = [-(-(lim - s) // st) for s, lim, st in zip(start_indices, limit_indices, strides)]
    return ShapedArray(shape, x.dtype, x.weak_type)


def _slice_transpose(ct, x, *, start_indices, limit_indices, strides):
    in_shape = x.aval.shape
    out_shape = _aval(ct).shape
    if 0 in out_shape:
        return [full(in_shape, 0, _aval(ct).dtype)]
    config = []
    for s, n, st, m in zip(start_indices, in_shape, strides, out_shape):
        last = s + (m - 1) * st
        config.append((s, n - last - 1, st - 1))
    return [pad(ct, np.zeros((), _aval(ct).dtype), tuple(config))]


slice_p = Primitive("slice")
slice_p.impl = _slice_impl
slice_p.abstract_eval_rule = _slice_aval
deflinear(slice_p, _slice_transpose)
slice_p.batch = lambda vals, dims, *, axis_size, start_indices, limit_indices, strides: (
    slice(batch_at_front(vals[0], dims[0], axis_size), (0, *start_indices),
          (axis_size, *limit_indices), (1, *strides)), 0)


def pad(x: Array, padding_value: Array, padding_config: Sequence[tuple[int, int, int]]) -> Array:
    """Pad each axis with `(low, high, interior)` copies of the scalar `padding_value`;
    negative low/high crop."""
    config = tuple((int(lo), int(hi), int(it)) for lo, hi, it in padding_config)
    padding_value = _scalar_to(padding_value, np.zeros((), get_aval(x).dtype))
    return pad_p.bind(x, padding_value, padding_config=config)


def _pad_impl(x, padding_value, *, padding_config):
    out = np.asarray(x)
    for axis, (lo, hi, interior) in enumerate(padding_config):
        n = out.shape[axis]
        if interior > 0 and n > 1:
            shape = list(out.shape)
            shape[axis] = n + (n - 1) * interior
            spread = np.full(shape, padding_value, out.dtype)
            index: list[Any] = [builtins.slice(None)] * out.ndim
            index[axis] = np.arange(0, shape[axis], interior + 1)
            spread[tuple(index)] = out
            out = spread
        widths = [(0, 0)] * out.ndim
        widths[axis] = (builtins.max(lo, 0), builtins.max(hi, 0))
        out = np.pad(out, widths, constant_values=padding_value)
        if lo < 0 or hi < 0:
            keep = np.arange(builtins.max(-lo, 0), out.shape[axis] - builtins.max(-hi, 0))
            out = np.take(out, keep, axis=axis)
    return out


def _pad_aval(x, padding_value, *, padding_config):
    if padding_value.shape != () or padding_value.dtype != x.dtype:
        raise TypeError(f"lax.pad: padding_value must be a scalar of the operand's dtype "
                        f"{x.dtype}, got {padding_value.str_short()}")
    if len(padding_config) != x.ndim:
        raise TypeError(f"lax.pad: {len(padding_config)} (low, high, interior) triples "
                        f"for an operand of shape {x.shape}")
    shape = []
    for n, (lo, hi, interior) in zip(x.shape, padding_config):
        size = lo + hi + n + builtins.max(n - 1, 0) * interior
        if interior < 0 or size < 0:
            raise TypeError(f"lax.pad: config {padding_config} gives a negative size for "
                            f"shape {x.shape}")
        shape.append(size)
    return ShapedArray(shape, x.dtype, x.weak_type)


def _pad_transpose(ct, x, padding_value, *, padding_config):
    ct_x = ct_pv = None
    if is_undefined(x):
        unpadded = pad(ct, np.zeros((), _aval(ct).dtype),
                       tuple((-lo, -hi, 0) for lo, hi, _ in padding_config))
        ct_x = slice(unpadded, (0,) * len(padding_config), _aval(unpadded).shape,
                     tuple(interior + 1 for _, _, interior in padding_config))
    if is_undefined(padding_value):
        inner = ct_x if ct_x is not None else _pad_transpose(
            ct, _as_undefined(x), padding_value, padding_config=padding_config)[0]
        all_axes = tuple(range(_aval(ct).ndim))
        ct_pv = sub(reduce_sum(ct, all_axes), reduce_sum(inner, all_axes))
    return [ct_x, ct_pv]


def _as_undefined(x):
    from ..interpreters.transpose import UndefinedPrimal

    return x if is_undefined(x) else UndefinedPrimal(get_aval(x))


pad_p = Primitive("pad")
pad_p.impl = _pad_impl
pad_p.abstract_eval_rule = _pad_aval
deflinear(pad_p, _pad_transpose)


def _pad_batch(vals, dims, *, axis_size, padding_config):
    x = batch_at_front(vals[0], dims[0], axis_size)
    config = ((0, 0, 0), *padding_config)
    if dims[1] is None:
        return pad(x, vals[1], config), 0
    # A batched padding value: pad with zeros, then put each member's value where
    # padding landed (found by padding a mask).
    dtype = get_aval(x).dtype
    padded = pad(x, np.zeros((), dtype), config)
    shape = get_aval(padded).shape
    inside = pad(full(get_aval(x).shape, True, np.bool_), np.zeros((), np.bool_), config)
    fill = broadcast_in_dim(batch_at_front(vals[1], dims[1], axis_size), shape, (0,))
    return select_n(inside, fill, padded), 0


pad_p.batch = _pad_batch


def concatenate(operands: Sequence[Array], dimension: int) -> Array:
    operands = list(operands)
    if len(operands) == 1:
        return operands[0]
    return concatenate_p.bind(*operands, dimension=int(dimension))


def _concatenate_aval(*xs, dimension):
    first = xs[0]
    if not 0 <= dimension < first.ndim:
        raise TypeError(f"lax.concatenate: dimension {dimension} is out of range for "
                        f"operands of rank {first.ndim}")
    for x in xs[1:]:
        other_dims_match = all(a == b for i, (a, b) in enumerate(zip(x.shape, first.shape))
                               if i != dimension)
        if x.ndim != first.ndim or x.dtype != first.dtype or not other_dims_match:
            listed = ", ".join(a.str_short() for a in xs)
            raise TypeError(f"lax.concatenate: operands {listed} must agree in dtype and in "
                            f"every axis but {dimension}")
    shape = list(first.shape)
    shape[dimension] = sum(x.shape[dimension] for x in xs)
    return ShapedArray(shape, first.dtype, all(x.weak_type for x in xs))


def _concatenate_transpose(ct, *xs, dimension):
    out, start = [], 0
    ct_shape = _aval(ct).shape
    for x in xs:
        size = _aval(x).shape[dimension]
        if is_undefined(x):
            starts = [0] * len(ct_shape)
            limits = list(ct_shape)
            starts[dimension], limits[dimension] = start, start + size
            out.append(slice(ct, starts, limits))
        else:
            out.append(None)
        start += size
    return out


concatenate_p = Primitive("concatenate")
concatenate_p.impl = lambda *xs, dimension: np.concatenate(xs, axis=dimension)
concatenate_p.abstract_eval_rule = _concatenate_aval
deflinear(concatenate_p, _concatenate_transpose)
concatenate_p.batch = lambda vals, dims, *, axis_size, dimension: (
    concatenate([batch_at_front(v, d, axis_size) for v, d in zip(vals, dims)], dimension + 1),
    0)


def iota(dtype: Any, shape: Sequence[int], dimension: int) -> Array:
    """Counts 0, 1, 2, ... along `dimension`, broadcast along the other axes."""
    return iota_p.bind(dtype=np.dtype(dtype), shape=tuple(int(s) for s in shape),
                       dimension=int(dimension))


def _iota_impl(*, dtype, shape, dimension):
    counts = np.arange(shape[dimension], dtype=dtype)
    expanded = [1] * len(shape)
    expanded[dimension] = shape[dimension]
    return np.broadcast_to(counts.reshape(expanded), shape).copy()


def _iota_aval(*, dtype, shape, dimension):
    if not 0 <= dimension < len(shape):
        raise TypeError(f"lax.iota: dimension {dimension} out of range for shape {shape}")
    return ShapedArray(shape, dtype)


iota_p = Primitive("iota")
iota_p.impl = _iota_impl
iota_p.abstract_eval_rule = _iota_aval
defjvp_zero(iota_p)


# ============================================================================ reductions


def _reduced_aval(name: str, kinds: str):
    def rule(x, *, axes):
        if any(not 0 <= a < x.ndim for a in axes) or len(set(axes)) != len(axes):
            raise TypeError(f"lax.{name}: axes {axes} out of range for shape {x.shape}")
        _check_kinds(name, x, kinds)
        shape = [d for i, d in enumerate(x.shape) if i not in axes]
        return ShapedArray(shape, x.dtype, x.weak_type)

    return rule


def _axes(axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(int(a) for a in axes))


def _kept_dims(ndim: int, axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(i for i in range(ndim) if i not in axes)


def reduce_sum(x: Array, axes: Sequence[int]) -> Array:
    axes = _axes(axes)
    return x if not axes else reduce_sum_p.bind(x, axes=axes)


def _reduce_sum_impl(x, *, axes):
    x = np.asarray(x)
    return np.add.reduce(x, axis=axes, dtype=x.dtype)


def _reduce_sum_transpose(ct, x, *, axes):
    shape = x.aval.shape
    return [broadcast_in_dim(ct, shape, _kept_dims(len(shape), axes))]


reduce_sum_p = Primitive("reduce_sum")
reduce_sum_p.impl = _reduce_sum_impl
reduce_sum_p.abstract_eval_rule = _reduced_aval("reduce_sum", NUMERIC)
deflinear(reduce_sum_p, _reduce_sum_transpose)


def defreducer(prim: Primitive) -> None:
    """Batching for reductions over `axes`: the batch axis goes first and is kept."""

    def rule(vals, dims, *, axis_size, axes, **params):
        x = batch_at_front(vals[0], dims[0], axis_size)
        return prim.bind(x, axes=_shifted(axes), **params), 0

    prim.batch = rule


defreducer(reduce_sum_p)


def _reduce_chooser_jvp(prim: Primitive):
    """max/min: the tangent at the chosen positions, averaged over ties."""

    def jvp(primals, tangents, *, axes):
        (x,), (t,) = primals, tangents
        ans = prim.bind(x, axes=axes)
        shape = get_aval(x).shape
        location = eq(x, broadcast_in_dim(ans, shape, _kept_dims(len(shape), axes)))
        weights = convert_element_type(location, get_aval(x).dtype)
        counts = reduce_sum(weights, axes)
        return ans, div(reduce_sum(mul(instantiate(t), weights), axes), counts)

    prim.jvp = jvp


def reduce_max(x: Array, axes: Sequence[int]) -> Array:
    axes = _axes(axes)
    return x if not axes else reduce_max_p.bind(x, axes=axes)


def reduce_min(x: Array, axes: Sequence[int]) -> Array:
    axes = _axes(axes)
    return x if not axes else reduce_min_p.bind(x, axes=axes)


reduce_max_p = Primitive("reduce_max")
reduce_max_p.impl = lambda x, *, axes: np.max(x, axis=axes)
reduce_max_p.abstract_eval_rule = _reduced_aval("reduce_max", ANY)
_reduce_chooser_jvp(reduce_max_p)
defreducer(reduce_max_p)

reduce_min_p = Primitive("reduce_min")
reduce_min_p.impl = lambda x, *, axes: np.min(x, axis=axes)
reduce_min_p.abstract_eval_rule = _reduced_aval("reduce_min", ANY)
_reduce_chooser_jvp(reduce_min_p)
defreducer(reduce_min_p)


def reduce_prod(x: Array, axes: Sequence[int]) -> Array:
    axes = _axes(axes)
    return x if not axes else reduce_prod_p.bind(x, axes=axes)


def _shift(x: Array, k: int, fill: Any, reverse: bool) -> Array:
    """Shift along the last axis by k places (toward the end, or the start if reverse)."""
    n = get_aval(x).shape[-1]
    ndim = get_aval(x).ndim
    k = builtins.min(k, n)
    lead = [0] * (ndim - 1)
    full_shape = list(get_aval(x).shape[:-1])
    fill = np.asarray(fill, get_aval(x).dtype)
    if reverse:
        kept = slice(x, lead + [k], full_shape + [n])
        return pad(kept, fill, [(0, 0, 0)] * (ndim - 1) + [(0, k, 0)])
    kept = slice(x, lead + [0], full_shape + [n - k])
    return pad(kept, fill, [(0, 0, 0)] * (ndim - 1) + [(k, 0, 0)])


def exclusive_cumprod(x: Array, reverse: bool = False) -> Array:
    """Products of the elements strictly before (after, if reverse) each position along
    the last axis, by log-depth doubling: differentiable and exact when zeros occur."""
    n = get_aval(x).shape[-1]
    out = _shift(x, 1, 1, reverse)
    step = 1
    while step < n:
        out = mul(out, _shift(out, step, 1, reverse))
        step *= 2
    return out


def _reduce_prod_jvp(primals, tangents, *, axes):
    (x,), (t,) = primals, tangents
    ans = reduce_prod(x, axes)
    shape = get_aval(x).shape
    kept = _kept_dims(len(shape), axes)
    kept_shape = tuple(shape[i] for i in kept)
    n = int(np.prod([shape[a] for a in axes], dtype=np.int64))

    def flat(v):  # reduced axes moved last and merged into one
        return reshape(transpose(v, kept + axes), kept_shape + (n,))

    xf = flat(x)
    others = mul(exclusive_cumprod(xf), exclusive_cumprod(xf, reverse=True))
    return ans, reduce_sum(mul(flat(instantiate(t)), others), (len(kept),))


reduce_prod_p = Primitive("reduce_prod")
reduce_prod_p.impl = lambda x, *, axes: np.multiply.reduce(np.asarray(x), axis=axes,
                                                          dtype=np.asarray(x).dtype)
reduce_prod_p.abstract_eval_rule = _reduced_aval("reduce_prod", NUMERIC)
reduce_prod_p.jvp = _reduce_prod_jvp
defreducer(reduce_prod_p)


def _arg_reducer(name: str, numpy_fn: Callable) -> Primitive:
    prim = Primitive(name)

    def aval_rule(x, *, axes, index_dtype):
        if len(axes) != 1 or not 0 <= axes[0] < x.ndim:
            raise TypeError(f"lax.{name}: needs one axis in range for shape {x.shape}, got {axes}")
        if x.shape[axes[0]] == 0:
            raise ValueError(f"lax.{name}: axis {axes[0]} of shape {x.shape} is empty")
        return ShapedArray([d for i, d in enumerate(x.shape) if i != axes[0]], index_dtype)

    prim.impl = lambda x, *, axes, index_dtype: numpy_fn(x, axis=axes[0]).astype(index_dtype)
    prim.abstract_eval_rule = aval_rule
    defjvp_zero(prim)
    defreducer(prim)
    return prim


argmax_p = _arg_reducer("argmax", np.argmax)
argmin_p = _arg_reducer("argmin", np.argmin)


def argmax(x: Array, axis: int, index_dtype: Any = np.int64) -> Array:
    return argmax_p.bind(x, axes=(int(axis),), index_dtype=np.dtype(index_dtype))


def argmin(x: Array, axis: int, index_dtype: Any = np.int64) -> Array:
    return argmin_p.bind(x, axes=(int(axis),), index_dtype=np.dtype(index_dtype))


# ============================================================================ dot_general

def dot_general(x: Array, y: Array, dimension_numbers: Any) -> Array:
    """Contract `x` and `y`: ((x_contract, y_contract), (x_batch, y_batch)).

    The result's axes are the batch axes, then x's free axes, then y's free axes.
    """
    (xc, yc), (xb, yb) = dimension_numbers
    dims = ((tuple(map(int, xc)), tuple(map(int, yc))), (tuple(map(int, xb)), tuple(map(int, yb))))
    return dot_general_p.bind(x, y, dimension_numbers=dims)


def _free_axes(ndim: int, contract: Sequence[int], batch: Sequence[int]) -> list[int]:
    return [i for i in range(ndim) if i not in contract and i not in batch]


def _dot_general_impl(x, y, *, dimension_numbers):
    """Batched matrix product through NumPy's matmul (BLAS for floats)."""
    x, y = np.asarray(x), np.asarray(y)
    (xc, yc), (xb, yb) = dimension_numbers
    xf, yf = _free_axes(x.ndim, xc, xb), _free_axes(y.ndim, yc, yb)

    def size(shape, axes):
        return int(np.prod([shape[a] for a in axes], dtype=np.int64))

    batch_shape = [x.shape[a] for a in xb]
    b, k = size(x.shape, xb), size(x.shape, xc)
    m, n = size(x.shape, xf), size(y.shape, yf)
    x3 = np.transpose(x, [*xb, *xf, *xc]).reshape(b, m, k)
    y3 = np.transpose(y, [*yb, *yc, *yf]).reshape(b, k, n)
    out = np.matmul(x3, y3)
    return out.reshape(batch_shape + [x.shape[a] for a in xf] + [y.shape[a] for a in yf])


def _dot_general_aval(x, y, *, dimension_numbers):
    (xc, yc), (xb, yb) = dimension_numbers

    def fail(why):
        return TypeError(f"lax.dot_general: {why} (x: {x.str_short()}, y: {y.str_short()}, "
                         f"dimension_numbers={dimension_numbers})")

    if x.dtype != y.dtype:
        raise fail("operands must have the same dtype")
    if len(xc) != len(yc) or len(xb) != len(yb):
        raise fail("contracting and batch dimension lists must pair up")
    for axes, ndim in ((xc + xb, x.ndim), (yc + yb, y.ndim)):
        if len(set(axes)) != len(axes) or any(not 0 <= a < ndim for a in axes):
            raise fail("dimensions out of range or repeated")
    if any(x.shape[a] != y.shape[b] for a, b in zip(xc, yc)):
        raise fail("contracting dimensions differ in size")
    if any(x.shape[a] != y.shape[b] for a, b in zip(xb, yb)):
        raise fail("batch dimensions differ in size")
    shape = ([x.shape[a] for a in xb] + [x.shape[a] for a in _free_axes(x.ndim, xc, xb)]
             + [y.shape[a] for a in _free_axes(y.ndim, yc, yb)])
    return ShapedArray(shape, x.dtype, x.weak_type and y.weak_type)


def _dot_transpose_lhs(ct, x_aval: ShapedArray, y, dimension_numbers, y_first: bool = False):
    """Cotangent of x in dot_general(x, y): contract ct with y over y's free axes.

    The product `dot_general(ct, y)` has axes (batch, x free, y's contracted axes in
    y's order); the last group corresponds to x's contracted axes sorted by their
    partner in y. A transpose puts them back into x's layout.
    """
    (xc, yc), (xb, yb) = dimension_numbers
    y_ndim = _aval(y).ndim
    x_free = _free_axes(x_aval.ndim, xc, xb)
    y_free = _free_axes(y_ndim, yc, yb)
    nb = len(xb)
    if y_first:  # ct's axes are (batch, y free, x free)
        ct_y_free = list(range(nb, nb + len(y_free)))
    else:  # ct's axes are (batch, x free, y free)
        ct_y_free = list(range(nb + len(x_free), nb + len(x_free) + len(y_free)))
    ct_batch = list(range(nb))
    product = dot_general(ct, y, ((tuple(ct_y_free), tuple(y_free)), (tuple(ct_batch), tuple(yb))))
    x_contract_by_y = [xc[i] for i in np.argsort(yc)]
    layout = list(xb) + x_free + x_contract_by_y
    return transpose(product, tuple(np.argsort(layout)))


def _dot_general_transpose(ct, x, y, *, dimension_numbers):
    (xc, yc), (xb, yb) = dimension_numbers
    if is_undefined(x) and is_undefined(y):
        raise TypeError("dot_general of two tangents is not linear; a JVP rule is wrong")
    if is_undefined(x):
        return [_dot_transpose_lhs(ct, x.aval, y, dimension_numbers), None]
    swapped = ((yc, xc), (yb, xb))
    return [None, _dot_transpose_lhs(ct, y.aval, x, swapped, y_first=True)]


dot_general_p = Primitive("dot_general")
dot_general_p.impl = _dot_general_impl
dot_general_p.abstract_eval_rule = _dot_general_aval
defjvp(
    dot_general_p,
    lambda g, ans, x, y, *, dimension_numbers: dot_general(g, y, dimension_numbers),
    lambda g, ans, x, y, *, dimension_numbers: dot_general(x, g, dimension_numbers),
)
dot_general_p.transpose = _dot_general_transpose


def _dot_general_batch(vals, dims, *, axis_size, dimension_numbers):
    (xc, yc), (xb, yb) = dimension_numbers
    x, y = vals
    if dims[0] is not None and dims[1] is not None:  # a new leading batch dimension
        x, y = batch_at_front(x, dims[0], axis_size), batch_at_front(y, dims[1], axis_size)
        numbers = ((_shifted(xc), _shifted(yc)), ((0, *_shifted(xb)), (0, *_shifted(yb))))
        return dot_general(x, y, numbers), 0
    if dims[0] is not None:  # the batch axis becomes x's first free axis
        x = batch_at_front(x, dims[0], axis_size)
        numbers = ((_shifted(xc), yc), (_shifted(xb), yb))
        return dot_general(x, y, numbers), len(xb)
    y = batch_at_front(y, dims[1], axis_size)  # the batch axis becomes y's first free axis
    numbers = ((xc, _shifted(yc)), (xb, _shifted(yb)))
    x_free = get_aval(x).ndim - len(xc) - len(xb)
    return dot_general(x, y, numbers), len(xb) + x_free


dot_general_p.batch = _dot_general_batch


# ============================================================================ stop_gradient


def stop_gradient(x: Array) -> Array:
    """The value of x, with derivative zero: PyTorch's `detach()`."""
    from ..tree_util import tree_map

    return tree_map(stop_gradient_p.bind, x)


stop_gradient_p = Primitive("stop_gradient")
stop_gradient_p.impl = lambda x: x
stop_gradient_p.abstract_eval_rule = lambda x: x
defjvp_zero(stop_gradient_p)
defvectorized(stop_gradient_p)


# ============================================================================ gather, scatter_add
#
# One axis, NumPy's `take` and `add.at` semantics: the index tensor's shape replaces the
# axis. Indices count from the end when negative (as in NumPy); indices outside [-n, n)
# are clamped into the axis (as JAX's gather), and so are scatter_add's (not dropped),
# so that the two stay each other's transposes. fgrad.numpy raises IndexError for
# out-of-range indices it can see (concrete ones) before they get here.


def _check_indices(name: str, indices: ShapedArray) -> None:
    if indices.dtype.kind not in "iu":
        raise TypeError(f"lax.{name}: indices must be integers, got {indices.str_short()}")


def _check_axis(name: str, axis: int, x: ShapedArray) -> None:
    if not 0 <= axis < x.ndim:
        raise TypeError(f"lax.{name}: axis {axis} is out of range for an operand of shape "
                        f"{x.shape}")


def _gathered_shape(x_shape: Sequence[int], idx_shape: Sequence[int], axis: int) -> tuple:
    return (*x_shape[:axis], *idx_shape, *x_shape[axis + 1:])


def _clamped_indices(indices: Any, n: int) -> np.ndarray:
    """NumPy's negative indices, then clamped into [0, n): the primitives' index rule."""
    i = np.asarray(indices)
    if i.dtype.kind not in "iu":
        raise TypeError(f"lax.gather/scatter_add: indices must be integers, got {i.dtype}")
    i = i.astype(np.int64)
    i = np.where(i < 0, i + n, i)
    return np.clip(i, 0, builtins.max(n - 1, 0))


def clamp_indices(indices: Array, n: int) -> Array:
    """The gather/scatter_add index rule for an axis of size n, written with primitives
    (an int64 result): negative indices count from the end, the rest are clamped."""
    i = convert_element_type(indices, np.int64)
    i = select_n(lt(i, 0), i, add(i, n))
    return max(min(i, builtins.max(n - 1, 0)), 0)


def gather(x: Array, indices: Array, axis: int) -> Array:
    """`np.take(x, indices, axis)`: `indices` (any shape, integers) replaces `axis`.

    Negative indices count from the end; indices outside [-n, n) are clamped into the
    axis (no error: the values may be unknown while tracing). Linear in `x`; the
    transpose is `scatter_add`."""
    return gather_p.bind(x, indices, axis=int(axis))


def _gather_impl(x, indices, *, axis):
    x = np.asarray(x)
    return np.take(x, _clamped_indices(indices, x.shape[axis]), axis=axis)


def _gather_aval(x, indices, *, axis):
    _check_axis("gather", axis, x)
    _check_indices("gather", indices)
    if x.shape[axis] == 0 and indices.size > 0:
        raise TypeError(f"lax.gather: cannot take {indices.size} elements from axis {axis} "
                        f"of size 0 (operand {x.str_short()})")
    return ShapedArray(_gathered_shape(x.shape, indices.shape, axis), x.dtype, x.weak_type)


def _gather_jvp(primals, tangents, *, axis):
    (x, indices), (t, _) = primals, tangents
    ans = gather(x, indices, axis)
    if isinstance(t, Zero):
        return ans, Zero.like(ans)
    return ans, gather(t, indices, axis)


def _gather_transpose(ct, x, indices, *, axis):
    if is_undefined(indices):
        raise TypeError("gather's indices cannot be a tangent")
    aval = _aval(x)
    return [scatter_add(full(aval.shape, 0, _aval(ct).dtype), indices, ct, axis), None]


def _merge_batch_into_axis(x: Array, dim: int | None, axis: int, axis_size: int) -> Array:
    """x (batched at `dim`, or broadcast if None) with the batch axis merged into `axis`,
    batch-major: element j of member b lands at b * n + j."""
    from ..interpreters.batching import move_batch_axis

    x = move_batch_axis(x, dim, axis, axis_size)
    shape = get_aval(x).shape
    return reshape(x, (*shape[:axis], shape[axis] * shape[axis + 1], *shape[axis + 2:]))


def _offset_indices(indices: Array, dim: int, n: int, axis_size: int) -> Array:
    """Batched indices (batch axis first afterwards), clamped into [0, n), plus b * n."""
    indices = clamp_indices(batch_at_front(indices, dim, axis_size), n)
    shape = get_aval(indices).shape
    return add(indices, mul(iota(np.int64, shape, 0), n))


def _gather_batch(vals, dims, *, axis_size, axis):
    (x, indices), (bx, bi) = vals, dims
    if bi is None:  # only the operand is batched: gather along the shifted axis
        ax = axis if axis < bx else axis + 1
        out_dim = bx if bx < ax else bx + get_aval(indices).ndim - 1
        return gather(x, indices, ax), out_dim
    if bx is None:  # only the indices: their batch axis lands inside the gathered block
        return gather(x, indices, axis), axis + bi
    n = get_aval(x).shape[axis if axis < bx else axis + 1]
    merged = _merge_batch_into_axis(x, bx, axis, axis_size)
    return gather(merged, _offset_indices(indices, bi, n, axis_size), axis), axis


gather_p = Primitive("gather")
gather_p.impl = _gather_impl
gather_p.abstract_eval_rule = _gather_aval
gather_p.jvp = _gather_jvp
gather_p.transpose = _gather_transpose
gather_p.batch = _gather_batch


def scatter_add(x: Array, indices: Array, updates: Array, axis: int) -> Array:
    """A copy of `x` with `updates` added at `indices` along `axis` (`np.add.at`):
    `updates` has the shape `gather(x, indices, axis)` has; repeated indices accumulate.

    Indices follow `gather`'s rule (negative from the end, out-of-range clamped).
    Linear in `x` and `updates` together; the transpose of `updates` is `gather`."""
    return scatter_add_p.bind(x, indices, updates, axis=int(axis))


def _scatter_add_impl(x, indices, updates, *, axis):
    out = np.array(x, copy=True)
    index = (builtins.slice(None),) * axis + (_clamped_indices(indices, out.shape[axis]),)
    np.add.at(out, index, np.asarray(updates, out.dtype))
    return out


def _scatter_add_aval(x, indices, updates, *, axis):
    _check_axis("scatter_add", axis, x)
    _check_indices("scatter_add", indices)
    _check_kinds("scatter_add", x, NUMERIC)
    want = _gathered_shape(x.shape, indices.shape, axis)
    if updates.shape != want or updates.dtype != x.dtype:
        raise TypeError(f"lax.scatter_add: updates must have the operand's dtype and the "
                        f"shape {want} (operand {x.str_short()}, indices "
                        f"{indices.str_short()}, axis {axis}), got {updates.str_short()}")
    if x.shape[axis] == 0 and indices.size > 0:
        raise TypeError(f"lax.scatter_add: cannot add {indices.size} slices into axis {axis} "
                        f"of size 0 (operand {x.str_short()})")
    return ShapedArray(x.shape, x.dtype, x.weak_type and updates.weak_type)


def _scatter_add_jvp(primals, tangents, *, axis):
    (x, indices, updates), (tx, _, tu) = primals, tangents
    ans = scatter_add(x, indices, updates, axis)
    if isinstance(tu, Zero):
        return ans, (Zero.like(ans) if isinstance(tx, Zero) else tx)
    return ans, scatter_add(instantiate(tx), indices, tu, axis)


def _scatter_add_transpose(ct, x, indices, updates, *, axis):
    if is_undefined(indices):
        raise TypeError("scatter_add's indices cannot be a tangent")
    ct_x = ct if is_undefined(x) else None
    ct_updates = gather(ct, indices, axis) if is_undefined(updates) else None
    return [ct_x, None, ct_updates]


def _scatter_add_batch(vals, dims, *, axis_size, axis):
    from ..interpreters.batching import move_batch_axis

    (x, indices, updates), (bx, bi, bu) = vals, dims
    if bi is None:  # the same indices for every member: scatter along the shifted axis
        x, updates = batch_at_front(x, bx, axis_size), batch_at_front(updates, bu, axis_size)
        return scatter_add(x, indices, updates, axis + 1), 0
    x_shape = get_aval(x).shape
    n = x_shape[axis if bx is None or axis < bx else axis + 1]
    merged = _merge_batch_into_axis(x, bx, axis, axis_size)
    flat = _offset_indices(indices, bi, n, axis_size)
    updates = move_batch_axis(updates, bu, axis, axis_size)  # the block (B, *idx) at axis
    out = scatter_add(merged, flat, updates, axis)
    shape = get_aval(out).shape
    return reshape(out, (*shape[:axis], axis_size, n, *shape[axis + 1:])), axis


scatter_add_p = Primitive("scatter_add")
scatter_add_p.impl = _scatter_add_impl
scatter_add_p.abstract_eval_rule = _scatter_add_aval
scatter_add_p.jvp = _scatter_add_jvp
scatter_add_p.transpose = _scatter_add_transpose
scatter_add_p.batch = _scatter_add_batch


# ============================================================================ cumsum, argsort


def cumsum(x: Array, axis: int, reverse: bool = False) -> Array:
    """Inclusive running sums along `axis` (from the end if `reverse`), in x's dtype."""
    return cumsum_p.bind(x, axis=int(axis), reverse=bool(reverse))


def _cumsum_impl(x, *, axis, reverse):
    x = np.asarray(x)
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=x.dtype), axis)
    return np.cumsum(x, axis=axis, dtype=x.dtype)


def _cumsum_aval(x, *, axis, reverse):
    _check_axis("cumsum", axis, x)
    _check_kinds("cumsum", x, NUMERIC)
    return x


cumsum_p = Primitive("cumsum")
cumsum_p.impl = _cumsum_impl
cumsum_p.abstract_eval_rule = _cumsum_aval
deflinear(cumsum_p, lambda ct, x, *, axis, reverse: [cumsum(ct, axis, not reverse)])
cumsum_p.batch = lambda vals, dims, *, axis_size, axis, reverse: (
    cumsum(vals[0], axis if axis < dims[0] else axis + 1, reverse), dims[0])


def argsort(x: Array, axis: int, index_dtype: Any = np.int64) -> Array:
    """The permutation that sorts `x` along `axis`, stably (ties keep their order; NaNs
    last, as NumPy). Not differentiable: sort values by gathering with it."""
    return argsort_p.bind(x, axis=int(axis), index_dtype=np.dtype(index_dtype))


def _argsort_aval(x, *, axis, index_dtype):
    _check_axis("argsort", axis, x)
    return ShapedArray(x.shape, index_dtype)


argsort_p = Primitive("argsort")
argsort_p.impl = lambda x, *, axis, index_dtype: np.argsort(
    np.asarray(x), axis=axis, kind="stable").astype(index_dtype)
argsort_p.abstract_eval_rule = _argsort_aval
defjvp_zero(argsort_p)
argsort_p.batch = lambda vals, dims, *, axis_size, axis, index_dtype: (
    argsort(vals[0], axis if axis < dims[0] else axis + 1, index_dtype), dims[0])
