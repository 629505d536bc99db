"""fgrad.numpy.linalg and the primitives of fgrad.lax.linalg.

Values and dtypes against NumPy, derivatives against finite differences (order 2,
both modes, on well-conditioned inputs), the staged IR against eager evaluation,
vmap against a Python loop, and the errors (singular, non-square, bad shapes).

Eigenvectors and singular vectors are compared with NumPy's after putting NumPy's in
fgrad's sign convention (largest entry of each vector positive); samplers keep that
entry clear of the runner-up, so the convention is continuous near the samples.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from _opspec import (
    FLOATS,
    OpSpec,
    assert_same,
    cases,
    check_derivatives,
    check_jaxpr,
    check_jaxpr_agrees,
    check_unique_names,
    check_values,
    uniform,
)

import fgrad
import fgrad.numpy as fnp
from fgrad.lax import linalg as lax_linalg
from fgrad.test_util import check_grads

LinAlgError = np.linalg.LinAlgError
NORMAL = uniform(-1.0, 1.0)
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}

# ============================================================================ samplers


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def _clear_max(v, margin=0.1):
    """Each column's largest |entry| beats the runner-up by `margin` (sign convention
    continuous there)."""
    mags = np.sort(np.abs(v), axis=-2)
    return v.shape[-2] < 2 or bool(np.all(mags[..., -1, :] - mags[..., -2, :] > margin))


def _stacked(make):
    """A sampler of (..., n, n) or (..., m, n) from a maker of one matrix."""

    def sample(rng, shape, dtype):
        batch, core = shape[:-2], shape[-2:]
        mats = [make(rng, *core) for _ in range(int(np.prod(batch, dtype=np.int64)))]
        return np.array(mats).reshape(shape).astype(dtype)

    return sample


def _general(rng, n, _n=None):
    """Q1 diag(1..2) Q2^T: singular values in [1, 2], far from singular."""
    return _orthogonal(rng, n) @ np.diag(rng.uniform(1, 2, n)) @ _orthogonal(rng, n).T


def _spd(rng, n, _n=None):
    """Q diag(1..n) Q^T + n I: symmetric positive definite, well conditioned."""
    q = _orthogonal(rng, n)
    return q @ np.diag(np.arange(1.0, n + 1)) @ q.T + n * np.eye(n)


def _distinct_eigs(rng, n, _n=None):
    """Symmetric with eigenvalues 1, 2, ..., n (gaps of 1) and clear eigenvector maxima."""
    while True:
        q = _orthogonal(rng, n)
        if _clear_max(q):
            return q @ np.diag(np.arange(1.0, n + 1) - n / 2) @ q.T


def _distinct_svals(rng, m, n):
    """U diag(s) V^T with s = k+1, k, ..., 2 and clear maxima in U's columns."""
    k = min(m, n)
    while True:
        u, v = _orthogonal(rng, m), _orthogonal(rng, n)
        if _clear_max(u[:, :k]) and _clear_max(v[:, :k]):
            s = np.zeros((m, n))
            s[range(k), range(k)] = np.arange(k + 1.0, 1.0, -1)
            return u @ s @ v.T


GENERAL = _stacked(_general)
SPD = _stacked(_spd)
EIGS = _stacked(_distinct_eigs)
SVALS = _stacked(_distinct_svals)

# ============================================================================ references


def _signs(v):
    idx = np.argmax(np.abs(v), axis=-2)[..., None, :]
    return np.where(np.take_along_axis(v, idx, axis=-2) < 0, -1, 1).astype(v.dtype)


def np_eigh(a, UPLO="L"):  # noqa: N803
    w, v = np.linalg.eigh(a, UPLO)
    return w, v * _signs(v)


def np_svd(a, full_matrices=True):
    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    k = s.shape[-1]
    signs = _signs(u)
    rows = np.swapaxes(signs[..., :k], -1, -2)
    if vh.shape[-2] > k:
        rest = np.swapaxes(_signs(np.swapaxes(vh[..., k:, :], -1, -2)), -1, -2)
        rows = np.concatenate([rows, rest], axis=-2)
    return u * signs, s, vh * rows


# ============================================================================ op specs

SQUARE = [((3, 3),), ((2, 3, 3),), ((1, 1),), ((4, 4),)]


def _spec(name, fn, ref, sampler, shapes=SQUARE, nargs=1, **kw):
    return OpSpec(name, fn, nargs, sampler, ref=ref, shapes=shapes, tol=TOL, **kw)


SPECS = [
    _spec("inv", fnp.linalg.inv, np.linalg.inv, GENERAL),
    _spec("det", fnp.linalg.det, np.linalg.det, GENERAL),
    _spec("slogdet", fnp.linalg.slogdet, np.linalg.slogdet, GENERAL),
    _spec("solve_matrix", fnp.linalg.solve, np.linalg.solve, (GENERAL, NORMAL), nargs=2,
          shapes=[((3, 3), (3, 2)), ((2, 3, 3), (2, 3, 1)), ((3, 3), (2, 3, 4)),
                  ((2, 1, 3, 3), (4, 3, 2)), ((1, 1), (1, 1))]),
    _spec("solve_vector", fnp.linalg.solve, np.linalg.solve, (GENERAL, NORMAL), nargs=2,
          shapes=[((3, 3), (3,)), ((2, 3, 3), (3,)), ((1, 1), (1,))]),
    _spec("cholesky", fnp.linalg.cholesky, np.linalg.cholesky, SPD),
    _spec("cholesky_upper", lambda a: fnp.linalg.cholesky(a, upper=True),
          lambda a: np.linalg.cholesky(a, upper=True), SPD, shapes=SQUARE[:2]),
    # NumPy's own semantics: only the lower triangle is read (and differentiated).
    _spec("cholesky_lower_triangle",
          lambda a: fnp.linalg.cholesky(a, symmetrize_input=False),
          np.linalg.cholesky, SPD, shapes=SQUARE[:2]),
    _spec("eigh", fnp.linalg.eigh, np_eigh, EIGS),
    _spec("eigh_upper_triangle", lambda a: fnp.linalg.eigh(a, "U", symmetrize_input=False),
          lambda a: np_eigh(a, "U"), EIGS, shapes=SQUARE[:2]),
    # Sign-invariant functions of the eigenvectors.
    _spec("eigh_v_squared", lambda a: fnp.linalg.eigh(a)[1] ** 2,
          lambda a: np.linalg.eigh(a)[1] ** 2, EIGS, shapes=SQUARE[:2]),
    _spec("eigh_reconstruct", lambda a: (lambda w, v: (v * w[..., None, :]) @ v.mT)(
        *fnp.linalg.eigh(a)), lambda a: (a + a.mT) / 2, EIGS, shapes=SQUARE[:2]),
    _spec("eigvalsh", fnp.linalg.eigvalsh, np.linalg.eigvalsh, EIGS, shapes=SQUARE[:2]),
    _spec("svd", lambda a: fnp.linalg.svd(a, full_matrices=False),
          lambda a: np_svd(a, False), SVALS,
          shapes=[((4, 3),), ((3, 4),), ((2, 3, 3),), ((2, 2, 4),), ((1, 1),)]),
    _spec("svd_full_square", fnp.linalg.svd, np_svd, SVALS, shapes=[((3, 3),), ((2, 3, 3),)]),
    _spec("svd_full_nonsquare", fnp.linalg.svd, np_svd, SVALS,
          shapes=[((4, 2),), ((2, 3, 4),)], grad=False),
    _spec("svd_values", lambda a: fnp.linalg.svd(a, compute_uv=False),
          lambda a: np.linalg.svd(a, compute_uv=False), SVALS,
          shapes=[((4, 3),), ((3, 4),), ((2, 3, 3),)]),
    _spec("svdvals", fnp.linalg.svdvals, np.linalg.svdvals, SVALS, shapes=[((3, 4),)]),
    _spec("norm_ord2", lambda a: fnp.linalg.norm(a, 2), lambda a: np.linalg.norm(a, 2),
          SVALS, shapes=[((4, 3),), ((3, 3),)]),
    _spec("norm_ord-2", lambda a: fnp.linalg.norm(a, -2), lambda a: np.linalg.norm(a, -2),
          SVALS, shapes=[((3, 4),), ((3, 3),)]),
    _spec("norm_nuc", lambda a: fnp.linalg.norm(a, "nuc"), lambda a: np.linalg.norm(a, "nuc"),
          SVALS, shapes=[((4, 3),), ((1, 1),)]),
    _spec("norm_ord2_axes_keepdims", lambda a: fnp.linalg.norm(a, 2, (2, 0), True),
          lambda a: np.linalg.norm(a, 2, (2, 0), True), SVALS, shapes=[((3, 2, 3),)]),
    _spec("norm_nuc_axes", lambda a: fnp.linalg.norm(a, "nuc", (-1, -2)),
          lambda a: np.linalg.norm(a, "nuc", (-1, -2)), SVALS, shapes=[((2, 3, 4),)]),
    _spec("matrix_norm", fnp.linalg.matrix_norm, np.linalg.matrix_norm, NORMAL,
          shapes=[((2, 3, 4),)]),
    _spec("matrix_norm_ord2", lambda a: fnp.linalg.matrix_norm(a, ord=2),
          lambda a: np.linalg.matrix_norm(a, ord=2), SVALS, shapes=[((2, 3, 4),)]),
    _spec("vector_norm", fnp.linalg.vector_norm, np.linalg.vector_norm, NORMAL,
          shapes=[((2, 3, 4),), ((3,),)]),
    _spec("vector_norm_axes", lambda a: fnp.linalg.vector_norm(a, axis=(0, 2), keepdims=True,
                                                              ord=3),
          lambda a: np.linalg.vector_norm(a, axis=(0, 2), keepdims=True, ord=3),
          uniform(0.5, 1.5), shapes=[((2, 3, 4),)]),
    _spec("matrix_transpose", fnp.linalg.matrix_transpose, np.linalg.matrix_transpose,
          NORMAL, shapes=[((2, 3, 4),)]),
    _spec("logdet_hessian_path", lambda a: fnp.linalg.slogdet(a @ a.mT + 1.0)[1]
          + fnp.sum(fnp.linalg.inv(a) ** 2), lambda a: np.linalg.slogdet(a @ a.mT + 1.0)[1]
          + np.sum(np.linalg.inv(a) ** 2), GENERAL, shapes=SQUARE[:2]),
]
check_unique_names(SPECS)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(SPECS))
def test_values(spec, shapes, dtype, representative):
    check_values(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(SPECS))
def test_jaxpr(spec, shapes, dtype, representative):
    check_jaxpr(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(SPECS, grad_only=True))
def test_grads(spec, shapes, dtype, representative):
    check_derivatives(spec, shapes, dtype, representative)


# ============================================================================ properties


def _rng(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_factorizations_reconstruct(dtype):
    rng = _rng("reconstruct")
    a = SPD(rng, (2, 4, 4), dtype)
    tol = TOL[dtype] * 10
    chol = fnp.linalg.cholesky(a)
    np.testing.assert_allclose(chol @ chol.mT, a, rtol=tol, atol=tol)
    assert np.all(np.triu(chol, 1) == 0)
    w, v = fnp.linalg.eigh(a)
    np.testing.assert_allclose((v * w[..., None, :]) @ v.mT, a, rtol=tol, atol=tol)
    m = SVALS(rng, (2, 4, 3), dtype)
    u, s, vh = fnp.linalg.svd(m, full_matrices=False)
    np.testing.assert_allclose((u * s[..., None, :]) @ vh, m, rtol=tol, atol=tol)
    for vecs in (v, u):  # the sign convention: each column's largest entry is positive
        idx = np.argmax(np.abs(vecs), axis=-2)
        assert np.all(np.take_along_axis(vecs, idx[..., None, :], axis=-2) > 0)
    for x in (chol, w, v, u, s, vh):
        assert x.dtype == dtype


def test_integer_input_is_float64():
    a = np.array([[2, 1], [1, 3]])
    for fn in (fnp.linalg.inv, fnp.linalg.det, fnp.linalg.cholesky, fnp.linalg.eigvalsh):
        assert np.asarray(fn(a)).dtype == np.float64
    assert fnp.linalg.solve(a, np.array([1, 2])).dtype == np.float64
    x32 = np.eye(2, dtype=np.float32)
    assert fnp.linalg.solve(x32, np.ones(2, np.float32)).dtype == np.float32
    assert fnp.linalg.solve(x32, np.ones(2)).dtype == np.float64  # NumPy's promotion


def test_inv_is_numpys_bit_for_bit():
    a = GENERAL(_rng("inv"), (5, 5), np.float64)
    assert np.array_equal(fnp.linalg.inv(a), np.linalg.inv(a))


def test_second_derivatives_known_forms():
    """Hessian of log det A is -A^-T (x) A^-1; the gradient of det is det * A^-T."""
    a = GENERAL(_rng("hess"), (3, 3), np.float64)
    inv = np.linalg.inv(a)
    grad = fgrad.grad(fnp.linalg.det)(a)
    np.testing.assert_allclose(grad, np.linalg.det(a) * inv.T, rtol=1e-12)
    hess = fgrad.hessian(lambda x: fnp.linalg.slogdet(x)[1])(a)
    want = -np.einsum("jk,li->ijkl", inv, inv)  # d/dA_kl of (A^-T)_ij = -(A^-1)_jk (A^-1)_li
    np.testing.assert_allclose(hess, want, rtol=1e-10, atol=1e-12)


# ============================================================================ vmap


def _loop(fn, *args, in_axes=0):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    n = next(np.shape(a)[ax] for a, ax in zip(args, axes) if ax is not None)
    outs = [fn(*[a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, axes)])
            for i in range(n)]
    return fgrad.tree_util.tree_map(lambda *xs: np.stack(xs), *outs)


VMAP_CASES = [
    ("inv", fnp.linalg.inv, (GENERAL,), ((4, 3, 3),), 0),
    ("det_axis1", fnp.linalg.det, (GENERAL,), ((3, 4, 3),), 1),
    ("slogdet", fnp.linalg.slogdet, (GENERAL,), ((4, 3, 3),), 0),
    ("solve", fnp.linalg.solve, (GENERAL, NORMAL), ((4, 3, 3), (4, 3, 2)), 0),
    ("solve_a_only", fnp.linalg.solve, (GENERAL, NORMAL), ((4, 3, 3), (3, 2)), (0, None)),
    ("solve_b_only", fnp.linalg.solve, (GENERAL, NORMAL), ((3, 3), (3, 4)), (None, 1)),
    ("solve_vector", fnp.linalg.solve, (GENERAL, NORMAL), ((2, 4, 3, 3), (4, 3)), (1, 0)),
    ("cholesky", fnp.linalg.cholesky, (SPD,), ((4, 3, 3),), 0),
    ("eigh", fnp.linalg.eigh, (EIGS,), ((4, 3, 3),), 0),
    ("svd", lambda a: fnp.linalg.svd(a, full_matrices=False), (SVALS,), ((4, 3, 2),), 0),
    ("norm2", lambda a: fnp.linalg.norm(a, 2), (SVALS,), ((4, 3, 2),), 0),
    ("grad_logdet", fgrad.grad(lambda a: fnp.linalg.slogdet(a)[1]), (GENERAL,), ((4, 3, 3),),
     0),
    ("grad_eigh", fgrad.grad(lambda a: fnp.sum(fnp.linalg.eigh(a)[1][..., 0] ** 3)), (EIGS,),
     ((4, 3, 3),), 0),
    ("jvp_cholesky", lambda a: fgrad.jvp(fnp.linalg.cholesky, (a,), (a,))[1], (SPD,),
     ((4, 3, 3),), 0),
]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize("name, fn, samplers, shapes, in_axes", VMAP_CASES,
                         ids=[c[0] for c in VMAP_CASES])
def test_vmap_matches_loop(name, fn, samplers, shapes, in_axes, dtype):
    rng = _rng(name)
    args = []
    for sampler, shape in zip(samplers, shapes):
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(shapes)
        ax = axes[len(args)]
        if ax is None or sampler is NORMAL:
            args.append(sampler(rng, shape, dtype))
        else:  # matrices sampled with the batch axis first, then moved into place
            moved = (shape[ax], *shape[:ax], *shape[ax + 1:])
            args.append(np.moveaxis(sampler(rng, moved, dtype), 0, ax))
    want = _loop(fn, *args, in_axes=in_axes)
    got = fgrad.vmap(fn, in_axes=in_axes)(*args)
    assert_same(got, want, TOL[dtype] * 10, what=f"vmap {name}")
    check_jaxpr_agrees(fgrad.vmap(fn, in_axes=in_axes), args, TOL[dtype] * 10,
                       what=f"vmap {name} staged")


def _linalg_primitives():
    return [v for v in vars(lax_linalg).values() if isinstance(v, fgrad.core.Primitive)]


def test_every_batching_rule_is_exercised(monkeypatch):
    """The vmap cases (and triangular_solve's) run every batching rule of lax.linalg, and
    the two-operand rules with each operand batched alone and with both batched."""
    seen = {}
    for prim in _linalg_primitives():
        def recording(vals, dims, *, _rule=prim.batch, _name=prim.name, **params):
            seen.setdefault(_name, set()).add(tuple(d is not None for d in dims))
            return _rule(vals, dims, **params)

        monkeypatch.setattr(prim, "batch", recording)
    for case in VMAP_CASES:
        test_vmap_matches_loop(*case, np.dtype(np.float64))
    test_triangular_solve(TRI_PARAMS[0])
    assert set(seen) == {p.name for p in _linalg_primitives()}
    for name in ("solve", "triangular_solve"):
        assert seen[name] >= {(True, True), (True, False), (False, True)}, (name, seen[name])


# ============================================================================ lax.linalg


TRI_PARAMS = [dict(left_side=ls, lower=lo, transpose_a=tr, unit_diagonal=ud)
              for ls in (True, False) for lo in (True, False) for tr in (False, True)
              for ud in (False, True)]


def _tri_ref(a, b, *, left_side, lower, transpose_a, unit_diagonal):
    t = np.tril(a) if lower else np.triu(a)
    if unit_diagonal:
        t = t - np.diag(np.diag(t)) + np.eye(a.shape[-1])
    op = t.T if transpose_a else t
    return np.linalg.solve(op, b) if left_side else np.linalg.solve(op.T, b.T).T


@pytest.mark.parametrize("params", TRI_PARAMS, ids=lambda p: "-".join(
    k for k, v in p.items() if v) or "plain")
def test_triangular_solve(params):
    rng = _rng(str(params))
    for dtype in FLOATS:
        # Random off-diagonal entries (in both triangles: the other one must be ignored).
        a = (rng.uniform(-0.5, 0.5, (3, 3)) + 2 * np.eye(3)).astype(dtype)
        b = rng.normal(size=(3, 2) if params["left_side"] else (2, 3)).astype(dtype)
        got = lax_linalg.triangular_solve(a, b, **params)
        assert_same(got, _tri_ref(a, b, **params).astype(dtype), TOL[dtype])
        fn = lambda a, b: lax_linalg.triangular_solve(a, b, **params)  # noqa: E731
        check_grads(fn, (a, b), order=2)
        check_jaxpr_agrees(fn, (a, b), TOL[dtype])
        batched = np.stack([a, a.T + np.eye(3, dtype=dtype)])
        bb = np.stack([b, -b])
        assert_same(fgrad.vmap(fn)(batched, bb),
                    np.stack([fn(batched[0], b), fn(batched[1], -b)]), TOL[dtype])
        assert_same(fgrad.vmap(fn, in_axes=(None, 0))(a, bb),
                    np.stack([fn(a, b), fn(a, -b)]), TOL[dtype])
        assert_same(fgrad.vmap(fn, in_axes=(0, None))(batched, b),
                    np.stack([fn(batched[0], b), fn(batched[1], b)]), TOL[dtype])


def test_lax_level_primitives():
    rng = _rng("lax")
    a = SPD(rng, (2, 3, 3), np.float64)
    b = rng.normal(size=(2, 3, 4))
    assert_same(lax_linalg.solve(a, b), np.linalg.solve(a, b), 1e-12)
    assert_same(lax_linalg.cholesky(a), np.linalg.cholesky(a), 1e-12)
    assert_same(lax_linalg.det(a), np.linalg.det(a), 1e-12)
    check_grads(lax_linalg.solve, (a, b), order=2)
    # The solve is linear in b: its transpose is a solve with a.T.
    _, f_vjp = fgrad.vjp(lambda b: lax_linalg.solve(a, b), b)
    (ct,) = f_vjp(b)
    assert_same(ct, np.linalg.solve(np.swapaxes(a, -1, -2), b), 1e-12)
    closed = fgrad.make_jaxpr(lambda a, b: lax_linalg.eigh(a) + [lax_linalg.solve(a, b)])(a, b)
    assert [e.primitive.name for e in closed.jaxpr.eqns] == ["eigh", "solve"]
    assert "eigh" in str(closed)


def test_reverse_mode_jaxpr_is_solves():
    """grad of a solve stages solves (and dot_generals), no inverse is formed."""
    a = GENERAL(_rng("rev"), (3, 3), np.float64)
    b = np.ones((3,))
    closed = fgrad.make_jaxpr(fgrad.grad(lambda a, b: fnp.sum(fnp.linalg.solve(a, b)),
                                         argnums=(0, 1)))(a, b)
    names = [e.primitive.name for e in closed.jaxpr.eqns]
    assert names.count("solve") == 2, names
    fgrad.ir.check_jaxpr(closed.jaxpr)


# ============================================================================ errors


def test_singular_matrices_raise():
    sing = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(LinAlgError, match=r"linalg\.inv: Singular matrix"):
        fnp.linalg.inv(sing)
    with pytest.raises(LinAlgError, match=r"linalg\.solve: Singular matrix"):
        fnp.linalg.solve(sing, np.ones(2))
    with pytest.raises(LinAlgError, match=r"Singular"):  # one singular member of a stack
        fnp.linalg.inv(np.stack([np.eye(2), sing]).astype(np.float32))
    with pytest.raises(LinAlgError):
        fgrad.grad(lambda a: fnp.sum(fnp.linalg.inv(a)))(sing)
    with pytest.raises(LinAlgError):
        fgrad.jvp(lambda b: fnp.linalg.solve(sing, b), (np.ones(2),), (np.ones(2),))
    with pytest.raises(LinAlgError, match=r"linalg\.cholesky: Matrix is not positive"):
        fnp.linalg.cholesky(-np.eye(2))
    # det and slogdet of a singular matrix are fine (0, and sign 0 with log -inf).
    assert fnp.linalg.det(sing) == 0
    sign, logabsdet = fnp.linalg.slogdet(sing)
    assert sign == 0 and logabsdet == -np.inf
    # Staging never sees values: a singular matrix only fails when run.
    closed = fgrad.make_jaxpr(fnp.linalg.inv)(sing)
    with pytest.raises(LinAlgError):
        fgrad.core.eval_jaxpr(closed.jaxpr, closed.consts, sing)


@pytest.mark.parametrize("fname", ["inv", "det", "slogdet", "cholesky", "eigh", "eigvalsh"])
def test_non_square_raises(fname):
    fn = getattr(fnp.linalg, fname)
    with pytest.raises(LinAlgError, match=rf"linalg\.{fname}: argument `a` .*\(2, 3, 4\)"):
        fn(np.ones((2, 3, 4)))
    with pytest.raises(LinAlgError, match=rf"linalg\.{fname}: .*\(3,\)"):
        fn(np.ones(3))
    with pytest.raises(LinAlgError, match=rf"linalg\.{fname}"):  # under a transform too
        fgrad.make_jaxpr(fn)(np.ones((3, 4)))


def test_solve_shape_errors():
    a = np.eye(3)
    with pytest.raises(LinAlgError, match=r"linalg\.solve: argument `a` .*\(3, 4\)"):
        fnp.linalg.solve(np.ones((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match=r"linalg\.solve: argument `b` of shape \(4,\) does "
                                         r"not fit `a` of shape \(3, 3\)"):
        fnp.linalg.solve(a, np.ones(4))
    with pytest.raises(ValueError, match=r"linalg\.solve: argument `b` of shape \(2, 3\)"):
        fnp.linalg.solve(np.stack([a, a]), np.ones((2, 3)))  # NumPy 2: b is a matrix here
    with pytest.raises(ValueError, match=r"could not be broadcast .*\(2,\) \(3,\)"):
        fnp.linalg.solve(np.stack([a, a]), np.ones((3, 3, 1)))


def test_dtype_and_rank_errors():
    with pytest.raises(TypeError, match=r"linalg\.inv: array type float16 is unsupported"):
        fnp.linalg.inv(np.eye(2, dtype=np.float16))
    with pytest.raises(LinAlgError, match=r"linalg\.svd: .*at least 2-dimensional"):
        fnp.linalg.svd(np.ones(3))
    with pytest.raises(ValueError, match=r"UPLO"):
        fnp.linalg.eigh(np.eye(2), "X")
    with pytest.raises(ValueError, match=r"invalid norm order 'bad'"):
        fnp.linalg.norm(np.eye(2), "bad")
    with pytest.raises(NotImplementedError, match=r"full_matrices=True"):
        fgrad.jvp(fnp.linalg.svd, (np.ones((3, 2)),), (np.ones((3, 2)),))


def test_lax_abstract_eval_errors():
    f32, f64 = np.ones((3, 3), np.float32), np.ones((3, 3))
    with pytest.raises(TypeError, match=r"lax\.linalg\.solve: operands must have one dtype"):
        fgrad.make_jaxpr(lax_linalg.solve)(f32, f64)
    with pytest.raises(TypeError, match=r"lax\.linalg\.solve: the right-hand side .*"
                                        r"f64\[3,3\].*f64\[2,3\]"):
        fgrad.make_jaxpr(lax_linalg.solve)(f64, np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"lax\.linalg\.cholesky: .*square.*f64\[2,3\]"):
        fgrad.make_jaxpr(lax_linalg.cholesky)(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"lax\.linalg\.det: needs float32 or float64"):
        fgrad.make_jaxpr(lax_linalg.det)(np.eye(2, dtype=np.int64))


# ============================================================================ interop


def test_numpy_functions_dispatch_on_tracers():
    a = GENERAL(_rng("interop"), (3, 3), np.float64)
    s = SPD(_rng("interop"), (3, 3), np.float64)
    for fn, x in [(lambda x: np.linalg.inv(x), a), (lambda x: np.linalg.det(x), a),
                  (lambda x: np.linalg.solve(x, x[0]), a),
                  (lambda x: np.linalg.slogdet(x)[1], a), (lambda x: np.linalg.cholesky(x), s),
                  (lambda x: np.linalg.eigvalsh(x), s), (lambda x: np.linalg.norm(x, 2), a),
                  (lambda x: np.linalg.svd(x, compute_uv=False), a),
                  (lambda x: np.linalg.matrix_norm(x), a)]:
        assert_same(fgrad.jvp(fn, (x,), (x,))[0], fn(x), 1e-12)
        check_jaxpr_agrees(fn, (x,), 1e-12)
    with pytest.raises(fgrad.errors.TracerArrayConversionError,
                       match=r"np\.linalg\.qr was called on a traced value.*no linalg\.qr"):
        fgrad.make_jaxpr(np.linalg.qr)(a)
