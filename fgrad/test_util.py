"""Numerical checks of derivatives against central finite differences.

`check_grads(f, args, order=1, modes=("fwd", "rev"))` checks that fgrad's
forward mode (`jvp`) and reverse mode (`vjp`) agree with finite differences of
`f`, to any order, and raises `AssertionError` naming the worst error.

What is checked, at each order, along deterministic random directions (entries of
size 0.5 to 1.5, of either sign):

* ``"fwd"``: the JVP tangent `jvp(f, args, v)[1]` against central differences
  `D(eps) = (f(x + eps v) - f(x - eps v)) / (2 eps)`, element by element (Richardson
  extrapolated, `(4 D(eps) - D(2 eps)) / 3`, so that the error is O(eps**4));
* ``"rev"``: the transpose identity `<u, J v> == <vjp_fn(u), v>` for a random
  output cotangent `u`, where `J v` is the JVP when ``"fwd"`` is also checked
  (forward mode is then tied to finite differences by the ``"fwd"`` check) and
  the central difference otherwise;
* at ``order > 1``: the same checks, recursively with ``order - 1``, on the
  function `(args, v) -> jvp(f, args, v)[1]` (``"fwd"``) and on the function
  `(args, u) -> vjp(f, *args)[1](u)` (``"rev"``), which exercises second
  (and higher) derivatives, including reverse-over-reverse.

Every JVP output and VJP cotangent must also have the shape and dtype of the
primal it belongs to, and the primal outputs of `jvp` and `vjp` must match `f`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import api
from .tree_util import tree_flatten, tree_unflatten

__all__ = ["check_grads", "numerical_jvp", "default_tolerance"]

# Finite differences run in the arguments' own precision. The step balances the truncation
# error (O(eps**4) for the extrapolated central difference) against rounding (~ ulp |f| / eps).
# Measured at order 2 on tanh/logistic MLPs with up to 64x64 weights, softplus and exp(sin)
# sums of 4096 terms, the worst error needing tolerance was ~1e-9 in float64 and ~6e-4 in
# float32, far inside the tolerances below (which also absorb sums of many terms).
_DEFAULT_EPS: dict[np.dtype, float] = {
    np.dtype(np.float16): 3e-2,
    np.dtype(np.float32): 3e-3,
    np.dtype(np.float64): 1e-4,
}
_DEFAULT_TOL: dict[np.dtype, float] = {
    np.dtype(np.float16): 1e-1,
    np.dtype(np.float32): 2e-2,
    np.dtype(np.float64): 1e-5,
}
_MODES = ("fwd", "rev")
_SEED = 0
_TINY = np.finfo(np.float64).tiny


def default_tolerance(dtype: Any) -> tuple[float, float]:
    """`(eps, tol)` used by `check_grads` for `dtype` (atol and rtol both equal `tol`)."""
    dtype = np.dtype(dtype)
    if dtype in _DEFAULT_TOL:
        return _DEFAULT_EPS[dtype], _DEFAULT_TOL[dtype]
    # Other float widths (longdouble): like float64.
    return _DEFAULT_EPS[np.dtype(np.float64)], _DEFAULT_TOL[np.dtype(np.float64)]


# ============================================================================ leaves


def _dtype(x: Any) -> np.dtype:
    """The dtype of a leaf (Python scalars as NumPy makes them)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return x.dtype
    if isinstance(x, bool):
        return np.dtype(np.bool_)
    if isinstance(x, int):
        return np.dtype(np.int64)
    if isinstance(x, float):
        return np.dtype(np.float64)
    return np.asarray(x).dtype


def _is_float(x: Any) -> bool:
    return _dtype(x).kind == "f"


def _like(template: Any, value: Any) -> Any:
    """`value` as a leaf of the same kind as `template`: Python scalar, NumPy scalar or array."""
    dtype = _dtype(template)
    if isinstance(template, (bool, int, float)) and not isinstance(template, np.generic):
        return type(template)(np.asarray(value).item())
    if isinstance(template, np.generic):
        return dtype.type(value)
    return np.asarray(value, dtype=dtype)


def _random_like(rng: np.random.Generator, x: Any) -> Any:
    """A random direction for a float leaf: entries of size 0.5 to 1.5, of either sign, so
    that no component is negligible and steps stay small near kinks. A zero for any other
    leaf, which stays fixed."""
    shape = np.shape(x)
    if not _is_float(x):
        return _like(x, np.zeros(shape, _dtype(x)))
    values = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return _like(x, values)


def _shift(x: Any, v: Any, step: float) -> tuple[Any, Any]:
    """`(x + step v, x - step v)` in `x`'s own precision (non-float leaves stay fixed)."""
    if not _is_float(x):
        return x, x
    dtype = _dtype(x)
    xa = np.asarray(x, dtype)
    delta = (dtype.type(step) * np.asarray(v, dtype)).astype(dtype)
    return _like(x, (xa + delta).astype(dtype)), _like(x, (xa - delta).astype(dtype))


def _lowest_precision(leaves: Sequence[Any]) -> np.dtype:
    floats = [_dtype(x) for x in leaves if _is_float(x)]
    if not floats:
        return np.dtype(np.float64)
    return max(floats, key=lambda d: np.finfo(d).eps)


# ============================================================================ finite differences


def numerical_jvp(f: Callable, args: Sequence[Any], tangents: Sequence[Any], eps: float,
                  stencil: int = 4) -> Any:
    """The derivative of `f` at `args` along `tangents` by central differences.

    With `stencil=2`: `D(eps) = (f(x + eps t) - f(x - eps t)) / (2 eps)`, error O(eps**2).
    With `stencil=4` (the default): the Richardson extrapolation `(4 D(eps) - D(2 eps)) / 3`
    of the same central difference, error O(eps**4), which lets the step be large enough
    for float32 rounding to stay small. Computed leaf by leaf in each output's own dtype;
    non-float leaves of `args` stay fixed and non-float outputs get a zero derivative.
    """
    if stencil not in (2, 4):
        raise ValueError(f"numerical_jvp: stencil must be 2 or 4, got {stencil!r}")
    leaves, tree = tree_flatten(tuple(args))
    t_leaves, t_tree = tree_flatten(tuple(tangents))
    if t_tree != tree:
        raise ValueError(f"numerical_jvp: tangents have structure {t_tree}, args have {tree}")

    def central(step: float) -> tuple[list[Any], Any]:
        shifted = [_shift(x, t, step) for x, t in zip(leaves, t_leaves)]
        plus, out_tree = tree_flatten(f(*tree_unflatten(tree, [s[0] for s in shifted])))
        minus, _ = tree_flatten(f(*tree_unflatten(tree, [s[1] for s in shifted])))
        diffs = []
        for p, m in zip(plus, minus):
            dtype = _dtype(p)
            if dtype.kind != "f":
                diffs.append(np.zeros(np.shape(p), dtype))
                continue
            d = (np.asarray(p, dtype) - np.asarray(m, dtype)) / dtype.type(2 * step)
            diffs.append(np.asarray(d, dtype))
        return diffs, out_tree

    diffs, out_tree = central(eps)
    if stencil == 4:
        coarse, _ = central(2 * eps)
        diffs = [d if d.dtype.kind != "f" else
                 np.asarray(d + (d - c) / d.dtype.type(3), d.dtype)
                 for d, c in zip(diffs, coarse)]
    return tree_unflatten(out_tree, diffs)


# ============================================================================ comparison


def _show(x: Any) -> str:
    return np.array2string(np.asarray(x), precision=6, threshold=12, edgeitems=3,
                           max_line_width=100)


def _leaf_errors(got: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, e = got.astype(np.float64), expected.astype(np.float64)
    abs_err = np.abs(g - e)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = np.where(abs_err == 0, 0.0, abs_err / np.maximum(np.abs(e), _TINY))
    return abs_err, rel_err


class _Check:
    """One level of the recursion: names what is checked, for error messages."""

    def __init__(self, mode: str, order: int, chain: str, eps: float, atol: float,
                 rtol: float, dtype: np.dtype):
        self.mode, self.order, self.chain = mode, order, chain
        self.eps, self.atol, self.rtol, self.dtype = eps, atol, rtol, dtype

    def header(self, what: str) -> str:
        return (f"check_grads: mode '{self.mode}' failed at order {self.order} ({self.chain}): "
                f"{what}\n  [{self.dtype} tolerances: atol={self.atol:g}, rtol={self.rtol:g}, "
                f"eps={self.eps:g}]")

    def fail(self, what: str, detail: str = "") -> AssertionError:
        return AssertionError(self.header(what) + (f"\n  {detail}" if detail else ""))

    def compare_trees(self, got: Any, expected: Any, what: str, kind: str,
                      values: bool = True) -> None:
        """Equal structures, shapes and dtypes, and (if `values`) elementwise
        `|got - expected| <= atol + rtol |expected|`; `kind` names the leaves in messages."""
        g_leaves, g_tree = tree_flatten(got)
        e_leaves, e_tree = tree_flatten(expected)
        if g_tree != e_tree:
            raise self.fail(what, f"structure: expected {e_tree}, got {g_tree}")
        worst: tuple[float, float, int] | None = None
        bad_leaf = None
        for i, (g, e) in enumerate(zip(g_leaves, e_leaves)):
            where = f"{kind} leaf {i} of {len(e_leaves)}"
            g_shape, e_shape = np.shape(g), np.shape(e)
            if g_shape != e_shape:
                raise self.fail(what, f"{where}: expected shape {e_shape}, got {g_shape}")
            if _dtype(g) != _dtype(e):
                raise self.fail(what, f"{where}: expected dtype {_dtype(e)}, got {_dtype(g)}")
            if not values or not _is_float(e):
                continue
            ga, ea = np.asarray(g), np.asarray(e)
            abs_err, rel_err = _leaf_errors(ga, ea)
            tol = self.atol + self.rtol * np.abs(ea.astype(np.float64))
            # Equal infinities and NaNs in the same places are fine (as in assert_allclose).
            same = (ga == ea) | (np.isnan(ga) & np.isnan(ea))
            abs_err, rel_err = np.where(same, 0.0, abs_err), np.where(same, 0.0, rel_err)
            ok = same | (abs_err <= tol)
            max_abs = float(abs_err.max(initial=0.0))
            max_rel = float(rel_err.max(initial=0.0))
            if not np.all(ok):
                if worst is None or max_abs > worst[0] or np.isnan(max_abs):
                    worst, bad_leaf = (max_abs, max_rel, i), (ga, ea, where)
        if worst is not None:
            ga, ea, where = bad_leaf
            raise self.fail(
                what,
                f"max abs error {worst[0]:.3g}, max rel error {worst[1]:.3g} in {where}, "
                f"shape {ea.shape}\n  expected: {_indent(_show(ea))}\n"
                f"  got:      {_indent(_show(ga))}",
            )

    def compare_inner(self, got: tuple[float, float], expected: tuple[float, float],
                      what: str, got_name: str, expected_name: str) -> None:
        """Scalars `(value, scale)`: `|got - expected| <= atol + rtol * scale`, where the
        scale is the largest of the two values and the norms of their terms (so rounding in
        a sum whose terms cancel is not mistaken for an error)."""
        (g, g_scale), (e, e_scale) = got, expected
        scale = max(abs(g), abs(e), g_scale, e_scale)
        err = abs(g - e)
        if err <= self.atol + self.rtol * scale or g == e or (np.isnan(g) and np.isnan(e)):
            return
        rel = err / max(abs(e), _TINY)
        raise self.fail(
            what,
            f"max abs error {err:.3g}, max rel error {rel:.3g} (scale of the terms {scale:.3g})"
            f"\n  expected: {expected_name} = {e:.8g}\n  got:      {got_name} = {g:.8g}",
        )


def _indent(text: str) -> str:
    return text.replace("\n", "\n            ")


def _inner(xs: Any, ys: Any) -> tuple[float, float]:
    """`(sum over float leaves of <x, y>, 2-norm of all the elementwise terms)`, in float64."""
    x_leaves, _ = tree_flatten(xs)
    y_leaves, _ = tree_flatten(ys)
    total, sq = 0.0, 0.0
    for x, y in zip(x_leaves, y_leaves):
        if not (_is_float(x) and _is_float(y)):
            continue
        terms = np.asarray(x, np.float64) * np.asarray(y, np.float64)
        total += float(np.sum(terms))
        sq += float(np.sum(terms * terms))
    return total, float(np.sqrt(sq))


# ============================================================================ check_grads


def check_grads(
    f: Callable,
    args: Sequence[Any],
    order: int = 1,
    modes: Sequence[str] = ("fwd", "rev"),
    atol: float | None = None,
    rtol: float | None = None,
    eps: float | None = None,
) -> None:
    """Check fgrad's derivatives of `f` at `args` against finite differences, up to `order`.

    `f` takes the positional arguments `*args` (pytrees of float arrays, NumPy scalars or
    Python floats; other leaves, such as integers, are held fixed) and may return a pytree.
    `modes` is a subset of ``("fwd", "rev")``:

    * ``"fwd"`` compares `fgrad.jvp` with central differences along a random direction `v`,
      Richardson extrapolated: `(4 D(eps) - D(2 eps)) / 3` with
      `D(h) = (f(x + h v) - f(x - h v)) / (2 h)`;
    * ``"rev"`` checks `fgrad.vjp` by the identity `<u, J v> == <vjp_fn(u), v>` for a random
      output cotangent `u`, with `J v` the JVP (or finite differences if ``"fwd"`` is not
      checked).

    With `order > 1` the same checks run, with `order - 1`, on the JVP and the VJP as
    functions of (arguments, direction), so `order=2` checks second derivatives in every
    combination of the modes. Directions are drawn from a fixed-seed generator, so the
    check is deterministic; their entries are 0.5 to 1.5 in size, of either sign. Steps
    are absolute: for inputs of size ~1000 in float32, or for functions with kinks near
    `args` (max, abs, norms), pass a suitable `eps`.

    Defaults, by the lowest floating precision among the arguments and outputs (finite
    differences are computed in the arguments' own dtypes, never upcast):

    ========  =======  ===========  ===========
    dtype     eps      atol         rtol
    ========  =======  ===========  ===========
    float64   1e-4     1e-5         1e-5
    float32   3e-3     2e-2         2e-2
    float16   3e-2     1e-1         1e-1
    ========  =======  ===========  ===========

    Values are compared elementwise as `|got - expected| <= atol + rtol * |expected|`;
    the inner products of the ``"rev"`` check as scalars, with `rtol` relative to the
    size of their terms. Raises `AssertionError` naming the mode, the order, the maximum
    absolute and relative errors, and the expected and computed values.
    """
    if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or order < 1:
        raise ValueError(f"check_grads: order must be a positive integer, got {order!r}")
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    unknown = [m for m in modes if m not in _MODES]
    if unknown or not modes:
        raise ValueError(f"check_grads: modes must be a non-empty subset of {_MODES}, "
                         f"got {modes!r}")
    if not isinstance(args, (tuple, list)):
        raise TypeError("check_grads: args must be a tuple (or list) of positional arguments, "
                        f"e.g. check_grads(f, (x,)), got {type(args).__name__}")
    _check_grads(f, tuple(args), int(order), 1, modes, "", atol, rtol, eps)


def _check_grads(f: Callable, args: tuple, order: int, depth: int, modes: tuple[str, ...],
                 chain: str, atol: float | None, rtol: float | None, eps: float | None) -> None:
    leaves, in_tree = tree_flatten(args)
    out = f(*args)
    out_leaves, _ = tree_flatten(out)
    dtype = _lowest_precision(list(leaves) + list(out_leaves))
    default_eps, default_tol = default_tolerance(dtype)
    step = default_eps if eps is None else float(eps)
    a_tol = default_tol if atol is None else float(atol)
    r_tol = default_tol if rtol is None else float(rtol)

    rng = np.random.default_rng(_SEED)
    v = tree_unflatten(in_tree, [_random_like(rng, x) for x in leaves])
    fd = numerical_jvp(f, args, v, step)
    of = f" of {chain}" if chain else ""

    jvp_out = None
    if "fwd" in modes:
        check = _Check("fwd", depth, f"JVP{of}", step, a_tol, r_tol, dtype)
        primal_out, jvp_out = api.jvp(f, args, v)
        check.compare_trees(primal_out, out, "the primal output of jvp differs from f(*args)",
                            "output")
        check.compare_trees(jvp_out, fd, "the JVP differs from central finite differences "
                            "of f along v", "output")
        if order > 1:
            n = len(args)

            def f_jvp(*primals_and_tangents: Any) -> Any:
                primals, tangents = primals_and_tangents[:n], primals_and_tangents[n:]
                return api.jvp(f, primals, tangents)[1]

            _check_grads(f_jvp, args + tuple(v), order - 1, depth + 1, modes, f"JVP{of}",
                         atol, rtol, eps)

    if "rev" in modes:
        check = _Check("rev", depth, f"VJP{of}", step, a_tol, r_tol, dtype)
        primal_out, vjp_fn = api.vjp(f, *args)
        check.compare_trees(primal_out, out, "the primal output of vjp differs from f(*args)",
                            "output")
        u_leaves = [_random_like(rng, o) for o in tree_flatten(primal_out)[0]]
        u = tree_unflatten(tree_flatten(primal_out)[1], u_leaves)
        ct = vjp_fn(u)
        if not isinstance(ct, tuple) or len(ct) != len(args):
            raise check.fail(f"vjp_fn returned {type(ct).__name__} of length "
                             f"{len(ct) if isinstance(ct, (tuple, list)) else '?'}; expected a "
                             f"tuple with one cotangent per argument ({len(args)})")
        check.compare_trees(ct, args, "the VJP's cotangents do not match the arguments",
                            "argument", values=False)
        got = _inner(ct, v)
        if jvp_out is not None:
            check.compare_inner(got, _inner(u, jvp_out),
                                "the VJP is not the transpose of the JVP", "<vjp(u), v>",
                                "<u, jvp(v)>")
        else:
            check.compare_inner(got, _inner(u, fd),
                                "the VJP differs from central finite differences",
                                "<vjp(u), v>", "<u, finite differences of f along v>")
        if order > 1:
            n = len(args)

            def f_vjp(*primals_and_cotangent: Any) -> Any:
                primals, cotangent = primals_and_cotangent[:n], primals_and_cotangent[n]
                return api.vjp(f, *primals)[1](cotangent)

            _check_grads(f_vjp, args + (u,), order - 1, depth + 1, modes, f"VJP{of}",
                         atol, rtol, eps)

