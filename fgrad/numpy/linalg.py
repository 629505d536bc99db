"""fgrad.numpy.linalg: NumPy's `np.linalg`, differentiable, traceable and batchable.

Every function maps over leading axes as NumPy's does (`(..., n, n)` stacks of
matrices) and is built on the primitives of `fgrad.lax.linalg`. Integer and bool
inputs become float64 and float32 stays float32, as in NumPy (float16 is refused,
as NumPy refuses it).

Beyond NumPy:
* `cholesky` and `eigh` take `symmetrize_input=True` (as JAX): they use
  `(a + a.T) / 2`, so that derivatives are symmetric and do not depend on which
  triangle NumPy reads. With `symmetrize_input=False` they read one triangle, as
  NumPy does, and so do their derivatives.
* `eigh` and `svd` choose the signs of eigenvectors and singular vectors: the entry
  of largest magnitude of each eigenvector (each left singular vector) is positive.
  NumPy's signs are LAPACK's and arbitrary; the values agree with NumPy's up to one
  sign per vector.
* Derivatives of `eigh` exist for distinct eigenvalues, of `svd` for distinct
  nonzero singular values; those of `det`, `slogdet`, `inv` and `solve` need an
  invertible matrix (a singular one raises `LinAlgError` while differentiating).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..lax import lax
from ..lax import linalg as lax_linalg
from ._core import (
    Array,
    aval_of,
    broadcast_shapes,
    broadcast_to_shape,
    convert,
    normalize_axis,
    result_type,
    value,
)
from ._math import absolute, power
from ._products import matmul, outer, tensordot  # noqa: F401  (np.linalg has them too)
from ._reductions import max as amax
from ._reductions import min as amin
from ._reductions import sum as asum

LinAlgError = np.linalg.LinAlgError

__all__ = ["LinAlgError", "cholesky", "det", "eigh", "eigvalsh", "inv", "matmul",
           "matrix_norm", "matrix_transpose", "norm", "outer", "slogdet", "solve", "svd",
           "svdvals", "tensordot", "vector_norm"]


class SlogdetResult(NamedTuple):
    sign: Array
    logabsdet: Array


class EighResult(NamedTuple):
    eigenvalues: Array
    eigenvectors: Array


class SVDResult(NamedTuple):
    U: Array
    S: Array
    Vh: Array


# ============================================================================ helpers


@contextlib.contextmanager
def _named(fname: str) -> Iterator[None]:
    """NumPy's LinAlgError ("Singular matrix"), with the function's name in front."""
    try:
        yield
    except LinAlgError as e:
        if str(e).startswith("linalg."):
            raise
        raise LinAlgError(f"linalg.{fname}: {e}") from None


def _float(fname: str, *args: Any) -> list[Array]:
    """The operands in one float dtype: NumPy's promotion, integers and bools as float64."""
    args = [value(a, f"linalg.{fname}") for a in args]
    dtype, _ = result_type(*args)
    if dtype.kind in "biu":
        dtype = np.dtype(np.float64)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"linalg.{fname}: array type {dtype} is unsupported in linalg "
                        "(use float32 or float64)")
    return [convert(a, dtype) for a in args]


def _square(fname: str, a: Any, arg: str = "a") -> Array:
    (a,) = _float(fname, a)
    shape = aval_of(a).shape
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise LinAlgError(f"linalg.{fname}: argument `{arg}` must be a square matrix or a stack "
                          f"of square matrices, shape (..., n, n); got shape {shape}")
    return a


def _matrix(fname: str, a: Any) -> Array:
    (a,) = _float(fname, a)
    shape = aval_of(a).shape
    if len(shape) < 2:
        raise LinAlgError(f"linalg.{fname}: argument `a` must be at least 2-dimensional, "
                          f"shape (..., m, n); got shape {shape}")
    return a


def _mT(x: Array) -> Array:
    nd = aval_of(x).ndim
    perm = list(range(nd))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return lax.transpose(x, perm)


def _symmetrized(x: Array) -> Array:
    return lax.mul(lax.add(x, _mT(x)), 0.5)


# ============================================================================ solving


def solve(a: Any, b: Any) -> Array:
    """The solution x of a @ x = b. As NumPy 2: b of shape (n,) is a vector, otherwise
    (..., n, k) is a stack of matrices whose leading axes broadcast against a's."""
    a, b = _float("solve", a, b)
    a = _square("solve", a)
    a_shape, b_shape = aval_of(a).shape, aval_of(b).shape
    n = a_shape[-1]
    vector = len(b_shape) == 1
    if (vector and b_shape[0] != n) or (not vector and (len(b_shape) < 2 or b_shape[-2] != n)):
        raise ValueError(
            f"linalg.solve: argument `b` of shape {b_shape} does not fit `a` of shape "
            f"{a_shape}: b must have shape ({n},) or (..., {n}, k)")
    if vector:
        b = lax.broadcast_in_dim(b, (*a_shape[:-2], n, 1), (len(a_shape) - 2,))
    else:
        batch = broadcast_shapes("linalg.solve", a_shape[:-2], b_shape[:-2])
        a = broadcast_to_shape(a, (*batch, n, n))
        b = broadcast_to_shape(b, (*batch, *b_shape[-2:]))
    with _named("solve"):
        x = lax_linalg.solve(a, b)
    return lax.squeeze(x, (len(a_shape) - 1,)) if vector else x


def inv(a: Any) -> Array:
    """The inverse of a square matrix (or of each in a stack); LinAlgError if singular."""
    a = _square("inv", a)
    n = aval_of(a).shape[-1]
    with _named("inv"):
        return lax_linalg.solve(a, broadcast_to_shape(np.eye(n, dtype=aval_of(a).dtype),
                                                      aval_of(a).shape))


def det(a: Any) -> Array:
    """The determinant (of each matrix in a stack)."""
    a = _square("det", a)
    with _named("det"):
        return lax_linalg.det(a)


def slogdet(a: Any) -> SlogdetResult:
    """(sign, log |det a|): the determinant without overflow."""
    a = _square("slogdet", a)
    with _named("slogdet"):
        return SlogdetResult(*lax_linalg.slogdet(a))


# ============================================================================ factorizations


def cholesky(a: Any, *, upper: bool = False, symmetrize_input: bool = True) -> Array:
    """The Cholesky factor L (lower, L @ L.T = a; or upper, U.T @ U = a) of a symmetric
    positive-definite matrix. LinAlgError if it is not positive definite."""
    a = _square("cholesky", a)
    if symmetrize_input:
        a = _symmetrized(a)
    with _named("cholesky"):
        chol = lax_linalg.cholesky(a)
    return _mT(chol) if upper else chol


def eigh(a: Any, UPLO: str = "L", *, symmetrize_input: bool = True) -> EighResult:  # noqa: N803
    """Eigenvalues (ascending) and eigenvectors (the columns) of a symmetric matrix.

    The entry of largest magnitude of each eigenvector is positive (NumPy leaves the
    signs to LAPACK). Differentiable where the eigenvalues are distinct.
    """
    return _eigh("eigh", a, UPLO, symmetrize_input)


def _eigh(fname: str, a: Any, UPLO: str, symmetrize_input: bool) -> EighResult:  # noqa: N803
    if UPLO not in ("L", "U"):
        raise ValueError(f"linalg.{fname}: UPLO must be 'L' or 'U', got {UPLO!r}")
    a = _square(fname, a)
    if symmetrize_input:
        a = _symmetrized(a)
    with _named(fname):
        return EighResult(*lax_linalg.eigh(a, lower=UPLO == "L"))


def eigvalsh(a: Any, UPLO: str = "L", *, symmetrize_input: bool = True) -> Array:  # noqa: N803
    """The eigenvalues of a symmetric matrix, ascending."""
    return _eigh("eigvalsh", a, UPLO, symmetrize_input).eigenvalues


def svd(a: Any, full_matrices: bool = True, compute_uv: bool = True,
        hermitian: bool = False) -> SVDResult | Array:
    """a = U @ diag(S) @ Vh with S descending; S alone without compute_uv.

    The entry of largest magnitude of each column of U is positive (the rows of Vh
    flip with them). `hermitian` is accepted and ignored (the general algorithm gives
    the same factorization). Differentiable for distinct nonzero singular values;
    U and Vh of a non-square matrix only with full_matrices=False.
    """
    del hermitian
    a = _matrix("svd", a)
    with _named("svd"):
        outs = lax_linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)
    return SVDResult(*outs) if compute_uv else outs[0]


def svdvals(x: Any) -> Array:
    """The singular values, descending."""
    return svd(x, compute_uv=False)


def matrix_transpose(x: Any) -> Array:
    x = value(x, "linalg.matrix_transpose")
    if aval_of(x).ndim < 2:
        raise ValueError(f"linalg.matrix_transpose: needs at least 2 dimensions, got shape "
                         f"{aval_of(x).shape}")
    return _mT(x)


# ============================================================================ norms


def norm(x: Any, ord: Any = None, axis: int | Sequence[int] | None = None,  # noqa: A002
         keepdims: bool = False) -> Array:
    """Vector norms (`ord` in None, 2, 1, inf, -inf, 0, p) and matrix norms ('fro', 'nuc',
    1, -1, 2, -2, inf, -inf), as NumPy's `linalg.norm`."""
    x = value(x, "linalg.norm")
    aval = aval_of(x)
    if aval.dtype.kind != "f":
        x = convert(x, np.float64)
    if axis is None:
        axes = tuple(range(aval.ndim))
        if ord is not None and aval.ndim not in (1, 2):
            raise ValueError("linalg.norm: improper number of dimensions to norm")
    else:
        listed = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
        axes = tuple(normalize_axis("linalg.norm", a, aval.ndim) for a in listed)
    if ord is None or (len(axes) != 2 and ord == 2) or ord == "fro":
        if ord == "fro" and len(axes) != 2:
            raise ValueError("linalg.norm: 'fro' is a matrix norm; give a 2-d array or two axes")
        return lax.sqrt(asum(lax.square(x), axis=axes, keepdims=keepdims))
    if len(axes) == 1:
        return _vector_norm(x, ord, axes, keepdims)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims)
    raise ValueError("linalg.norm: improper number of dimensions to norm")


def vector_norm(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False,
                ord: Any = 2) -> Array:  # noqa: A002
    """NumPy 2's vector_norm: a vector norm over `axis` (all axes, flattened, if None)."""
    x = value(x, "linalg.vector_norm")
    ndim = aval_of(x).ndim
    if axis is None:
        out = norm(lax.reshape(x, (aval_of(x).size,)), ord)
        return lax.reshape(out, (1,) * ndim) if keepdims else out
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    if len(axes) == 1:
        return norm(x, ord, axis=axes[0], keepdims=keepdims)
    # Several axes: move them last, flatten them into one.
    axes = [normalize_axis("linalg.vector_norm", a, ndim) for a in axes]
    rest = [i for i in range(ndim) if i not in axes]
    moved = lax.transpose(x, rest + axes)
    shape = aval_of(moved).shape
    flat = lax.reshape(moved, (*shape[:len(rest)], int(np.prod(shape[len(rest):],
                                                                 dtype=np.int64))))
    out = norm(flat, ord, axis=-1)
    return lax.expand_dims(out, sorted(axes)) if keepdims else out


def matrix_norm(x: Any, keepdims: bool = False, ord: Any = "fro") -> Array:  # noqa: A002
    """NumPy 2's matrix_norm: a matrix norm over the last two axes."""
    return norm(x, ord, axis=(-2, -1), keepdims=keepdims)


def _vector_norm(x: Array, ord: Any, axes: tuple[int, ...], keepdims: bool) -> Array:  # noqa: A002
    if ord == np.inf:
        return amax(absolute(x), axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return amin(absolute(x), axis=axes, keepdims=keepdims)
    if ord == 0:
        nonzero = convert(lax.ne(x, lax.full_like(x, 0)), aval_of(x).dtype)
        return asum(nonzero, axis=axes, keepdims=keepdims)
    if ord == 1:
        return asum(absolute(x), axis=axes, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"linalg.norm: invalid norm order {ord!r} for vectors")
    p = float(ord)
    return power(asum(power(absolute(x), p), axis=axes, keepdims=keepdims), 1.0 / p)


def _matrix_norm(x: Array, ord: Any, axes: tuple[int, ...], keepdims: bool) -> Array:  # noqa: A002
    row_axis, col_axis = axes
    if row_axis == col_axis:
        raise ValueError("linalg.norm: duplicate axes given")
    if ord in (1, -1):
        sums = asum(absolute(x), axis=row_axis, keepdims=True)
        pick = amax if ord == 1 else amin
        out = pick(sums, axis=col_axis, keepdims=True)
    elif ord in (np.inf, -np.inf):
        sums = asum(absolute(x), axis=col_axis, keepdims=True)
        pick = amax if ord == np.inf else amin
        out = pick(sums, axis=row_axis, keepdims=True)
    elif isinstance(ord, str) and ord != "nuc":
        raise ValueError(f"linalg.norm: invalid norm order {ord!r} for matrices")
    elif ord in (2, -2, "nuc"):
        ndim = aval_of(x).ndim
        rest = [i for i in range(ndim) if i not in axes]
        with _named("norm"):
            (s,) = lax_linalg.svd(lax.transpose(x, rest + [row_axis, col_axis]),
                                  compute_uv=False)
        last = len(rest)
        if ord == "nuc":
            out = asum(s, axis=last)
        else:
            out = (amax if ord == 2 else amin)(s, axis=last)
        return lax.expand_dims(out, sorted(axes)) if keepdims else out
    else:
        raise ValueError(f"linalg.norm: invalid norm order {ord!r} for matrices")
    if keepdims:
        return out
    return lax.squeeze(out, tuple(sorted(axes)))
