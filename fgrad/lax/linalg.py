"""Linear-algebra primitives (as `jax.lax.linalg`), each in one block with all its rules.

Every primitive acts on the last two axes of its operands and maps over any leading
(batch) axes, as NumPy's `np.linalg` functions do; operands with a right-hand side
have the same leading axes (`fgrad.numpy.linalg` broadcasts them). Only float32 and
float64 are accepted, and float32 stays float32.

| primitive            | computes                                    | derivative              |
|----------------------|---------------------------------------------|-------------------------|
| `solve_p`            | X with A X = B (LU, `np.linalg.solve`)      | dX = A^-1 (dB - dA X)   |
| `triangular_solve_p` | op(A) X = B or X op(A) = B, A triangular    | likewise; linear in B   |
| `cholesky_p`         | lower L, L L^T = A (lower triangle read)    | L phi(L^-1 dA L^-T)     |
| `det_p`              | det A                                       | det A tr(A^-1 dA)       |
| `slogdet_p`          | (sign, log abs det A), two results          | (0, tr(A^-1 dA))        |
| `eigh_p`             | (w, V) of a symmetric A, two results        | distinct eigenvalues    |
| `svd_p`              | (U, s, Vh), or (s,) without compute_uv      | distinct singular values|

JVP rules are written with fgrad operations (`dot_general`, `mul`, the solves
above), so derivatives compose to any order and reverse mode comes from
transposing them: `solve_p` and `triangular_solve_p` are linear in their
right-hand side and have transpose rules there. Batching moves the batch axis to
the front; the NumPy impls already map over leading axes.

Concrete errors are NumPy's: a singular matrix in `solve_p` (or a triangular solve
with a zero on the diagonal) raises `np.linalg.LinAlgError`, and so does
`cholesky_p` of a matrix that is not positive definite.

Signs of eigenvectors and singular vectors: LAPACK leaves them arbitrary. Here each
eigenvector (each column of V), and each left singular vector (each column of U,
with the matching row of Vh flipped alike), is scaled by +1 or -1 so that its
entry of largest magnitude (the first such, on ties) is positive. Results are then
reproducible whether or not they are computed in a batch, and continuous in the
input wherever that entry is unique, which the derivatives assume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import Primitive
from ..interpreters.jvp import Zero
from ..interpreters.transpose import is_undefined
from ..ir import ShapedArray
from . import lax
from .lax import Array, _aval, batch_at_front

__all__ = ["cholesky", "det", "eigh", "slogdet", "solve", "svd", "triangular_solve"]

# ============================================================================ helpers


def _check_float(name: str, *avals: ShapedArray) -> None:
    for a in avals:
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"lax.linalg.{name}: needs float32 or float64 operands, got "
                            f"{a.str_short()}")
    if any(a.dtype != avals[0].dtype for a in avals):
        listed = ", ".join(a.str_short() for a in avals)
        raise TypeError(f"lax.linalg.{name}: operands must have one dtype, got {listed}")


def _check_square(name: str, what: str, a: ShapedArray) -> None:
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise TypeError(f"lax.linalg.{name}: {what} must be a square matrix or a stack of "
                        f"them, shape (..., n, n); got {a.str_short()}")


def _check_rhs(name: str, a: ShapedArray, b: ShapedArray, left_side: bool = True) -> None:
    """b is (..., n, k) for a left solve (or (..., k, n) for a right one) with a's batch axes."""
    n = a.shape[-1]
    fits = b.ndim == a.ndim and b.shape[:-2] == a.shape[:-2] and (
        b.shape[-2] == n if left_side else b.shape[-1] == n)
    if not fits:
        want = "(..., n, k)" if left_side else "(..., k, n)"
        raise TypeError(f"lax.linalg.{name}: the right-hand side must have shape {want} with "
                        f"the matrix's leading axes, got a: {a.str_short()}, b: {b.str_short()}")


def _ndim(x: Any) -> int:
    return _aval(x).ndim


def _shape(x: Any) -> tuple[int, ...]:
    return _aval(x).shape


def _mT(x: Array) -> Array:
    """The transpose of the last two axes."""
    perm = list(range(_ndim(x)))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return lax.transpose(x, perm)


def _matmul(a: Array, b: Array) -> Array:
    """(..., m, k) @ (..., k, n) with the same leading axes, as one dot_general."""
    nd = _ndim(a)
    batch = tuple(range(nd - 2))
    return lax.dot_general(a, b, (((nd - 1,), (nd - 2,)), (batch, batch)))


def _matrix_const(m: np.ndarray, like: Any) -> Array:
    """The constant (r, c) matrix `m` broadcast over the leading axes of `like`."""
    aval = _aval(like)
    nd = aval.ndim
    shape = (*aval.shape[:-2], *m.shape)
    return lax.broadcast_in_dim(np.asarray(m, aval.dtype), shape, (nd - 2, nd - 1))


def _masked(x: Array, mask: np.ndarray) -> Array:
    """x times a constant (n, n) matrix, elementwise (linear in x)."""
    return lax.mul(x, _matrix_const(mask, x))


def _tri(n: int, lower: bool, strict: bool = False) -> np.ndarray:
    """The 0/1 matrix of the lower (or upper) triangle, with or without the diagonal."""
    k = -1 if strict else 0
    return np.tri(n, n, k) if lower else np.tri(n, n, k).T


def _symmetric_from(x: Array, lower: bool) -> Array:
    """The symmetric matrix whose lower (or upper) triangle is x's: what the LAPACK routines
    behind cholesky and eigh actually read."""
    n = _shape(x)[-1]
    return lax.add(_masked(x, _tri(n, lower)), _mT(_masked(x, _tri(n, lower, strict=True))))


def _diagonal(x: Array) -> Array:
    """(..., n, n) -> (..., n)."""
    n = _shape(x)[-1]
    return lax.reduce_sum(_masked(x, np.eye(n)), (_ndim(x) - 1,))


def _trace(x: Array) -> Array:
    return lax.reduce_sum(_diagonal(x), (_ndim(x) - 2,))


def _as_row(v: Array, n_rows: int) -> Array:
    """(..., n) -> (..., n_rows, n): every row is v."""
    shape = _shape(v)
    nb = len(shape) - 1
    return lax.broadcast_in_dim(v, (*shape[:-1], n_rows, shape[-1]), (*range(nb), nb + 1))


def _as_column(v: Array, n_cols: int) -> Array:
    """(..., n) -> (..., n, n_cols): every column is v."""
    shape = _shape(v)
    nb = len(shape) - 1
    return lax.broadcast_in_dim(v, (*shape[:-1], shape[-1], n_cols), (*range(nb), nb))


def _batch_all_front(vals, dims, axis_size):
    return [batch_at_front(v, d, axis_size) for v, d in zip(vals, dims)]


def _flip_signs(v: np.ndarray) -> np.ndarray:
    """+1/-1 per column of v (shape (..., 1, k)) making each column's largest entry positive."""
    idx = np.argmax(np.abs(v), axis=-2)[..., None, :]
    pick = np.take_along_axis(v, idx, axis=-2)
    return np.where(pick < 0, -1, 1).astype(v.dtype)


# ============================================================================ solve


def solve(a: Array, b: Array) -> Array:
    """X with a @ X = b, for a (..., n, n) and b (..., n, k) with the same leading axes."""
    return solve_p.bind(a, b)


def _solve_aval(a, b):
    _check_float("solve", a, b)
    _check_square("solve", "a", a)
    _check_rhs("solve", a, b)
    return ShapedArray(b.shape, b.dtype)


def _solve_jvp(primals, tangents):
    a, b = primals
    ta, tb = tangents
    x = solve(a, b)
    rhs = None if isinstance(tb, Zero) else tb
    if not isinstance(ta, Zero):
        term = lax.neg(_matmul(ta, x))
        rhs = term if rhs is None else lax.add(rhs, term)
    if rhs is None:
        return x, Zero.like(x)
    return x, solve(a, rhs)


def _solve_transpose(ct, a, b):
    if is_undefined(a):
        raise TypeError("lax.linalg.solve is linear in b only; a JVP rule is wrong")
    return [None, solve(_mT(a), ct)]


solve_p = Primitive("solve")
solve_p.impl = lambda a, b: np.linalg.solve(a, b)
solve_p.abstract_eval_rule = _solve_aval
solve_p.jvp = _solve_jvp
solve_p.transpose = _solve_transpose
solve_p.batch = lambda vals, dims, *, axis_size: (solve(*_batch_all_front(vals, dims,
                                                                          axis_size)), 0)


# ============================================================================ triangular_solve


def triangular_solve(a: Array, b: Array, *, left_side: bool = True, lower: bool = True,
                     transpose_a: bool = False, unit_diagonal: bool = False) -> Array:
    """X with op(a) X = b (left_side) or X op(a) = b, where op(a) is a or a.T and only a's
    lower (or upper) triangle is read; `unit_diagonal` takes its diagonal as ones."""
    return triangular_solve_p.bind(a, b, left_side=bool(left_side), lower=bool(lower),
                                   transpose_a=bool(transpose_a),
                                   unit_diagonal=bool(unit_diagonal))


def _triangle(a: np.ndarray, lower: bool, unit_diagonal: bool) -> np.ndarray:
    n = a.shape[-1]
    tri = np.tril(a) if lower else np.triu(a)
    if unit_diagonal:
        tri = tri * (1 - np.eye(n, dtype=a.dtype)) + np.eye(n, dtype=a.dtype)
    return tri


def _triangular_solve_impl(a, b, *, left_side, lower, transpose_a, unit_diagonal):
    # NumPy has no triangular solver (SciPy is not a dependency): LAPACK's LU solve of
    # the masked triangle gives the same solution.
    a, b = np.asarray(a), np.asarray(b)
    tri = _triangle(a, lower, unit_diagonal)
    op = np.swapaxes(tri, -1, -2) if transpose_a else tri
    if left_side:
        return np.linalg.solve(op, b)
    return np.swapaxes(np.linalg.solve(np.swapaxes(op, -1, -2), np.swapaxes(b, -1, -2)), -1, -2)


def _triangular_solve_aval(a, b, *, left_side, lower, transpose_a, unit_diagonal):
    _check_float("triangular_solve", a, b)
    _check_square("triangular_solve", "a", a)
    _check_rhs("triangular_solve", a, b, left_side)
    return ShapedArray(b.shape, b.dtype)


def _triangular_solve_jvp(primals, tangents, **params):
    a, b = primals
    ta, tb = tangents
    x = triangular_solve(a, b, **params)
    rhs = None if isinstance(tb, Zero) else tb
    if not isinstance(ta, Zero):
        n = _shape(a)[-1]
        mask = _tri(n, params["lower"], strict=params["unit_diagonal"])
        dop = _masked(ta, mask)
        dop = _mT(dop) if params["transpose_a"] else dop
        # op(A) X = B: op(dA) X + op(A) dX = dB;  X op(A) = B: dX op(A) + X op(dA) = dB.
        term = lax.neg(_matmul(dop, x) if params["left_side"] else _matmul(x, dop))
        rhs = term if rhs is None else lax.add(rhs, term)
    if rhs is None:
        return x, Zero.like(x)
    return x, triangular_solve(a, rhs, **params)


def _triangular_solve_transpose(ct, a, b, *, left_side, lower, transpose_a, unit_diagonal):
    if is_undefined(a):
        raise TypeError("lax.linalg.triangular_solve is linear in b only; a JVP rule is wrong")
    # X = op(A)^-1 B has cotangent op(A)^-T ct; X = B op(A)^-1 has ct op(A)^-T.
    return [None, triangular_solve(a, ct, left_side=left_side, lower=lower,
                                   transpose_a=not transpose_a, unit_diagonal=unit_diagonal)]


triangular_solve_p = Primitive("triangular_solve")
triangular_solve_p.impl = _triangular_solve_impl
triangular_solve_p.abstract_eval_rule = _triangular_solve_aval
triangular_solve_p.jvp = _triangular_solve_jvp
triangular_solve_p.transpose = _triangular_solve_transpose
triangular_solve_p.batch = lambda vals, dims, *, axis_size, **params: (
    triangular_solve(*_batch_all_front(vals, dims, axis_size), **params), 0)


# ============================================================================ cholesky


def cholesky(a: Array) -> Array:
    """The lower-triangular L with L @ L.T = a, reading a's lower triangle only (as NumPy)."""
    return cholesky_p.bind(a)


def _square_aval(name: str):
    def rule(a):
        _check_float(name, a)
        _check_square(name, "the operand", a)
        return ShapedArray(a.shape, a.dtype)

    return rule


def _cholesky_jvp(primals, tangents):
    (a,), (ta,) = primals, tangents
    chol = cholesky(a)
    if isinstance(ta, Zero):
        return chol, Zero.like(chol)
    n = _shape(a)[-1]
    da = _symmetric_from(ta, lower=True)  # the impl reads the lower triangle only
    # dL = L phi(L^-1 dA L^-T), phi = the lower triangle with the diagonal halved.
    left = triangular_solve(chol, da, left_side=True, lower=True)
    inner = triangular_solve(chol, left, left_side=False, lower=True, transpose_a=True)
    phi = _masked(inner, np.tri(n, n, -1) + 0.5 * np.eye(n))
    return chol, _matmul(chol, phi)


cholesky_p = Primitive("cholesky")
cholesky_p.impl = lambda a: np.linalg.cholesky(a)
cholesky_p.abstract_eval_rule = _square_aval("cholesky")
cholesky_p.jvp = _cholesky_jvp
cholesky_p.batch = lambda vals, dims, *, axis_size: (
    cholesky(batch_at_front(vals[0], dims[0], axis_size)), 0)


# ============================================================================ det, slogdet


def det(a: Array) -> Array:
    return det_p.bind(a)


def _batch_only_aval(name: str):
    def rule(a):
        _check_float(name, a)
        _check_square(name, "the operand", a)
        return ShapedArray(a.shape[:-2], a.dtype)

    return rule


def _logdet_tangent(a: Array, ta: Array) -> Array:
    """tr(A^-1 dA), the derivative of log |det A|."""
    return _trace(solve(a, ta))


def _det_jvp(primals, tangents):
    (a,), (ta,) = primals, tangents
    ans = det(a)
    if isinstance(ta, Zero):
        return ans, Zero.like(ans)
    return ans, lax.mul(ans, _logdet_tangent(a, ta))


det_p = Primitive("det")
det_p.impl = lambda a: np.asarray(np.linalg.det(a))
det_p.abstract_eval_rule = _batch_only_aval("det")
det_p.jvp = _det_jvp
det_p.batch = lambda vals, dims, *, axis_size: (det(batch_at_front(vals[0], dims[0],
                                                                   axis_size)), 0)


def slogdet(a: Array) -> list[Array]:
    """[sign, log |det a|]."""
    return slogdet_p.bind(a)


def _slogdet_impl(a):
    sign, logabsdet = np.linalg.slogdet(a)
    return [np.asarray(sign), np.asarray(logabsdet)]


def _slogdet_aval(a):
    out = _batch_only_aval("slogdet")(a)
    return [out, out]


def _slogdet_jvp(primals, tangents):
    (a,), (ta,) = primals, tangents
    sign, logabsdet = slogdet(a)
    if isinstance(ta, Zero):
        return [sign, logabsdet], [Zero.like(sign), Zero.like(logabsdet)]
    return [sign, logabsdet], [Zero.like(sign), _logdet_tangent(a, ta)]


slogdet_p = Primitive("slogdet", multiple_results=True)
slogdet_p.impl = _slogdet_impl
slogdet_p.abstract_eval_rule = _slogdet_aval
slogdet_p.jvp = _slogdet_jvp
slogdet_p.batch = lambda vals, dims, *, axis_size: (
    slogdet(batch_at_front(vals[0], dims[0], axis_size)), [0, 0])


# ============================================================================ eigh


def eigh(a: Array, lower: bool = True) -> list[Array]:
    """[w, V] of the symmetric matrix whose lower (or upper) triangle is a's: eigenvalues w
    ascending, eigenvectors the columns of V (signs as in the module notes)."""
    return eigh_p.bind(a, lower=bool(lower))


def _eigh_impl(a, *, lower):
    w, v = np.linalg.eigh(a, UPLO="L" if lower else "U")
    return [w, v * _flip_signs(v)]


def _eigh_aval(a, *, lower):
    _check_float("eigh", a)
    _check_square("eigh", "the operand", a)
    return [ShapedArray(a.shape[:-1], a.dtype), ShapedArray(a.shape, a.dtype)]


def _eigh_jvp(primals, tangents, *, lower):
    (a,), (ta,) = primals, tangents
    w, v = eigh(a, lower)
    if isinstance(ta, Zero):
        return [w, v], [Zero.like(w), Zero.like(v)]
    n = _shape(a)[-1]
    da = _symmetric_from(ta, lower)
    vt_da_v = _matmul(_mT(v), _matmul(da, v))
    dw = _diagonal(vt_da_v)
    # F[i, j] = 1 / (w_j - w_i) off the diagonal, 0 on it (distinct eigenvalues).
    eye = _matrix_const(np.eye(n), a)
    gaps = lax.sub(_as_row(w, n), _as_column(w, n))
    f = lax.sub(lax.div(1, lax.add(gaps, eye)), eye)
    dv = _matmul(v, lax.mul(f, vt_da_v))
    return [w, v], [dw, dv]


eigh_p = Primitive("eigh", multiple_results=True)
eigh_p.impl = _eigh_impl
eigh_p.abstract_eval_rule = _eigh_aval
eigh_p.jvp = _eigh_jvp
eigh_p.batch = lambda vals, dims, *, axis_size, lower: (
    eigh(batch_at_front(vals[0], dims[0], axis_size), lower), [0, 0])


# ============================================================================ svd


def svd(a: Array, full_matrices: bool = False, compute_uv: bool = True) -> list[Array]:
    """[U, s, Vh] with a = U diag(s) Vh and s descending, or [s] without compute_uv."""
    return svd_p.bind(a, full_matrices=bool(full_matrices), compute_uv=bool(compute_uv))


def _svd_impl(a, *, full_matrices, compute_uv):
    if not compute_uv:
        return [np.linalg.svd(a, compute_uv=False)]
    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    k = s.shape[-1]
    signs = _flip_signs(u)  # (..., 1, columns of u)
    u = u * signs
    paired = np.swapaxes(signs[..., :k], -1, -2)  # (..., k, 1): flip row i of vh with u[:, i]
    if vh.shape[-2] > k:  # rows of a full vh beyond k: each by itself
        rest = _flip_signs(np.swapaxes(vh[..., k:, :], -1, -2))
        paired = np.concatenate([paired, np.swapaxes(rest, -1, -2)], axis=-2)
    return [u, s, vh * paired]


def _svd_aval(a, *, full_matrices, compute_uv):
    _check_float("svd", a)
    if a.ndim < 2:
        raise TypeError(f"lax.linalg.svd: needs a matrix or a stack of them, shape (..., m, n); "
                        f"got {a.str_short()}")
    m, n = a.shape[-2:]
    k = min(m, n)
    s = ShapedArray((*a.shape[:-2], k), a.dtype)
    if not compute_uv:
        return [s]
    u_cols, vh_rows = (m, n) if full_matrices else (k, k)
    return [ShapedArray((*a.shape[:-2], m, u_cols), a.dtype), s,
            ShapedArray((*a.shape[:-2], vh_rows, n), a.dtype)]


def _svd_jvp(primals, tangents, *, full_matrices, compute_uv):
    (a,), (da,) = primals, tangents
    m, n = _shape(a)[-2:]
    if compute_uv and full_matrices and m != n:
        raise NotImplementedError(
            f"lax.linalg.svd: the derivative of U and Vh with full_matrices=True is not "
            f"unique for a non-square matrix ({_aval(a).str_short()}); use "
            "full_matrices=False")
    outs = svd(a, full_matrices, compute_uv)
    if isinstance(da, Zero):
        return outs, [Zero.like(o) for o in outs]
    u, s, vh = svd(a, False, True) if not compute_uv else outs
    k = min(m, n)
    v = _mT(vh)
    ds_mat = _matmul(_mT(u), _matmul(da, v))  # U^T dA V, (..., k, k)
    ds = _diagonal(ds_mat)
    if not compute_uv:
        return outs, [ds]
    # As JAX's svd_jvp_rule, for real matrices (distinct, nonzero singular values).
    s_row = _as_row(s, k)  # [i, j] = s_j
    s_col = _mT(s_row)  # [i, j] = s_i
    eye = _matrix_const(np.eye(k), ds_mat)
    f = lax.sub(lax.div(1, lax.add(lax.mul(lax.add(s_row, s_col), lax.sub(s_row, s_col)), eye)),
                eye)  # 1 / (s_j^2 - s_i^2) off the diagonal
    ds_s = lax.mul(s_row, ds_mat)  # dS diag(s)
    s_ds = lax.mul(s_col, ds_mat)  # diag(s) dS
    du = _matmul(u, lax.mul(f, lax.add(ds_s, _mT(ds_s))))
    dv = _matmul(v, lax.mul(f, lax.add(s_ds, _mT(s_ds))))
    if m > k:  # the part of dA V outside the column space of U
        da_v = _matmul(da, v)
        du = lax.add(du, lax.div(lax.sub(da_v, _matmul(u, _matmul(_mT(u), da_v))),
                                 _as_row(s, m)))
    if n > k:
        dat_u = _matmul(_mT(da), u)
        dv = lax.add(dv, lax.div(lax.sub(dat_u, _matmul(v, _matmul(vh, dat_u))),
                                 _as_row(s, n)))
    return outs, [du, ds, _mT(dv)]


svd_p = Primitive("svd", multiple_results=True)
svd_p.impl = _svd_impl
svd_p.abstract_eval_rule = _svd_aval
svd_p.jvp = _svd_jvp
svd_p.batch = lambda vals, dims, *, axis_size, full_matrices, compute_uv: (
    svd(batch_at_front(vals[0], dims[0], axis_size), full_matrices, compute_uv),
    [0] * (3 if compute_uv else 1))
