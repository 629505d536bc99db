"""Elementwise functions (NumPy's ufuncs), comparisons, logic, `where` and `clip`.

Each takes NumPy's dtype from NumPy itself (`ufunc_result_dtype`), converts the
operands to it, broadcasts them, and calls one lax primitive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..lax import lax
from ._core import (
    Array,
    aval_of,
    broadcast_shapes,
    broadcast_to_shape,
    convert,
    promote,
    result_type,
    ufunc_result_dtype,
    value,
)


def _unary(name: str, ufunc: np.ufunc, lax_fn: Callable, doc: str) -> Callable:
    def fn(x: Any) -> Array:
        x = value(x, name)
        aval = aval_of(x)
        out_dtype = ufunc_result_dtype(ufunc, aval.dtype)
        return lax_fn(convert(x, out_dtype, aval.weak_type and out_dtype == aval.dtype))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _binary(name: str, ufunc: np.ufunc, lax_fn: Callable, doc: str) -> Callable:
    def fn(x: Any, y: Any) -> Array:
        x, y = value(x, name), value(y, name)
        dtype, weak = result_type(x, y)
        out_dtype = ufunc_result_dtype(ufunc, dtype, dtype)
        op = lax_fn
        if out_dtype == np.bool_ and dtype == np.bool_ and lax_fn in _BOOL_FORMS:
            op = _BOOL_FORMS[lax_fn]
        elif out_dtype == np.bool_ and lax_fn in (lax.sub, lax.neg):
            raise TypeError(f"{name}: boolean subtract is not supported; use logical_xor")
        if out_dtype != np.bool_:
            dtype = out_dtype
        x, y = promote(name, convert(x, dtype, weak), convert(y, dtype, weak))
        return op(x, y)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


_BOOL_FORMS = {lax.add: lax.bitwise_or, lax.mul: lax.bitwise_and,
               lax.max: lax.bitwise_or, lax.min: lax.bitwise_and}

# ----------------------------------------------------------------------------- arithmetic

add = _binary("add", np.add, lax.add, "x + y elementwise, with broadcasting.")
subtract = _binary("subtract", np.subtract, lax.sub, "x - y elementwise.")
multiply = _binary("multiply", np.multiply, lax.mul, "x * y elementwise.")
divide = _binary("divide", np.true_divide, lax.div, "x / y elementwise (true division).")
true_divide = divide
maximum = _binary("maximum", np.maximum, lax.max, "Elementwise maximum (NaN propagates).")
minimum = _binary("minimum", np.minimum, lax.min, "Elementwise minimum (NaN propagates).")
arctan2 = _binary("arctan2", np.arctan2, lax.atan2, "Angle of the point (x2, x1): arctan(x1/x2).")
fmod = _binary("fmod", np.fmod, lax.rem, "Remainder with the sign of the dividend.")


def power(x: Any, y: Any) -> Array:
    """x ** y elementwise. A Python integer exponent uses exact repeated multiplication."""
    x = value(x, "power")
    if isinstance(y, (int, np.integer)) and not isinstance(y, (bool, np.bool_)):
        # NumPy's promotion: a Python int is weak (int8 ** 2 is int8, float32 ** 2 float32),
        # a NumPy integer is not (float32 ** np.int64(2) is float64).
        dtype, weak = result_type(x, y)
        return lax.integer_pow(convert(x, dtype, weak), int(y))
    y = value(y, "power")
    dtype, weak = result_type(x, y)
    if dtype.kind != "f":
        raise TypeError(
            f"power: integer arrays raised to an array of powers are not supported "
            f"(got {aval_of(x).str_short()} ** {aval_of(y).str_short()}); convert to float "
            "first, or use a Python int exponent"
        )
    x, y = promote("power", convert(x, dtype, weak), convert(y, dtype, weak))
    return lax.pow(x, y)


def negative(x: Any) -> Array:
    """-x elementwise."""
    x = value(x, "negative")
    if aval_of(x).dtype == np.bool_:
        raise TypeError("negative: the - operator is not supported for booleans; use ~ or "
                        "logical_not")
    return lax.neg(x)


def positive(x: Any) -> Array:
    return value(x, "positive")


def _identity_on(kinds: str, lax_fn: Callable) -> Callable:
    """`lax_fn`, except on dtypes of `kinds`, where the result is the operand itself
    (|x| of a bool, floor of an integer: NumPy keeps the dtype and the value)."""
    return lambda x: x if aval_of(x).dtype.kind in kinds else lax_fn(x)


absolute = _unary("absolute", np.absolute, _identity_on("b", lax.abs), "|x| elementwise.")
abs = absolute  # noqa: A001 (NumPy's name)
sign = _unary("sign", np.sign, lax.sign, "-1, 0 or 1 by the sign of x.")
floor = _unary("floor", np.floor, _identity_on("biu", lax.floor), "Largest integer <= x.")
ceil = _unary("ceil", np.ceil, _identity_on("biu", lax.ceil), "Smallest integer >= x.")
exp = _unary("exp", np.exp, lax.exp, "e ** x.")
log = _unary("log", np.log, lax.log, "Natural logarithm.")
log1p = _unary("log1p", np.log1p, lax.log1p, "log(1 + x), accurate for small x.")
expm1 = _unary("expm1", np.expm1, lax.expm1, "exp(x) - 1, accurate for small x.")
sqrt = _unary("sqrt", np.sqrt, lax.sqrt, "Square root.")
sin = _unary("sin", np.sin, lax.sin, "Sine.")
cos = _unary("cos", np.cos, lax.cos, "Cosine.")
tan = _unary("tan", np.tan, lax.tan, "Tangent.")
arcsin = _unary("arcsin", np.arcsin, lax.asin, "Inverse sine.")
arccos = _unary("arccos", np.arccos, lax.acos, "Inverse cosine.")
arctan = _unary("arctan", np.arctan, lax.atan, "Inverse tangent.")
sinh = _unary("sinh", np.sinh, lax.sinh, "Hyperbolic sine.")
cosh = _unary("cosh", np.cosh, lax.cosh, "Hyperbolic cosine.")
tanh = _unary("tanh", np.tanh, lax.tanh, "Hyperbolic tangent.")


def _float_of(x: Any, name: str, ufunc: np.ufunc) -> Array:
    x = value(x, name)
    aval = aval_of(x)
    dtype = ufunc_result_dtype(ufunc, aval.dtype)
    return convert(x, dtype, aval.weak_type and dtype == aval.dtype)


def exp2(x: Any) -> Array:
    """2 ** x."""
    x = _float_of(x, "exp2", np.exp2)
    return lax.pow(lax.full_like(x, 2), x)


def log2(x: Any) -> Array:
    """Base-2 logarithm."""
    x = _float_of(x, "log2", np.log2)
    return lax.div(lax.log(x), math.log(2))


def log10(x: Any) -> Array:
    """Base-10 logarithm."""
    x = _float_of(x, "log10", np.log10)
    return lax.div(lax.log(x), math.log(10))


def square(x: Any) -> Array:
    """x * x."""
    x = value(x, "square")
    if aval_of(x).dtype == np.bool_:
        return lax.bitwise_and(x, x)
    return lax.integer_pow(x, 2)


def reciprocal(x: Any) -> Array:
    """1 / x (for integers, NumPy's integer reciprocal)."""
    x = value(x, "reciprocal")
    return lax.div(lax.full_like(x, 1), x)


def round(a: Any, decimals: int = 0) -> Array:  # noqa: A001 (NumPy's name)
    """Round half to even, to `decimals` places."""
    a = value(a, "round")
    dtype = aval_of(a).dtype
    if dtype.kind != "f":
        if decimals >= 0 or dtype.kind not in "iu":
            return a
        # As NumPy: integers round to tens, hundreds, ... in float64, then cast back.
        return convert(round(convert(a, np.float64), decimals), dtype)
    if decimals == 0:
        return lax.round(a)
    if decimals > 0:  # NumPy's order of operations: x * 10**d, rint, / 10**d
        scale = 10.0 ** decimals
        return lax.div(lax.round(lax.mul(a, scale)), scale)
    scale = 10.0 ** -decimals  # and x / 10**-d, rint, * 10**-d
    return lax.mul(lax.round(lax.div(a, scale)), scale)


around = round


def clip(a: Any, a_min: Any = None, a_max: Any = None, *, min: Any = None,  # noqa: A002
         max: Any = None) -> Array:  # noqa: A002
    """Limit values to [a_min, a_max]; either bound may be None. (`min` and `max` are
    NumPy 2's keyword names for the bounds.)"""
    if (a_min is not None and min is not None) or (a_max is not None and max is not None):
        raise TypeError("clip: give each bound once (a_min or min, a_max or max)")
    a_min = min if a_min is None else a_min
    a_max = max if a_max is None else a_max
    out = value(a, "clip")
    if a_min is not None:
        out = maximum(out, a_min)
    if a_max is not None:
        out = minimum(out, a_max)
    return out


# ----------------------------------------------------------------------------- comparison, logic


def _comparison(name: str, lax_fn: Callable) -> Callable:
    def fn(x: Any, y: Any) -> Array:
        x, y = promote(name, x, y)
        return lax_fn(x, y)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} (not differentiable: the result is boolean)."
    return fn


equal = _comparison("equal", lax.eq)
not_equal = _comparison("not_equal", lax.ne)
less = _comparison("less", lax.lt)
less_equal = _comparison("less_equal", lax.le)
greater = _comparison("greater", lax.gt)
greater_equal = _comparison("greater_equal", lax.ge)


def _as_bool(x: Any, name: str) -> Array:
    x = value(x, name)
    if aval_of(x).dtype == np.bool_:
        return x
    return lax.ne(x, lax.full_like(x, 0))


def logical_and(x: Any, y: Any) -> Array:
    return lax.bitwise_and(*promote("logical_and", _as_bool(x, "logical_and"),
                                    _as_bool(y, "logical_and")))


def logical_or(x: Any, y: Any) -> Array:
    return lax.bitwise_or(*promote("logical_or", _as_bool(x, "logical_or"),
                                   _as_bool(y, "logical_or")))


def logical_xor(x: Any, y: Any) -> Array:
    return lax.bitwise_xor(*promote("logical_xor", _as_bool(x, "logical_xor"),
                                    _as_bool(y, "logical_xor")))


def logical_not(x: Any) -> Array:
    return lax.bitwise_not(_as_bool(x, "logical_not"))


def _bitwise(name: str, lax_fn: Callable) -> Callable:
    def fn(x: Any, y: Any) -> Array:
        x, y = promote(name, x, y)
        if aval_of(x).dtype.kind not in "biu":
            raise TypeError(f"{name}: needs integer or boolean operands, got {aval_of(x)}")
        return lax_fn(x, y)

    fn.__name__ = fn.__qualname__ = name
    return fn


bitwise_and = _bitwise("bitwise_and", lax.bitwise_and)
bitwise_or = _bitwise("bitwise_or", lax.bitwise_or)
bitwise_xor = _bitwise("bitwise_xor", lax.bitwise_xor)


def invert(x: Any) -> Array:
    """Bitwise not (logical not for booleans)."""
    x = value(x, "invert")
    if aval_of(x).dtype.kind not in "biu":
        raise TypeError(f"invert: needs integer or boolean operands, got {aval_of(x)}")
    return lax.bitwise_not(x)


bitwise_not = invert


def isfinite(x: Any) -> Array:
    x = value(x, "isfinite")
    if aval_of(x).dtype.kind != "f":
        return broadcast_to_shape(np.True_, aval_of(x).shape)
    return lax.is_finite(x)


def where(condition: Any, x: Any = None, y: Any = None) -> Array:
    """`x` where `condition` holds, else `y`, with broadcasting. Differentiable in x and y."""
    if x is None or y is None:
        raise ValueError(
            "where: the one-argument form where(condition) returns indices whose number "
            "depends on the values; use nonzero() outside transforms, or give both x and y"
        )
    condition = _as_bool(condition, "where")
    x, y = value(x, "where"), value(y, "where")
    dtype, weak = result_type(x, y)
    shape = broadcast_shapes("where", aval_of(condition).shape, aval_of(x).shape,
                             aval_of(y).shape)
    x = broadcast_to_shape(convert(x, dtype, weak), shape)
    y = broadcast_to_shape(convert(y, dtype, weak), shape)
    return lax.select_n(broadcast_to_shape(condition, shape), y, x)


# ----------------------------------------------------------------------------- utilities


def isnan(x: Any) -> Array:
    """True where x is NaN (never for integers and bools)."""
    x = value(x, "isnan")
    if aval_of(x).dtype.kind != "f":
        return broadcast_to_shape(np.False_, aval_of(x).shape)
    return lax.ne(x, x)


def isinf(x: Any) -> Array:
    """True where x is +inf or -inf."""
    x = value(x, "isinf")
    if aval_of(x).dtype.kind != "f":
        return broadcast_to_shape(np.False_, aval_of(x).shape)
    return lax.eq(lax.abs(x), lax.full_like(x, np.inf))


def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: float | None = None,
               neginf: float | None = None) -> Array:
    """NaN and infinities replaced by finite numbers (by default 0 and the largest
    finite values of the dtype). Differentiable where x is finite."""
    del copy  # values are never mutated
    x = value(x, "nan_to_num")
    dtype = aval_of(x).dtype
    if dtype.kind != "f":
        return x
    info = np.finfo(dtype)
    posinf = info.max if posinf is None else posinf
    neginf = info.min if neginf is None else neginf
    out = lax.select_n(lax.ne(x, x), x, lax.full_like(x, nan))
    out = lax.select_n(lax.eq(x, lax.full_like(x, np.inf)), out, lax.full_like(x, posinf))
    return lax.select_n(lax.eq(x, lax.full_like(x, -np.inf)), out, lax.full_like(x, neginf))


def _float_operands(name: str, ufunc: np.ufunc, x: Any, y: Any) -> list[Array]:
    """x and y broadcast, in the floating dtype NumPy's `ufunc` computes in."""
    x, y = value(x, name), value(y, name)
    dtype, weak = result_type(x, y)
    out_dtype = ufunc_result_dtype(ufunc, dtype, dtype)
    weak = weak and out_dtype == dtype
    return promote(name, convert(x, out_dtype, weak), convert(y, out_dtype, weak))


def logaddexp(x1: Any, x2: Any) -> Array:
    """log(exp(x1) + exp(x2)), without overflow: max + log1p(exp(-|x1 - x2|))."""
    x, y = _float_operands("logaddexp", np.logaddexp, x1, x2)
    delta = lax.sub(x, y)
    normal = lax.add(lax.max(x, y), lax.log1p(lax.exp(lax.neg(lax.abs(delta)))))
    # x - y is NaN for infinities of one sign (and NaNs): then x + y is the answer.
    return lax.select_n(lax.ne(delta, delta), normal, lax.add(x, y))


def logaddexp2(x1: Any, x2: Any) -> Array:
    """log2(2**x1 + 2**x2), without overflow."""
    x, y = _float_operands("logaddexp2", np.logaddexp2, x1, x2)
    delta = lax.sub(x, y)
    tail = lax.log1p(lax.exp(lax.mul(lax.abs(delta), -math.log(2))))
    normal = lax.add(lax.max(x, y), lax.mul(tail, 1 / math.log(2)))
    return lax.select_n(lax.ne(delta, delta), normal, lax.add(x, y))


def hypot(x1: Any, x2: Any) -> Array:
    """sqrt(x1**2 + x2**2) without overflow or underflow: big * sqrt(1 + (small/big)**2)."""
    x, y = _float_operands("hypot", np.hypot, x1, x2)
    x, y = lax.abs(x), lax.abs(y)
    inf = lax.full_like(x, np.inf)
    is_inf = lax.bitwise_or(lax.eq(x, inf), lax.eq(y, inf))  # inf even beside a NaN
    big, small = lax.max(x, y), lax.min(x, y)
    zero = lax.eq(big, lax.full_like(big, 0))
    safe_big = lax.select_n(zero, big, lax.full_like(big, 1))
    out = lax.mul(big, lax.sqrt(lax.add(lax.square(lax.div(small, safe_big)), 1)))
    out = lax.select_n(zero, out, big)
    return lax.select_n(is_inf, out, inf)


def sinc(x: Any) -> Array:
    """sin(pi x) / (pi x), and 1 at 0; near 0 a Taylor polynomial, so that every
    derivative is right there too (sinc'(0) = 0, sinc''(0) = -pi**2 / 3)."""
    x = _float_of(x, "sinc", np.sinc)
    z = lax.mul(x, math.pi)
    # Below |z| = eps**(1/6) the dropped term z**6 / 5040 is far below rounding.
    small = lax.lt(lax.abs(z), float(np.finfo(aval_of(x).dtype).eps) ** (1 / 6))
    safe_z = lax.select_n(small, z, lax.full_like(z, 1))
    z2 = lax.square(z)
    taylor = lax.add(lax.mul(z2, lax.add(lax.mul(z2, 1 / 120), -1 / 6)), 1)
    return lax.select_n(small, lax.div(lax.sin(safe_z), safe_z), taylor)


def deg2rad(x: Any) -> Array:
    """Degrees to radians: x * (pi / 180)."""
    return lax.mul(_float_of(x, "deg2rad", np.deg2rad), math.pi / 180)


def rad2deg(x: Any) -> Array:
    """Radians to degrees: x * (180 / pi)."""
    return lax.mul(_float_of(x, "rad2deg", np.rad2deg), 180 / math.pi)


radians = deg2rad
degrees = rad2deg


def float_power(x1: Any, x2: Any) -> Array:
    """x1 ** x2 computed in float64 at least (float32 operands give float64), as NumPy."""
    x, y = _float_operands("float_power", np.float_power, x1, x2)
    return lax.pow(x, y)


def astype(x: Any, dtype: Any, /, *, copy: bool = True) -> Array:
    """x converted to `dtype` (NumPy 2's function form of `x.astype(dtype)`)."""
    del copy
    return convert(value(x, "astype"), np.dtype(dtype))


def _copysign_zero(like: Array) -> Array:
    """0 with the sign bit of `like` (+0 or -0), as C's copysign(0, like)."""
    zero = lax.full_like(like, 0)
    negative = lax.bitwise_or(lax.lt(like, zero), lax.bitwise_and(
        lax.eq(like, zero), lax.lt(lax.div(lax.full_like(like, 1), like), zero)))
    return lax.select_n(negative, zero, lax.full_like(like, -0.0))


def _float_divmod(a: Array, b: Array) -> tuple[Array, Array]:
    """NumPy's npy_divmod, operation for operation: (floor(a / b), a mod b) with the
    remainder taking the divisor's sign and the quotient snapped to an integer."""
    zero = lax.full_like(a, 0)
    mod = lax.rem(a, b)
    div = lax.div(lax.sub(a, mod), b)
    has_mod = lax.ne(mod, zero)
    fix = lax.bitwise_and(has_mod, lax.ne(lax.lt(b, zero), lax.lt(mod, zero)))
    mod = lax.select_n(fix, mod, lax.add(mod, b))
    div = lax.select_n(fix, div, lax.sub(div, 1))
    mod = lax.select_n(has_mod, _copysign_zero(b), mod)
    floor_div = lax.floor(div)
    floor_div = lax.select_n(lax.gt(lax.sub(div, floor_div), 0.5), floor_div,
                             lax.add(floor_div, 1))
    floor_div = lax.select_n(lax.eq(div, zero), floor_div, _copysign_zero(lax.div(a, b)))
    by_zero = lax.eq(b, zero)  # a / 0 and fmod(a, 0), as NumPy
    return (lax.select_n(by_zero, floor_div, lax.div(a, b)),
            lax.select_n(by_zero, mod, lax.rem(a, b)))


def _int_divmod(a: Array, b: Array) -> tuple[Array, Array]:
    """Floor division and remainder of integers (0 and 0 for a zero divisor, as NumPy)."""
    zero = lax.full_like(a, 0)
    q, r = lax.div(a, b), lax.rem(a, b)  # truncating
    fix = lax.bitwise_and(lax.ne(r, zero), lax.ne(lax.lt(r, zero), lax.lt(b, zero)))
    return (lax.select_n(fix, q, lax.sub(q, lax.full_like(q, 1))),
            lax.select_n(fix, r, lax.add(r, b)))


def _divmod_operands(name: str, ufunc: np.ufunc, x: Any, y: Any) -> tuple[Array, Array]:
    x, y = value(x, name), value(y, name)
    dtype, weak = result_type(x, y)
    out_dtype = ufunc_result_dtype(ufunc, dtype, dtype)
    weak = weak and out_dtype == dtype
    a, b = promote(name, convert(x, out_dtype, weak), convert(y, out_dtype, weak))
    return (_float_divmod if out_dtype.kind == "f" else _int_divmod)(a, b)


def floor_divide(x1: Any, x2: Any) -> Array:
    """x1 // x2: the floor of the quotient (NumPy's rounding, Python's sign rules).
    Its derivative is zero, as JAX's (a step function)."""
    x1, x2 = lax.stop_gradient(value(x1, "floor_divide")), lax.stop_gradient(
        value(x2, "floor_divide"))
    return _divmod_operands("floor_divide", np.floor_divide, x1, x2)[0]


def remainder(x1: Any, x2: Any) -> Array:
    """x1 % x2 with the sign of the divisor (Python's and NumPy's `mod`). Differentiable as
    x1 - x2 * floor(x1 / x2): 1 in x1 and -floor(x1 / x2) in x2."""
    return _divmod_operands("remainder", np.remainder, x1, x2)[1]


mod = remainder


def divmod(x1: Any, x2: Any) -> tuple[Array, Array]:  # noqa: A001 (NumPy's name)
    """(x1 // x2, x1 % x2)."""
    return floor_divide(x1, x2), remainder(x1, x2)
