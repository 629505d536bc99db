"""Run-time support that generated kernels import: BLAS and a few small loops.

**BLAS without SciPy.** Numba's `a @ b` needs SciPy. NumPy's wheel ships its own
OpenBLAS (`numpy.libs/libscipy_openblas64_*.so` on Linux, `numpy/.dylibs` on macOS),
exporting `scipy_cblas_dgemm64_` and friends with 64-bit integers. Loading that file
with `llvmlite.binding.load_library_permanently` and declaring the symbol as a
`numba.types.ExternalFunction` lets compiled code call dgemm by name: as fast as
NumPy's `@`, and cacheable (a ctypes pointer would make kernels uncacheable). The
file name is wheel-specific, so it is searched for at import; if no library loads,
`HAVE_BLAS` is False and kernels use `matmul_loop` instead (also used for integers).

Slice assignment (`c[:] = 0`) is avoided here and in generated code: Numba takes
hundreds of milliseconds to compile each one. Kernel sources are salted with a hash
of this file (see `cache.py`), so editing a
helper here invalidates every kernel that may have inlined it.
"""

from __future__ import annotations

import glob
import os

import numpy as np
from numba import njit, types

_JIT = {"cache": True, "error_model": "numpy", "nogil": True}


def _library_candidates() -> list[str]:
    root = os.path.dirname(np.__file__)
    patterns = [
        os.path.join(root, os.pardir, "numpy.libs", "libscipy_openblas64_*"),
        os.path.join(root, ".dylibs", "libscipy_openblas64_*"),
        os.path.join(root, os.pardir, "numpy.libs", "libscipy_openblas64_*.dll"),
    ]
    found: list[str] = []
    for pattern in patterns:
        found += sorted(glob.glob(pattern))
    return [os.path.normpath(p) for p in found]


def _load_blas() -> bool:
    """Load NumPy's bundled OpenBLAS into LLVM's symbol table; True on success."""
    if os.environ.get("FGRAD_NO_BLAS"):
        return False
    import llvmlite.binding as llvm

    for path in _library_candidates():
        try:
            llvm.load_library_permanently(path)
        except Exception:  # a broken or foreign library: try the next one
            continue
        if llvm.address_of_symbol("scipy_cblas_dgemm64_"):
            return True
    return False


HAVE_BLAS = _load_blas()

_i32, _i64 = types.int32, types.int64


def _gemm_type(scalar):
    ptr = types.CPointer(scalar)
    return types.void(_i32, _i32, _i32, _i64, _i64, _i64, scalar, ptr, _i64, ptr, _i64,
                      scalar, ptr, _i64)


_dgemm = types.ExternalFunction("scipy_cblas_dgemm64_", _gemm_type(types.float64))
_sgemm = types.ExternalFunction("scipy_cblas_sgemm64_", _gemm_type(types.float32))

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@njit(**_JIT)
def gemm_f64(a, b, c, nb, m, n, k, trans_a, trans_b):
    """c[i] = op(a[i]) @ op(b[i]) for i < nb, on flat C-order float64 buffers: a[i] is
    (m, k), or (k, m) if trans_a; b[i] is (k, n), or (n, k) if trans_b; c[i] is (m, n)."""
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(c.size):
            c[i] = 0.0
        return
    ta = _TRANS if trans_a else _NO_TRANS
    tb = _TRANS if trans_b else _NO_TRANS
    lda = m if trans_a else k
    ldb = k if trans_b else n
    for i in range(nb):
        _dgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a[i * m * k:].ctypes, lda,
               b[i * k * n:].ctypes, ldb, 0.0, c[i * m * n:].ctypes, n)


@njit(**_JIT)
def gemm_f32(a, b, c, nb, m, n, k, trans_a, trans_b):
    """`gemm_f64` for float32 (single-precision accumulation, as NumPy's matmul)."""
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(c.size):
            c[i] = 0.0
        return
    ta = _TRANS if trans_a else _NO_TRANS
    tb = _TRANS if trans_b else _NO_TRANS
    lda = m if trans_a else k
    ldb = k if trans_b else n
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for i in range(nb):
        _sgemm(_ROW_MAJOR, ta, tb, m, n, k, one, a[i * m * k:].ctypes, lda,
               b[i * k * n:].ctypes, ldb, zero, c[i * m * n:].ctypes, n)


@njit(**_JIT)
def matmul_loop(a, b, c, nb, m, n, k, trans_a, trans_b):
    """The plain-loop fallback of `gemm_*` (integers, or no BLAS), i-p-j order.
    Integers wrap as NumPy's do."""
    for i in range(c.size):
        c[i] = 0
    for bi in range(nb):
        a0, b0, c0 = bi * m * k, bi * k * n, bi * m * n
        for i in range(m):
            for p in range(k):
                av = a[a0 + p * m + i] if trans_a else a[a0 + i * k + p]
                for j in range(n):
                    bv = b[b0 + j * k + p] if trans_b else b[b0 + p * n + j]
                    c[c0 + i * n + j] += av * bv


@njit(**_JIT)
def matmul_loop_bool(a, b, c, nb, m, n, k, trans_a, trans_b):
    """Matrix product of booleans: a logical or of ands (as NumPy's matmul)."""
    for i in range(c.size):
        c[i] = False
    for bi in range(nb):
        a0, b0, c0 = bi * m * k, bi * k * n, bi * m * n
        for i in range(m):
            for p in range(k):
                if a[a0 + p * m + i] if trans_a else a[a0 + i * k + p]:
                    for j in range(n):
                        if b[b0 + j * k + p] if trans_b else b[b0 + p * n + j]:
                            c[c0 + i * n + j] = True


@njit(**_JIT)
def argmax_rows(x, rows, n, out):
    """out[r] = the first index of the largest of x[r * n:(r + 1) * n] (the first NaN
    if there is one)."""
    for r in range(rows):
        best = x[r * n]
        where = 0
        for j in range(1, n):
            v = x[r * n + j]
            if v > best or (v != v and best == best):
                best = v
                where = j
        out[r] = where


@njit(**_JIT)
def argmin_rows(x, rows, n, out):
    """out[r] = the first index of the smallest of x[r * n:(r + 1) * n] (the first NaN
    if there is one)."""
    for r in range(rows):
        best = x[r * n]
        where = 0
        for j in range(1, n):
            v = x[r * n + j]
            if v < best or (v != v and best == best):
                best = v
                where = j
        out[r] = where


@njit(**_JIT)
def _clamp(i, n):
    """The gather/scatter_add index rule: negative counts from the end, then clamped."""
    if i < 0:
        i += n
    return min(max(i, 0), max(n - 1, 0))


@njit(**_JIT)
def gather_rows(x, indices, out, outer, n, inner):
    """np.take along the middle axis of x viewed as (outer, n, inner), with clamped
    indices: out viewed as (outer, indices.size, inner)."""
    m = indices.size
    for o in range(outer):
        for i in range(m):
            k = _clamp(np.int64(indices[i]), n)
            src = (o * n + k) * inner
            dst = (o * m + i) * inner
            for r in range(inner):
                out[dst + r] = x[src + r]


@njit(**_JIT)
def scatter_add_rows(x, indices, updates, out, outer, n, inner):
    """out = x, then updates (viewed as (outer, indices.size, inner)) added at the clamped
    indices of the middle axis, in order (np.add.at)."""
    for j in range(x.size):
        out[j] = x[j]
    m = indices.size
    for o in range(outer):
        for i in range(m):
            k = _clamp(np.int64(indices[i]), n)
            dst = (o * n + k) * inner
            src = (o * m + i) * inner
            for r in range(inner):
                out[dst + r] += updates[src + r]


@njit(**_JIT)
def cumsum_rows(x, out, outer, n, inner, reverse):
    """Running sums along the middle axis of x viewed as (outer, n, inner), in x's
    dtype, from the end if reverse (as NumPy's cumsum)."""
    for o in range(outer):
        for r in range(inner):
            first = n - 1 if reverse else 0
            step = -1 if reverse else 1
            at = (o * n + first) * inner + r
            if n == 0:
                continue
            total = x[at]
            out[at] = total
            for _ in range(1, n):
                at += step * inner
                total += x[at]
                out[at] = total


@njit(**_JIT)
def argsort_rows(x, rows, n, out):
    """out[r * n:(r + 1) * n] = the stable argsort of x[r * n:(r + 1) * n] (NaNs last)."""
    for r in range(rows):
        order = np.argsort(x[r * n:(r + 1) * n], kind="mergesort")
        for j in range(n):
            out[r * n + j] = order[j]


def source_hash() -> str:
    """A hash of this file, to salt kernel sources with."""
    import hashlib

    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


__all__ = ["HAVE_BLAS", "argmax_rows", "argmin_rows", "argsort_rows", "cumsum_rows",
           "gather_rows", "gemm_f32", "gemm_f64", "matmul_loop", "matmul_loop_bool",
           "scatter_add_rows", "source_hash"]

