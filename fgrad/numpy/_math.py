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
