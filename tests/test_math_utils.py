"""fgrad.numpy's elementwise utilities (isnan isinf nan_to_num logaddexp logaddexp2 hypot
sinc deg2rad rad2deg floor_divide remainder divmod float_power astype ...), the `//`,
`%` and divmod operators on traced values, and NumPy interop (`np.sum(tracer)`,
`np.asarray(tracer)`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _opspec import (
    BINARY_SHAPES,
    FLOATS,
    REDUCTION_TOL,
    OpSpec,
    assert_same,
    away_from_zero,
    cases,
    check_derivatives,
    check_jaxpr,
    check_jaxpr_agrees,
    check_unique_names,
    check_values,
    int_values,
    nonfinite,
    uniform,
    with_zeros,
)

import fgrad
import fgrad.numpy as fnp
from fgrad.errors import TracerArrayConversionError
from fgrad.test_util import check_grads

NORMAL = uniform(-2.0, 2.0)
POSITIVE = uniform(0.5, 2.0)
NONZERO = away_from_zero()
I32, I64, I8, U8 = (np.dtype(t) for t in (np.int32, np.int64, np.int8, np.uint8))
BOOL = np.dtype(np.bool_)


def _divmod_args(rng, shapes, dtype):
    """x / y stays at least 0.2 away from the integers (where // and % jump), whatever
    elements broadcasting pairs up: y = +-1.1, x = (k + u) 1.1 with u in (0.2, 0.8)."""
    x = (rng.integers(-3, 4, shapes[0]) + rng.uniform(0.2, 0.8, shapes[0])) * 1.1
    y = rng.choice([-1.1, 1.1], shapes[1])
    return x.astype(dtype), y.astype(dtype)


def _special(base):
    """`base` with zeros, -0.0, infinities and NaNs mixed in."""
    def sample(rng, shape, dtype):
        x = np.array(nonfinite(base)(rng, shape, dtype))
        if x.size > 1:
            x.reshape(-1)[:2] = [0.0, -0.0]
        return x

    return sample


def _spec(name, fn=None, ref=None, nargs=1, sampler=NORMAL, **kw):
    fn = fn or getattr(fnp, name)
    ref = ref or getattr(np, name)
    return OpSpec(name, fn, nargs, sampler, ref=ref, **kw)


DIFFERENTIABLE = [
    _spec("logaddexp", nargs=2),
    _spec("logaddexp2", nargs=2),
    _spec("logaddexp_large", lambda x, y: fnp.logaddexp(x * 1e3, y * 1e3),
          lambda x, y: np.logaddexp(x * 1e3, y * 1e3), 2,
          tol={np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13},
          grad_tol=2e-2),
    _spec("logaddexp_pyscalar", lambda x: fnp.logaddexp(x, 0.5),
          lambda x: np.logaddexp(x, 0.5)),
    _spec("hypot", nargs=2, sampler=NONZERO),
    _spec("hypot_pyscalar", lambda x: fnp.hypot(3.0, x), lambda x: np.hypot(3.0, x)),
    _spec("sinc", sampler=uniform(-2.5, 2.5)),
    _spec("sinc_near_zero", fnp.sinc, np.sinc, sampler=with_zeros(uniform(-0.02, 0.02), 2),
          tol={np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-15}),
    _spec("deg2rad", sampler=uniform(-360, 360)),
    _spec("rad2deg"),
    _spec("radians", sampler=uniform(-360, 360)),
    _spec("degrees"),
    _spec("nan_to_num"),
    _spec("nan_to_num_values", lambda x: fnp.nan_to_num(x, nan=1.5, posinf=9.0, neginf=-9.0),
          lambda x: np.nan_to_num(x, nan=1.5, posinf=9.0, neginf=-9.0)),
    OpSpec("remainder", fnp.remainder, 2, None, ref=np.remainder, joint=_divmod_args),
    OpSpec("mod", fnp.mod, 2, None, ref=np.mod, joint=_divmod_args),
    OpSpec("floor_divide", fnp.floor_divide, 2, None, ref=np.floor_divide, joint=_divmod_args),
    OpSpec("divmod", fnp.divmod, 2, None, ref=np.divmod, joint=_divmod_args),
    _spec("remainder_pyscalar", lambda x: fnp.remainder(x, 0.7), lambda x: np.remainder(x, 0.7),
          sampler=lambda rng, shape, dtype: ((rng.integers(-3, 4, shape)
                                              + rng.uniform(0.2, 0.8, shape)) * 0.7)
          .astype(dtype)),
    _spec("float_power", nargs=2, sampler=(POSITIVE, uniform(-1.5, 1.5))),
    _spec("float_power_int", lambda x: fnp.float_power(x, 3), lambda x: np.float_power(x, 3)),
    _spec("astype_f64", lambda x: fnp.astype(x, np.float64), lambda x: np.astype(x, np.float64)),
    _spec("astype_f32", lambda x: fnp.astype(x, np.float32), lambda x: np.astype(x, np.float32),
          tol={np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-7}),
]

NONDIFF = [
    _spec(name, sampler=_special(NORMAL), grad=False) for name in ("isnan", "isinf", "isfinite")
] + [
    _spec(f"{name}_int32", getattr(fnp, name), getattr(np, name),
          sampler=int_values(-3, 3, I32), dtypes=(I32,), grad=False)
    for name in ("isnan", "isinf", "isfinite", "nan_to_num")
] + [
    _spec(f"{name}_special", getattr(fnp, name), getattr(np, name), nargs=2,
          sampler=(_special(NORMAL), with_zeros(_special(NONZERO), 2)), grad=False)
    for name in ("floor_divide", "remainder", "logaddexp", "logaddexp2", "hypot")
] + [
    _spec("floor_divide_exact_halves", fnp.floor_divide, np.floor_divide, nargs=2,
          sampler=(lambda rng, shape, dtype: rng.integers(-8, 9, shape).astype(dtype) / 2,
                   lambda rng, shape, dtype: rng.choice([-0.5, 0.5, 0.1, -0.1, 3.0],
                                                        shape).astype(dtype)), grad=False),
    _spec("sinc_special", fnp.sinc, np.sinc, sampler=_special(NORMAL), grad=False),
    _spec("nan_to_num_special", fnp.nan_to_num, np.nan_to_num, sampler=_special(NORMAL),
          grad=False),
] + [
    _spec(f"{name}_{dt.name}", getattr(fnp, name), getattr(np, name), nargs=2,
          sampler=(int_values(-7, 7, dt) if dt.kind != "u" else int_values(0, 9, dt),
                   int_values(-3, 3, dt) if dt.kind != "u" else int_values(0, 3, dt)),
          dtypes=(dt,), grad=False)
    for name in ("floor_divide", "remainder", "divmod") for dt in (I32, I64, I8, U8)
] + [
    _spec(f"{name}_bool", getattr(fnp, name), getattr(np, name), nargs=2,
          sampler=lambda rng, shape, dtype: rng.uniform(size=shape) < 0.7, dtypes=(BOOL,),
          grad=False, shapes=[((3, 4), (3, 4))])
    for name in ("floor_divide", "remainder")
] + [
    _spec(f"{name}_of_int", getattr(fnp, name), getattr(np, name),
          sampler=int_values(-3, 3, I32), dtypes=(I32,), grad=False)
    for name in ("sinc", "deg2rad", "rad2deg")
] + [
    _spec("hypot_int_float32", fnp.hypot, np.hypot, nargs=2,
          sampler=(int_values(-3, 3, I8), NORMAL), dtypes=(np.dtype(np.float32),), grad=False,
          shapes=[((3, 4), (3, 1))]),
    _spec("float_power_f32_is_f64", lambda x: fnp.float_power(x, np.float32(2)),
          lambda x: np.float_power(x, np.float32(2)), grad=False),
    _spec("astype_int", lambda x: fnp.astype(x, np.int32), lambda x: np.astype(x, np.int32),
          grad=False),
    _spec("round_decimals-1_int", lambda x: fnp.round(x, -1), lambda x: np.round(x, -1),
          sampler=int_values(-60, 60, I64), dtypes=(I64,), grad=False),
    _spec("round_decimals1", lambda x: fnp.round(x, 1), lambda x: np.round(x, 1), grad=False),
    _spec("round_decimals2_plus_x", lambda x: fnp.round(x, 2) + x, lambda x: np.round(x, 2) + x,
          grad=False),
    _spec("round_decimals-1", lambda x: fnp.round(x, -1), lambda x: np.round(x, -1),
          sampler=uniform(-60, 60), grad=False),
]
SPECS = DIFFERENTIABLE + NONDIFF
check_unique_names(SPECS)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(SPECS))
def test_values(spec, shapes, dtype, representative):
    check_values(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(SPECS))
def test_jaxpr(spec, shapes, dtype, representative):
    check_jaxpr(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative",
                         cases(DIFFERENTIABLE, grad_only=True))
def test_grads(spec, shapes, dtype, representative):
    check_derivatives(spec, shapes, dtype, representative)


# ============================================================================ derivatives


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_sinc_at_zero(dtype):
    zero = dtype.type(0)
    assert fnp.sinc(zero) == 1 and fnp.sinc(zero).dtype == dtype
    assert fgrad.grad(fnp.sinc)(zero) == 0
    second = fgrad.grad(fgrad.grad(fnp.sinc))(zero)
    np.testing.assert_allclose(second, -math.pi ** 2 / 3, rtol=1e-6)
    check_grads(fnp.sinc, (np.array([0.0, 1e-6, -0.5], dtype),), order=2)


def test_logaddexp_is_stable():
    x = np.array([1e4, -1e4, 1e308, 0.0, -np.inf, np.inf])
    y = np.array([1e4 + 1.0, -1e4, 1e308, -800.0, -np.inf, np.inf])
    assert_same(fnp.logaddexp(x, y), np.logaddexp(x, y), 1e-15)
    # The derivative is the softmax weight of each argument, finite for large inputs.
    gx, gy = fgrad.grad(lambda a, b: fnp.sum(fnp.logaddexp(a, b)), argnums=(0, 1))(
        x[:4], y[:4])
    e = 1 / (1 + np.e)
    np.testing.assert_allclose(gx, [e, 0.5, 0.5, 1.0], rtol=1e-12)
    np.testing.assert_allclose(gy, [1 - e, 0.5, 0.5, 0.0], rtol=1e-12, atol=1e-300)
    x32 = np.float32(80.0)  # exp(80) overflows float32
    assert fnp.logaddexp(x32, x32).dtype == np.float32
    np.testing.assert_allclose(fnp.logaddexp(x32, x32), 80 + math.log(2), rtol=1e-7)


def test_hypot_is_stable():
    big = np.array([1e300, 1e-300, 3.0, 0.0])
    assert_same(fnp.hypot(big, big), np.hypot(big, big), 1e-15)
    assert fnp.hypot(np.nan, np.inf) == np.inf
    g = fgrad.grad(lambda a, b: fnp.hypot(a, b), argnums=(0, 1))(3.0, -4.0)
    np.testing.assert_allclose(g, (0.6, -0.8), rtol=1e-15)
    g = fgrad.grad(lambda a: fnp.hypot(a, a))(2.0)  # a tie between the two: still right
    np.testing.assert_allclose(g, math.sqrt(2), rtol=1e-15)


def test_mod_and_floor_divide_derivatives_like_jax():
    # d(x % y) = dx - floor(x / y) dy;  d(x // y) = 0.
    x, y = np.array([5.5, -5.5, 5.5]), np.array([2.0, 2.0, -2.0])
    gx, gy = fgrad.grad(lambda a, b: fnp.sum(fnp.remainder(a, b)), argnums=(0, 1))(x, y)
    assert_same(gx, np.ones(3), 0.0)
    assert_same(gy, -np.floor(x / y), 0.0)
    gx, gy = fgrad.grad(lambda a, b: fnp.sum(fnp.floor_divide(a, b)), argnums=(0, 1))(x, y)
    assert_same(gx, np.zeros(3), 0.0)
    assert_same(gy, np.zeros(3), 0.0)
    assert_same(fgrad.grad(lambda a: fnp.sum(fnp.round(a, 2)))(x), np.zeros(3), 0.0)


# ============================================================================ operators


OPERATORS = [
    ("floordiv", lambda x, y: x // y), ("rfloordiv", lambda x, y: 2.5 // y),
    ("floordiv_float", lambda x, y: x // 0.7), ("mod", lambda x, y: x % y),
    ("rmod", lambda x, y: 2.5 % y), ("mod_int", lambda x, y: x % 2),
    ("divmod", lambda x, y: divmod(x, y)), ("rdivmod", lambda x, y: divmod(3.0, y)),
    ("np_floor_divide", lambda x, y: np.floor_divide(x, y)),
    ("np_remainder", lambda x, y: np.remainder(x, y)), ("np_divmod", lambda x, y: np.divmod(x, y)),
    ("np_logaddexp", lambda x, y: np.logaddexp(x, y)), ("np_hypot", lambda x, y: np.hypot(x, y)),
    ("np_isnan", lambda x, y: np.isnan(x / y)), ("np_sinc", lambda x, y: np.sinc(x)),
]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize("fn", [f for _, f in OPERATORS], ids=[n for n, _ in OPERATORS])
def test_operators_on_tracers(fn, dtype):
    rng = np.random.default_rng(3)
    x, y = _divmod_args(rng, ((3, 4), (3, 4)), dtype)
    want = fn(x, y)
    traced, _ = fgrad.jvp(fn, (x, y), (np.ones_like(x), np.ones_like(y)))
    assert_same(traced, want, REDUCTION_TOL[dtype], what="under jvp")
    check_jaxpr_agrees(fn, (x, y), REDUCTION_TOL[dtype], what="under make_jaxpr")


def test_integer_operators_on_tracers():
    x = np.array([-7, -3, 0, 4, 9], np.int32)
    y = np.array([2, -2, 3, -4, 0], np.int32)
    fn = lambda a, b: (a // b, a % b, *divmod(a, 3), 7 // b, 7 % b)  # noqa: E731
    with np.errstate(all="ignore"):
        want = fn(x, y)
        check_jaxpr_agrees(fn, (x, y), what="integer // and %")
        closed = fgrad.make_jaxpr(fn)(x, y)
        outs = fgrad.core.eval_jaxpr(closed.jaxpr, closed.consts, x, y)
    assert_same([np.asarray(o) for o in outs], list(want), 0.0)


# ============================================================================ names


def test_shape_functions_and_dtype_names():
    x = np.ones((2, 3), np.float32)

    def f(t):
        assert fnp.shape(t) == (2, 3) and fnp.ndim(t) == 2 and fnp.size(t) == 6
        return t * fnp.size(t)

    check_jaxpr_agrees(f, (x,))
    assert (fnp.shape(x), fnp.ndim(x), fnp.size(x)) == ((2, 3), 2, 6)
    assert (fnp.shape(2.0), fnp.ndim([[1, 2]]), fnp.size([1, 2, 3])) == ((), 2, 3)
    assert fnp.float32 is np.float32 and fnp.float64 is np.float64
    assert fnp.int32 is np.int32 and fnp.int64 is np.int64 and fnp.bool_ is np.bool_
    assert fnp.zeros(2, fnp.float32).dtype == np.float32


def test_copy_and_astype():
    x = np.arange(3.0)
    c = fnp.copy(x)
    assert c is not x and np.array_equal(c, x)
    assert fnp.astype(x, np.int64).dtype == np.int64
    out, tangent = fgrad.jvp(lambda t: fnp.astype(fnp.copy(t), np.float32), (x,), (x,))
    assert out.dtype == tangent.dtype == np.float32
    assert fgrad.grad(lambda t: fnp.sum(fnp.astype(t, np.float32)))(x).dtype == np.float64


# ============================================================================ interop


NP_FUNCTIONS = [
    ("sum", lambda x: np.sum(x, axis=0)), ("mean", lambda x: np.mean(x)),
    ("max", lambda x: np.max(x, axis=1, keepdims=True)), ("std", lambda x: np.std(x)),
    ("var", lambda x: np.var(x, ddof=1)), ("prod", lambda x: np.prod(x, axis=-1)),
    ("reshape", lambda x: np.reshape(x, (-1,))), ("transpose", lambda x: np.transpose(x)),
    ("where", lambda x: np.where(x > 0, x, 0.0)), ("clip", lambda x: np.clip(x, -0.5, 0.5)),
    ("dot", lambda x: np.dot(x, x.T)), ("matmul", lambda x: np.matmul(x, x.T)),
    ("concatenate", lambda x: np.concatenate([x, x])), ("stack", lambda x: np.stack([x, x])),
    ("tensordot", lambda x: np.tensordot(x, x, 2)), ("einsum", lambda x: np.einsum("ij->j", x)),
    ("linalg_norm", lambda x: np.linalg.norm(x)), ("round", lambda x: np.round(x, 1)),
    ("nan_to_num", lambda x: np.nan_to_num(x)), ("isinf", lambda x: np.isinf(x)),
    ("shape", lambda x: x * np.shape(x)[0] * np.ndim(x) * np.size(x)),
]


@pytest.mark.parametrize("fn", [f for _, f in NP_FUNCTIONS], ids=[n for n, _ in NP_FUNCTIONS])
def test_numpy_functions_dispatch(fn):
    x = np.random.default_rng(4).uniform(-1, 1, (3, 4))
    want = fn(x)
    traced, _ = fgrad.jvp(fn, (x,), (np.ones_like(x),))
    assert_same(traced, want, 1e-12, what="under jvp")
    check_jaxpr_agrees(fn, (x,), 1e-12, what="under make_jaxpr")


def test_numpy_conversion_of_tracers_raises():
    x = np.ones(3)
    with pytest.raises(TracerArrayConversionError, match=r"converted to a NumPy array"):
        fgrad.make_jaxpr(lambda t: np.asarray(t))(x)
    with pytest.raises(TracerArrayConversionError):
        fgrad.grad(lambda t: np.array(t).sum())(x)
    with pytest.raises(TracerArrayConversionError,
                       match=r"np\.median was called on a traced value, and fgrad\.numpy has "
                             r"no median"):
        fgrad.make_jaxpr(lambda t: np.median(t))(x)
    with pytest.raises(TracerArrayConversionError, match=r"np\.fft\.fft .*no fft\.fft"):
        fgrad.make_jaxpr(lambda t: np.fft.fft(t))(x)


def test_binary_shapes_broadcast():
    """The new binary functions broadcast like NumPy over the usual shape grid."""
    rng = np.random.default_rng(5)
    for a_shape, b_shape in BINARY_SHAPES:
        a, b = rng.uniform(0.5, 2, a_shape), rng.uniform(0.5, 2, b_shape)
        for name in ("logaddexp", "hypot", "floor_divide", "remainder", "float_power"):
            assert_same(getattr(fnp, name)(a, b), getattr(np, name)(a, b), 1e-14, what=name)
