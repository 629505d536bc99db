"""fgrad.nn: activations, the softmax family, losses and pure layers.

Activations and `softmax` / `log_softmax` / `logsumexp` / `one_hot` follow `jax.nn`
(names, arguments, values at the edges); the losses have `torch.nn.functional`'s
names and semantics; layers are stax-style `(init_fn, apply_fn)` pairs.

Everything is built from `fgrad.numpy`, so it works under every transform (`grad`,
`jit`, `vmap`, ...). Where the derivative of the naive formula is unstable or NaN,
a `custom_jvp` rule supplies the stable one (relu, softplus, softmax, logsumexp,
the clamped log of `binary_cross_entropy`, and erf for the exact gelu). Integer
inputs to the activations are promoted to float64 (as `jax.nn` promotes them to
its default float); float32 stays float32.

Layers::

    init_fn, apply_fn = serial(Dense(64), Relu, Dense(10))
    params = init_fn(np.random.default_rng(0), (-1, 784))   # a list of per-layer params
    logits = apply_fn(params, x)                             # x of shape (batch, 784)

`init_fn(rng, input_shape)` takes a `numpy.random.Generator` (the same seed gives the
same params) and returns only the params; `serial` works out each layer's input shape
by tracing the previous layer abstractly (`-1` or `None` dimensions are traced as 1).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import lax
from . import numpy as fnp
from .api import make_jaxpr
from .core import Tracer
from .custom_derivatives import custom_jvp

__all__ = [
    "relu", "sigmoid", "softplus", "gelu", "silu", "tanh", "softmax", "log_softmax",
    "logsumexp", "one_hot",
    "mse_loss", "cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "Dense", "Relu", "Tanh", "Sigmoid", "Gelu", "Silu", "Softplus", "Softmax", "LogSoftmax",
    "serial",
]

Array = Any  # a NumPy array, a NumPy scalar or a tracer
InitFn = Callable[[np.random.Generator, Sequence[int]], Any]
ApplyFn = Callable[[Any, Array], Array]
Layer = tuple[InitFn, ApplyFn]

# ============================================================================ helpers


def _as_float(x: Any) -> Array:
    """`x` as an array; booleans and integers become float64 (as jax.nn promotes them)."""
    x = fnp.asarray(x)
    if x.dtype.kind not in "fc":
        x = x.astype(np.float64)
    return x


def _concrete(x: Any) -> np.ndarray | None:
    """The concrete value of `x`, or None when it is abstract (under jit, vmap)."""
    if isinstance(x, Tracer):
        x = x.to_concrete()
        if x is None or isinstance(x, Tracer):
            return None
    return np.asarray(x)


def _quiet(fn: Callable) -> Callable:
    """Run `fn` without NumPy floating-point warnings: as in fgrad's primitives (and JAX),
    inf and NaN are results, not warnings. (On concrete arrays, Python operators are
    NumPy's own, which would warn.)"""

    @functools.wraps(fn)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return quiet


def _axes(fname: str, axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """`axis` (None, an int or a sequence of ints) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ValueError(f"{fname}: axis {axis!r} is out of range for an input with "
                             f"{ndim} dimension{'s' if ndim != 1 else ''}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{fname}: axis {axis!r} repeats an axis")
    return tuple(sorted(out))


# ============================================================================ activations


@custom_jvp
def _relu(x: Array) -> Array:
    return fnp.maximum(x, 0)


@_relu.defjvp
def _relu_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return fnp.maximum(x, 0), fnp.where(x > 0, t, fnp.zeros_like(t))


@_quiet
def relu(x: Array) -> Array:
    """`max(x, 0)`; its derivative at 0 is 0 (as in JAX). Integer inputs stay integer."""
    x = fnp.asarray(x)
    return _relu(x)


@_quiet
def sigmoid(x: Array) -> Array:
    """The logistic function `1 / (1 + exp(-x))`, without overflow for large |x|."""
    return lax.logistic(_as_float(x))


def _softplus_value(x: Array) -> Array:
    return fnp.maximum(x, 0) + fnp.log1p(fnp.exp(-fnp.abs(x)))


@custom_jvp
def _softplus(x: Array) -> Array:
    return _softplus_value(x)


@_softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _softplus_value(x), t * lax.logistic(x)


@_quiet
def softplus(x: Array) -> Array:
    """`log(1 + exp(x))`, computed as `max(x, 0) + log1p(exp(-|x|))`; derivative `sigmoid(x)`."""
    return _softplus(_as_float(x))


@_quiet
def silu(x: Array) -> Array:
    """`x * sigmoid(x)` (also called swish)."""
    x = _as_float(x)
    return x * lax.logistic(x)


@_quiet
def tanh(x: Array) -> Array:
    """The hyperbolic tangent."""
    return fnp.tanh(_as_float(x))


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SQRT_HALF = math.sqrt(0.5)


@_quiet
def gelu(x: Array, approximate: bool = True) -> Array:
    """The Gaussian error linear unit `x * Phi(x)`.

    `approximate=True` (the default, as in `jax.nn.gelu`) uses the tanh approximation
    `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`; `approximate=False` is exact,
    `0.5 x (1 + erf(x / sqrt(2)))` (PyTorch's default), with an erf accurate to about
    1e-16 in float64 (see `_erf`).
    """
    x = _as_float(x)
    if approximate:
        cdf = 0.5 * (1.0 + fnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))))
        return x * cdf
    return 0.5 * x * (1.0 + _erf(x * _SQRT_HALF))


# ---------------------------------------------------------------------------- erf
# erf(x) for |x| < 1: its Taylor series, x * sum_n c_n x^(2n) with
# c_n = 2/sqrt(pi) (-1)^n / (n! (2n + 1)); 19 terms leave a remainder below 5e-18.
_ERF_TAYLOR = tuple(2.0 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1))
                    for n in range(19))
# erf(x) for 1 <= x <= 6: 1 - exp(-x^2) G(x), where G(x) = exp(x^2) erfc(x) is smooth; G is
# a Chebyshev series in s = (2/x - (1/6 + 1)) / (1 - 1/6) (that is, in 1/x mapped to
# [-1, 1]). The coefficients interpolate G at 22 Chebyshev nodes, computed with mpmath
# at 50 digits. Beyond 6, erfc(x) < 2.2e-17 and erf(x) rounds to 1 in float64.
_ERFC_CHEB = (
    0.27477468589795284, 0.16699329119310397, -0.014778434908201299, 0.0004607660043734876,
    0.0001765796783540858, -5.026984064246909e-05, 7.4270133556075315e-06,
    -3.5188112192476504e-07, -1.7150112885918722e-07, 6.706623053010448e-08,
    -1.4316589264944162e-08, 1.7595567908535923e-09, 7.452123864273792e-11,
    -1.1543784239302857e-10, 3.8873494209015634e-11, -8.504873156096077e-12,
    1.1272313531129422e-12, 4.3282042807068734e-14, -8.422291894027146e-14,
    3.201351610708952e-14, -8.177540749720813e-15, 1.4836059288654313e-15,
)
_ERF_SPLIT, _ERF_MAX = 1.0, 6.0
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _erf_value(x: Array) -> Array:
    ax = fnp.abs(x)
    # |x| < 1: Horner in t = x^2 (inputs clipped so that the unused branch stays finite).
    xs = fnp.minimum(ax, _ERF_SPLIT)
    t = xs * xs
    p: Any = _ERF_TAYLOR[-1]
    for c in _ERF_TAYLOR[-2::-1]:
        p = p * t + c
    small = xs * p
    # 1 <= |x|: Clenshaw's recurrence for the Chebyshev series of G.
    z = fnp.clip(ax, _ERF_SPLIT, _ERF_MAX)
    lo, hi = 1.0 / _ERF_MAX, 1.0 / _ERF_SPLIT
    s = (2.0 / z - (lo + hi)) / (hi - lo)
    b1: Any = 0.0
    b2: Any = 0.0
    for c in _ERFC_CHEB[:0:-1]:
        b1, b2 = c + 2.0 * s * b1 - b2, b1
    g = _ERFC_CHEB[0] + s * b1 - b2
    large = 1.0 - fnp.exp(-(z * z)) * g
    r = fnp.where(ax < _ERF_SPLIT, small, large)
    return fnp.where(x < 0, -r, r)


@custom_jvp
def _erf(x: Array) -> Array:
    """The error function, for float arrays: absolute error below 2.3e-16 in float64 (checked
    against math.erf in the tests), float32 to float32 rounding. Derivative
    `2/sqrt(pi) exp(-x^2)`."""
    return _erf_value(x)


@_erf.defjvp
def _erf_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _erf_value(x), t * (_TWO_OVER_SQRT_PI * fnp.exp(-(x * x)))


# ============================================================================ softmax family


def _softmax_value(x: Array, axis: tuple[int, ...]) -> Array:
    unnormalized = fnp.exp(x - lax.stop_gradient(fnp.max(x, axis=axis, keepdims=True)))
    return unnormalized / fnp.sum(unnormalized, axis=axis, keepdims=True)


@functools.partial(custom_jvp, nondiff_argnums=(1,))
def _softmax(x: Array, axis: tuple[int, ...]) -> Array:
    return _softmax_value(x, axis)


@_softmax.defjvp
def _softmax_jvp(axis, primals, tangents):
    (x,), (t,) = primals, tangents
    y = _softmax_value(x, axis)
    return y, y * (t - fnp.sum(y * t, axis=axis, keepdims=True))


@_quiet
def softmax(x: Array, axis: int | Sequence[int] = -1) -> Array:
    """`exp(x) / sum(exp(x), axis)`, shifted by the maximum so that nothing overflows.
    A slice that is all -inf gives NaN, as in JAX and PyTorch."""
    x = _as_float(x)
    return _softmax(x, _axes("softmax", axis, x.ndim))


@_quiet
def log_softmax(x: Array, axis: int | Sequence[int] = -1) -> Array:
    """`x - logsumexp(x, axis, keepdims=True)`, computed from `x - max(x)` (stable values and
    derivatives). A slice that is all -inf gives NaN, as in JAX and PyTorch."""
    x = _as_float(x)
    axes = _axes("log_softmax", axis, x.ndim)
    shifted = x - lax.stop_gradient(fnp.max(x, axis=axes, keepdims=True))
    return shifted - fnp.log(fnp.sum(fnp.exp(shifted), axis=axes, keepdims=True))


def _lse_terms(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array, Array]:
    """`(m, e, s)`: the shift (the maximum, or 0 where that is not finite), `exp(x - m)` and
    its sum, all with the reduced axes kept."""
    m = lax.stop_gradient(fnp.max(x, axis=axes, keepdims=True))
    m = fnp.where(fnp.isfinite(m), m, 0.0)
    e = fnp.exp(x - m)
    return m, e, fnp.sum(e, axis=axes, keepdims=True)


def _drop_axes(x: Array, axes: tuple[int, ...], keepdims: bool) -> Array:
    if keepdims:
        return x
    return fnp.reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


@functools.partial(custom_jvp, nondiff_argnums=(1, 2))
def _logsumexp(x: Array, axes: tuple[int, ...], keepdims: bool) -> Array:
    m, _, s = _lse_terms(x, axes)
    return _drop_axes(fnp.log(s) + m, axes, keepdims)


@_logsumexp.defjvp
def _logsumexp_jvp(axes, keepdims, primals, tangents):
    (x,), (t,) = primals, tangents
    m, e, s = _lse_terms(x, axes)
    out = _drop_axes(fnp.log(s) + m, axes, keepdims)
    # The weights are softmax(x); a slice that is all -inf (s == 0) gets weight 0, not NaN.
    w = e / fnp.where(s == 0, 1.0, s)
    return out, fnp.sum(w * t, axis=axes, keepdims=keepdims)


@_quiet
def logsumexp(x: Array, axis: int | Sequence[int] | None = None, keepdims: bool = False
              ) -> Array:
    """`log(sum(exp(x), axis))` without overflow; every axis when `axis` is None.

    As in NumPy/SciPy: a slice that is all -inf gives -inf (silently), one containing +inf
    gives +inf, NaN propagates. The derivative is `softmax(x)` along `axis` (0 for a slice
    that is all -inf).
    """
    x = _as_float(x)
    return _logsumexp(x, _axes("logsumexp", axis, x.ndim), bool(keepdims))


def one_hot(x: Array, num_classes: int, dtype: Any = np.float64) -> Array:
    """`x[..., None] == arange(num_classes)` as `dtype`: a new last axis of length
    `num_classes`. Indices outside `[0, num_classes)` give an all-zero row (as in JAX).

    `x` must hold integers: integer or bool arrays, or (as JAX allows) float arrays of
    whole numbers; a concrete float array with a fractional value is an error.
    """
    if isinstance(num_classes, Tracer) or not isinstance(num_classes, (int, np.integer)) \
            or isinstance(num_classes, bool) or num_classes < 0:
        raise TypeError(f"one_hot: num_classes must be a non-negative Python int, got "
                        f"{num_classes!r}")
    x = fnp.asarray(x)
    kind = x.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"one_hot: x must hold integer class indices, got a {x.dtype} array "
                        f"of shape {x.shape}")
    if kind == "f":
        value = _concrete(x)
        if value is not None and not np.all(np.isfinite(value) & (value == np.floor(value))):
            bad = value[~(np.isfinite(value) & (value == np.floor(value)))].ravel()[0]
            raise ValueError(f"one_hot: x must hold integer class indices, got a {x.dtype} "
                             f"array of shape {x.shape} containing {bad.item()!r}; convert it with "
                             "x.astype(int)")
    classes = fnp.arange(int(num_classes))
    return (fnp.expand_dims(x, -1) == classes).astype(dtype)


# ============================================================================ losses

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(fname: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fname}: reduction must be 'mean', 'sum' or 'none', got "
                         f"{reduction!r}")


def _reduce(loss: Array, reduction: str) -> Array:
    if reduction == "mean":
        return fnp.mean(loss)
    if reduction == "sum":
        return fnp.sum(loss)
    return loss


@_quiet
def mse_loss(input: Array, target: Array, reduction: str = "mean") -> Array:
    """`(input - target)**2`, reduced by `reduction` ('mean', 'sum' or 'none').

    As in PyTorch, a target of another shape is broadcast against the input, with a
    warning (it is usually a mistake, e.g. shapes (N, 1) and (N,) make an (N, N) loss).
    """
    _check_reduction("mse_loss", reduction)
    x, y = _as_float(input), fnp.asarray(target)
    if x.shape != y.shape:
        warnings.warn(f"mse_loss: the target's shape {y.shape} differs from the input's "
                      f"shape {x.shape}; they are broadcast together, which is probably not "
                      "what you want", UserWarning, stacklevel=3)
    d = x - y
    return _reduce(d * d, reduction)


@_quiet
def cross_entropy(input: Array, target: Array, reduction: str = "mean") -> Array:
    """Softmax cross-entropy of logits `input` against `target`, as
    `torch.nn.functional.cross_entropy`.

    `input` has the classes along axis 1: shape (N, C), or (N, C, d1, ...), or (C,) for
    one example. `target` is either integer class indices of the input's shape without
    the class axis ((N,), (N, d1, ...) or ()), or class probabilities of the input's
    shape (a float array). The loss per example is `-sum(target_probs * log_softmax)`;
    'mean' averages over every example (N * d1 * ...). Indices out of `[0, C)` are an
    error when the target is concrete (not under jit).
    """
    _check_reduction("cross_entropy", reduction)
    logits, y = _as_float(input), fnp.asarray(target)
    if logits.ndim == 0:
        raise ValueError("cross_entropy: input must have a class axis: shape (N, C) or (C,), "
                         "got a scalar")
    class_axis = 0 if logits.ndim == 1 else 1
    n_classes = logits.shape[class_axis]
    logp = log_softmax(logits, axis=class_axis)
    if y.dtype.kind in "iu":
        expected = logits.shape[:class_axis] + logits.shape[class_axis + 1:]
        if y.shape != expected:
            raise ValueError(
                f"cross_entropy: for input of shape {logits.shape} (classes along axis "
                f"{class_axis}), integer class indices must have shape {expected}, got target "
                f"of shape {y.shape}")
        value = _concrete(y)
        if value is not None and value.size and (value.min() < 0 or value.max() >= n_classes):
            bad = value[(value < 0) | (value >= n_classes)].ravel()[0]
            raise ValueError(f"cross_entropy: target holds class index {bad}, out of range "
                             f"for {n_classes} classes (input shape {logits.shape}); class "
                             f"indices must be in [0, {n_classes})")
        mask = fnp.moveaxis(one_hot(y, n_classes, dtype=np.bool_), -1, class_axis)
        loss = -fnp.sum(fnp.where(mask, logp, 0.0), axis=class_axis)
    elif y.dtype.kind == "f":
        if y.shape != logits.shape:
            raise ValueError(
                f"cross_entropy: a floating-point target holds class probabilities and must "
                f"have the input's shape {logits.shape}, got target of shape {y.shape}; for "
                f"class indices pass an integer array of shape "
                f"{logits.shape[:class_axis] + logits.shape[class_axis + 1:]}")
        loss = -fnp.sum(y * logp, axis=class_axis)
    else:
        raise TypeError(f"cross_entropy: target must be integer class indices or float class "
                        f"probabilities, got a {y.dtype} array of shape {y.shape}")
    return _reduce(loss, reduction)


_LOG_CLAMP = -100.0  # PyTorch clamps the logs of binary_cross_entropy at -100
_BCE_EPS = 1e-12  # and divides by at least this in their derivative


def _clamped_log_value(p: Array) -> Array:
    return fnp.maximum(fnp.log(p), _LOG_CLAMP)


@custom_jvp
def _clamped_log(p: Array) -> Array:
    return _clamped_log_value(p)


@_clamped_log.defjvp
def _clamped_log_jvp(primals, tangents):
    (p,), (t,) = primals, tangents
    return _clamped_log_value(p), t / fnp.maximum(p, _BCE_EPS)


def _clamped_log1m_value(p: Array) -> Array:
    return fnp.maximum(fnp.log1p(-p), _LOG_CLAMP)


@custom_jvp
def _clamped_log1m(p: Array) -> Array:
    """`max(log(1 - p), -100)`, from log1p(-p) as PyTorch computes it."""
    return _clamped_log1m_value(p)


@_clamped_log1m.defjvp
def _clamped_log1m_jvp(primals, tangents):
    (p,), (t,) = primals, tangents
    return _clamped_log1m_value(p), -t / fnp.maximum(1.0 - p, _BCE_EPS)


def _same_shape(fname: str, x: Array, y: Array) -> None:
    if x.shape != y.shape:
        raise ValueError(f"{fname}: target shape {y.shape} differs from input shape "
                         f"{x.shape}; they must be the same (as in PyTorch)")


def _float_like(y: Any, x: Array) -> Array:
    y = fnp.asarray(y)
    return y if y.dtype.kind == "f" else y.astype(x.dtype)


@_quiet
def binary_cross_entropy(input: Array, target: Array, reduction: str = "mean",
                         *, weight: Array | None = None) -> Array:
    """`-(target log(input) + (1 - target) log(1 - input))` for probabilities `input`, with
    each log clamped at -100 (as PyTorch does, so that 0 and 1 give finite losses), times
    `weight` (broadcast) if given. Input and target must have one shape; a concrete input
    outside [0, 1] is an error. Derivatives divide by at least 1e-12, as PyTorch's do."""
    _check_reduction("binary_cross_entropy", reduction)
    p = _as_float(input)
    y = _float_like(target, p)
    _same_shape("binary_cross_entropy", p, y)
    value = _concrete(p)
    if value is not None and value.size and not np.all((value >= 0) & (value <= 1)):
        raise ValueError(
            f"binary_cross_entropy: input must hold probabilities in [0, 1], got values from "
            f"{np.nanmin(value):g} to {np.nanmax(value):g} (shape {p.shape}); apply sigmoid "
            "first, or pass logits to binary_cross_entropy_with_logits")
    loss = -(y * _clamped_log(p) + (1.0 - y) * _clamped_log1m(p))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _bce_logits_value(x: Array, y: Array) -> Array:
    # max(x, 0) - x y cancels exactly where the loss is tiny (x << 0 with y = 0, or x >> 0
    # with y = 1), so that log1p(exp(-|x|)) keeps its full precision there.
    return fnp.maximum(x, 0) - x * y + fnp.log1p(fnp.exp(-fnp.abs(x)))


@custom_jvp
def _bce_logits(x: Array, y: Array) -> Array:
    return _bce_logits_value(x, y)


@_bce_logits.defjvp
def _bce_logits_jvp(primals, tangents):
    (x, y), (tx, ty) = primals, tangents
    return _bce_logits_value(x, y), (lax.logistic(x) - y) * tx - x * ty


@_quiet
def binary_cross_entropy_with_logits(input: Array, target: Array,
                                     reduction: str = "mean", *, weight: Array | None = None,
                                     pos_weight: Array | None = None) -> Array:
    """`binary_cross_entropy(sigmoid(input), target)` computed stably from the logits:
    `(1 - target) x + (1 + (pos_weight - 1) target) softplus(-x)`, as PyTorch. `weight`
    multiplies each element's loss; `pos_weight` (broadcast along the last axis) weights
    the positive examples."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    x = _as_float(input)
    y = _float_like(target, x)
    _same_shape("binary_cross_entropy_with_logits", x, y)
    if pos_weight is None:
        loss = _bce_logits(x, y)
    else:
        loss = (1.0 - y) * x + (1.0 + (fnp.asarray(pos_weight) - 1.0) * y) * _softplus(-x)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# ============================================================================ layers


def _check_rng(fname: str, rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{fname} init_fn: rng must be a numpy.random.Generator (e.g. "
                        f"np.random.default_rng(0)), got {type(rng).__name__}")


def _check_shape(fname: str, input_shape: Any) -> tuple:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{fname} init_fn: input_shape must be a tuple of ints, got "
                        f"{input_shape!r}") from None
    if not shape:
        raise ValueError(f"{fname} init_fn: input_shape must have at least one dimension "
                         "(the features), got ()")
    return shape


def Dense(out_dim: int) -> Layer:  # noqa: N802 (stax's name)
    """A fully connected layer `x @ w + b`, with params `{"w": (in, out), "b": (out,)}`.

    Initialised like PyTorch's `nn.Linear`: `w` then `b`, each uniform in
    `[-1/sqrt(in), 1/sqrt(in)]` (float64), with `in = input_shape[-1]`.
    """
    if isinstance(out_dim, bool) or not isinstance(out_dim, (int, np.integer)) or out_dim < 1:
        raise ValueError(f"Dense: out_dim must be a positive int, got {out_dim!r}")
    out_dim = int(out_dim)

    def init_fn(rng: np.random.Generator, input_shape: Sequence[int]) -> dict[str, np.ndarray]:
        _check_rng("Dense", rng)
        shape = _check_shape("Dense", input_shape)
        in_dim = shape[-1]
        if isinstance(in_dim, bool) or not isinstance(in_dim, (int, np.integer)) or in_dim < 1:
            raise ValueError(f"Dense init_fn: the input's last dimension (the features) must "
                             f"be a positive int, got input_shape {shape}")
        bound = 1.0 / math.sqrt(in_dim)
        w = rng.uniform(-bound, bound, (int(in_dim), out_dim))
        b = rng.uniform(-bound, bound, (out_dim,))
        return {"w": w, "b": b}

    def apply_fn(params: dict[str, Array], x: Array) -> Array:
        w, b = params["w"], params["b"]
        x = fnp.asarray(x)
        in_dim = fnp.shape(w)[0]
        if x.ndim == 0 or x.shape[-1] != in_dim:
            raise ValueError(f"Dense: the input's last dimension must be {in_dim} (w has shape "
                             f"{fnp.shape(w)}), got an input of shape {x.shape}")
        return fnp.matmul(x, w) + b

    return init_fn, apply_fn


def _elementwise(fn: Callable[[Array], Array]) -> Layer:
    def init_fn(rng: np.random.Generator, input_shape: Sequence[int]) -> tuple:
        return ()

    def apply_fn(params: Any, x: Array) -> Array:
        return fn(x)

    return init_fn, apply_fn


Relu = _elementwise(relu)
Tanh = _elementwise(tanh)
Sigmoid = _elementwise(sigmoid)
Gelu = _elementwise(gelu)
Silu = _elementwise(silu)
Softplus = _elementwise(softplus)
Softmax = _elementwise(softmax)
LogSoftmax = _elementwise(log_softmax)


def _output_shape(apply_fn: ApplyFn, params: Any, input_shape: tuple) -> tuple:
    """The shape `apply_fn(params, x)` returns for `x` of `input_shape`, by tracing it
    (unknown dimensions, -1 or None, are traced as 1)."""
    shape = tuple(1 if d is None or d < 0 else int(d) for d in input_shape)
    closed = make_jaxpr(lambda x: apply_fn(params, x))(np.zeros(shape))
    if len(closed.out_avals) != 1:
        raise TypeError("serial: every layer but the last must return one array, got "
                        f"{len(closed.out_avals)} outputs")
    return tuple(closed.out_avals[0].shape)


def serial(*layers: Layer) -> Layer:
    """Layers applied one after another. `init_fn(rng, input_shape)` returns a list with
    each layer's params (initialised in order from `rng`, each with its input's shape)."""
    for i, layer in enumerate(layers):
        if not (isinstance(layer, tuple) and len(layer) == 2 and all(map(callable, layer))):
            hint = (" (a layer factory such as Dense must be called: Dense(64))"
                    if callable(layer) else "")
            raise TypeError(f"serial: layer {i} must be an (init_fn, apply_fn) pair, got "
                            f"{type(layer).__name__}{hint}")

    def init_fn(rng: np.random.Generator, input_shape: Sequence[int]) -> list[Any]:
        shape = _check_shape("serial", input_shape)
        params = []
        for i, (layer_init, layer_apply) in enumerate(layers):
            p = layer_init(rng, shape)
            params.append(p)
            if i + 1 < len(layers):
                shape = _output_shape(layer_apply, p, shape)
        return params

    def apply_fn(params: Sequence[Any], x: Array) -> Array:
        if not isinstance(params, (list, tuple)) or len(params) != len(layers):
            got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
            raise ValueError(f"serial: params must be a list with one entry per layer "
                             f"({len(layers)}), got {got}")
        for (_, layer_apply), p in zip(layers, params):
            x = layer_apply(p, x)
        return x

    return init_fn, apply_fn
