"""Indexing: `x[...]`, `take`, `take_along_axis`, and index updates `x.at[...]`.

`x[index]` follows NumPy: integers, slices (any step), None and Ellipsis (basic
indexing, lowered to `rev`, `slice`, `squeeze` and `expand_dims`); integer arrays
(advanced indexing, lowered to one `gather`); boolean masks (turned into integer
arrays with `np.nonzero`, so the mask must be concrete: a NumPy array, or a value
computed from concrete values as under `grad`; under `make_jaxpr`, `jit` and `vmap`
a traced mask raises and `fgrad.numpy.where` is the way).

Advanced indices are placed as NumPy places them: where the first one stood if they
are adjacent in the index, else first (integers beside arrays count as arrays, and a
None or an Ellipsis between arrays separates them). Several index arrays are broadcast
together and lowered to one gather on the merged axes.

Out-of-range indices: concrete ones raise `IndexError` as in NumPy (negative ones
count from the end); traced ones (under `make_jaxpr`, `vmap`, `jit`) cannot be checked
and are clamped into range, as in JAX (see `lax.gather`).

Index updates return a new array and never change their input:

    x.at[idx].set(v)       # x with x[idx] replaced by v
    x.at[idx].add(v)       # repeated indices accumulate (np.add.at)
    x.at[idx].multiply(v)  # repeated indices multiply (np.multiply.at)
    x.at[idx].get()        # x[idx]

`v` broadcasts to the shape of `x[idx]` and is cast to x's dtype. With repeated
indices, `.set` keeps the last write in C order of the index (NumPy's `x[idx] = v`
behaviour in practice; JAX leaves it unspecified), also for traced indices (a stable
sort finds the last write). Everything is differentiable in `x` and `v`, including
`.multiply` with repeated indices (a segmented product over the sorted updates).
Out-of-range indices follow the rule above: IndexError when concrete, clamped when
traced (JAX drops such updates instead; clamping keeps gather and scatter_add each
other's transposes).

`.at` exists on traced values; NumPy arrays have no `.at`, so for them (and for any
value) write `fgrad.numpy.at(x)[idx].set(v)`. Likewise a NumPy array indexed by a
traced value (`np_array[i]` with `i` a vmapped or loop index) fails inside NumPy
itself: write `fgrad.numpy.take(np_array, i, axis=0)` or
`fgrad.numpy.at(np_array)[i].get()`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import Tracer, get_aval
from ..errors import ConcretizationError, user_frame_summary
from ..lax import lax
from ._core import Array, aval_of, broadcast_to_shape, convert, normalize_axis, value

_VALID = ("only integers, slices (`:`), ellipsis (`...`), None (`numpy.newaxis`) and "
          "integer or boolean arrays are valid indices")


# ============================================================================ index entries


class _Adv:
    """An advanced index on one axis: a NumPy int64 array (checked and made non-negative)
    or a traced integer array (clamped later, by the primitives' rule)."""

    __slots__ = ("idx", "pos")

    def __init__(self, idx: Any, pos: int):
        self.idx, self.pos = idx, pos

    @property
    def concrete(self) -> bool:
        return not isinstance(self.idx, Tracer)


class _Mask:
    """A concrete boolean mask over one or more axes."""

    __slots__ = ("mask",)

    def __init__(self, mask: np.ndarray):
        self.mask = mask


def _concrete(x: Any) -> Any:
    """The concrete value behind x if it has one (a NumPy value, or a tracer under jvp)."""
    if isinstance(x, Tracer):
        c = x.to_concrete()
        return x if c is None else np.asarray(c)
    return x


def _index_array(e: Any, what: str) -> Any:
    """An index entry that is not None/Ellipsis/slice/int: a NumPy array or a tracer."""
    if isinstance(e, (list, tuple)):
        e = value(e, what)
        if isinstance(e, np.ndarray) and e.size == 0 and e.dtype.kind == "f":
            e = e.astype(np.int64)  # `x[[]]`: an empty integer index, as in NumPy
    elif isinstance(e, (bool, int)):
        e = np.asarray(e)
    elif isinstance(e, (float, complex, str, bytes)) or e is None:
        raise IndexError(f"{what}: {_VALID}, got a {type(e).__name__}")
    elif not isinstance(e, (Tracer, np.ndarray, np.generic)):
        raise IndexError(f"{what}: {_VALID}, got a {type(e).__name__}")
    e = _concrete(e)
    kind = get_aval(e).dtype.kind
    if kind not in "biu":
        raise IndexError(f"{what}: arrays used as indices must be of integer (or boolean) "
                         f"type, got {get_aval(e).str_short()}")
    return e


def _mask_error(mask: Tracer) -> ConcretizationError:
    return ConcretizationError(
        f"a boolean mask index needs a concrete value, but got the abstract traced value "
        f"{mask.aval} inside {mask._interp.transform}: the number of selected elements, and "
        f"so the result's shape, would depend on the values.\n  at {user_frame_summary()}\n"
        "Use fgrad.numpy.where(mask, x, other) to keep the shape (for example "
        "fnp.where(mask, x, 0).sum() instead of x[mask].sum()), or index outside the "
        "transform."
    )


def _entries(index: Any) -> list[tuple[Any, int]]:
    """The index as a list of (entry, position in the index) pairs, each entry None,
    Ellipsis, a slice, an int, an _Adv (not yet checked) or a _Mask."""
    raw = index if isinstance(index, tuple) else (index,)
    out: list[tuple[Any, int]] = []
    for pos, e in enumerate(raw):
        if e is None or e is Ellipsis or isinstance(e, slice):
            out.append((e, pos))
        elif isinstance(e, (bool, np.bool_)):
            raise IndexError("indexing with a boolean scalar (x[True]) is not supported; "
                             "use x[None] or fgrad.numpy.where")
        elif isinstance(e, (int, np.integer)):
            out.append((int(e), pos))
        else:
            arr = _index_array(e, "indexing")
            aval = get_aval(arr)
            if aval.dtype.kind == "b":
                if isinstance(arr, Tracer):
                    raise _mask_error(arr)
                if aval.ndim == 0:
                    raise IndexError("indexing with a 0-d boolean mask is not supported; use "
                                     "x[None] or fgrad.numpy.where")
                out.append((_Mask(np.asarray(arr)), pos))
            elif aval.ndim == 0 and not isinstance(arr, Tracer):
                out.append((int(arr), pos))
            else:
                out.append((_Adv(arr, pos), pos))
    return out


def _consumed(e: Any) -> int:
    if e is None or e is Ellipsis:
        return 0
    return e.mask.ndim if isinstance(e, _Mask) else 1


def _expand(shape: tuple[int, ...], entries: list[tuple[Any, int]]) -> list[Any]:
    """Ellipsis (or the implicit trailing one) replaced by full slices, masks by integer
    arrays (mask shapes checked), integers beside arrays by 0-d arrays: a list of None,
    slice, int and _Adv, one per axis of x (None aside)."""
    ndim = len(shape)
    if sum(1 for e, _ in entries if e is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(_consumed(e) for e, _ in entries)
    if used > ndim:
        raise IndexError(f"too many indices for array: array is {ndim}-dimensional, but "
                         f"{used} were indexed")
    if not any(e is Ellipsis for e, _ in entries):
        entries = [*entries, (Ellipsis, len(entries))]
    advanced = any(isinstance(e, (_Adv, _Mask)) for e, _ in entries)
    out: list[Any] = []
    axis = 0
    for e, pos in entries:
        if e is Ellipsis:
            out.extend([slice(None)] * (ndim - used))
            axis += ndim - used
        elif isinstance(e, _Mask):
            k = e.mask.ndim
            if e.mask.shape != shape[axis:axis + k]:
                bad = next(i for i in range(k) if e.mask.shape[i] != shape[axis + i])
                raise IndexError(
                    f"boolean index did not match indexed array along axis {axis + bad}; "
                    f"size of axis is {shape[axis + bad]} but size of corresponding boolean "
                    f"axis is {e.mask.shape[bad]}")
            out.extend(_Adv(i, pos) for i in np.nonzero(e.mask))
            axis += k
        elif isinstance(e, int) and advanced:  # an integer beside arrays is a 0-d array
            out.append(_Adv(np.asarray(e), pos))
            axis += 1
        else:
            if e is not None:
                axis += 1
            out.append(e)
    return out


def _check_bounds(idx: np.ndarray, n: int, axis: int) -> np.ndarray:
    """A concrete index array as int64 in [0, n), or NumPy's IndexError."""
    idx = np.asarray(idx)
    if idx.size:
        lo, hi = idx.min(), idx.max()
        if lo < -n or hi >= n:
            bad = int(lo) if lo < -n else int(hi)
            raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
    idx = idx.astype(np.int64)
    return np.where(idx < 0, idx + n, idx)


# ============================================================================ basic indexing


class _Basic:
    """Basic indexing as rev, slice, squeeze, expand_dims, and its transpose (the values
    put back in place, zeros elsewhere)."""

    def __init__(self, shape: tuple[int, ...], entries: Sequence[Any]):
        self.shape = shape
        self.flips: list[int] = []
        self.squeezes: list[int] = []
        self.new_axes: list[int] = []
        starts, limits, strides = [], [], []
        axis = out_pos = 0
        for e in entries:
            if e is None:
                self.new_axes.append(out_pos)
                out_pos += 1
                continue
            n = shape[axis]
            if isinstance(e, slice):
                start, stop, step = e.indices(n)
                if step < 0:  # walk the reversed axis forwards
                    self.flips.append(axis)
                    start, stop, step = n - 1 - start, n - 1 - stop, -step
                starts.append(start)
                limits.append(max(start, stop))
                strides.append(step)
                out_pos += 1
            else:
                i = int(e)
                if not -n <= i < n:
                    raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
                i %= n
                starts.append(i)
                limits.append(i + 1)
                strides.append(1)
                self.squeezes.append(axis)
            axis += 1
        self.starts, self.limits, self.strides = starts, limits, strides
        self.sliced = bool(shape) and (tuple(starts), tuple(limits), set(strides)) != (
            (0,) * len(shape), shape, {1})
        self.identity = not (self.flips or self.sliced or self.squeezes or self.new_axes)

    def apply(self, x: Array) -> Array:
        out = lax.rev(x, self.flips) if self.flips else x
        if self.sliced:
            out = lax.slice(out, self.starts, self.limits, self.strides)
        if self.squeezes:
            out = lax.squeeze(out, self.squeezes)
        if self.new_axes:
            out = lax.expand_dims(out, self.new_axes)
        return out

    def transpose(self, w: Array) -> Array:
        """`w` (of the indexed shape) put where `apply` took it from; zeros elsewhere."""
        dtype = aval_of(w).dtype
        if self.new_axes:
            w = lax.squeeze(w, self.new_axes)
        if self.squeezes:
            w = lax.expand_dims(w, self.squeezes)
        if self.sliced:
            sizes = aval_of(w).shape
            if 0 in sizes:
                w = lax.full(self.shape, 0, dtype)
            else:
                config = [(s, n - (s + (m - 1) * st) - 1, st - 1)
                          for s, n, st, m in zip(self.starts, self.shape, self.strides, sizes)]
                w = lax.pad(w, np.zeros((), dtype), config)
        if self.flips:
            w = lax.rev(w, self.flips)
        return w


# ============================================================================ the plan


def _as_int64(idx: Any) -> Any:
    if isinstance(idx, Tracer):
        return lax.convert_element_type(idx, np.int64)
    return np.asarray(idx, np.int64)


class _Plan:
    """`x[index]` as basic indexing (to `y`), then, if there are advanced indices, a
    transpose moving them together, a reshape merging them into one axis (`z`), and one
    gather along that axis `p` with the broadcast index `flat`."""

    def __init__(self, shape: tuple[int, ...], index: Any):
        self.shape = shape
        entries = _expand(shape, _entries(index))
        advanced = [e for e in entries if isinstance(e, _Adv)]
        self.concrete = all(a.concrete for a in advanced)
        self.basic = _Basic(shape, [slice(None) if isinstance(e, _Adv) else e
                                    for e in entries])
        self.entries = entries
        self.adv = None
        if advanced:
            self._advanced(entries)

    def _advanced(self, entries: list[Any]) -> None:
        adv_axes, x_axes, arrays, positions = [], [], [], []
        x_axis = y_axis = 0
        for e in entries:
            if e is None:
                y_axis += 1
                continue
            if isinstance(e, _Adv):
                adv_axes.append(y_axis)
                x_axes.append(x_axis)
                arrays.append(e.idx)
                positions.append(e.pos)
                y_axis += 1
            elif isinstance(e, slice):
                y_axis += 1
            x_axis += 1
        try:
            self.B = tuple(np.broadcast_shapes(*[get_aval(a).shape for a in arrays]))
        except ValueError:
            listed = " ".join(str(get_aval(a).shape) for a in arrays)
            raise IndexError(f"shape mismatch: indexing arrays could not be broadcast "
                             f"together with shapes {listed}") from None
        if math.prod(self.B) == 0:  # nothing is selected, nothing is checked (as NumPy)
            arrays = [np.zeros((), np.int64) for _ in arrays]
            self.concrete = True
        else:
            arrays = [_check_bounds(a, self.shape[ax], ax) if not isinstance(a, Tracer) else a
                      for a, ax in zip(arrays, x_axes)]
        unique = sorted(set(positions))
        adjacent = unique == list(range(unique[0], unique[0] + len(unique)))
        self.y_shape = _basic_shape(self.shape, entries)
        y_ndim = len(self.y_shape)
        rest = [a for a in range(y_ndim) if a not in adv_axes]
        if adjacent:
            self.p = adv_axes[0]
            self.perm = tuple(range(y_ndim))
        else:
            self.p = 0
            self.perm = (*adv_axes, *rest)
        sizes = [self.y_shape[a] for a in adv_axes]
        permuted = [self.y_shape[a] for a in self.perm]
        self.permuted_shape = tuple(permuted)
        k = len(adv_axes)
        self.z_shape = (*permuted[:self.p], math.prod(sizes), *permuted[self.p + k:])
        self.flat = _flat_index(arrays, sizes, self.B, self.concrete)
        self.adv = True

    @property
    def result_shape(self) -> tuple[int, ...]:
        """The shape of x[index]."""
        if self.adv is None:
            return _basic_shape(self.shape, self.entries)
        z = self.z_shape
        return (*z[:self.p], *self.B, *z[self.p + 1:])

    # ---------------------------------------------------------------- forwards, backwards

    def to_z(self, x: Array) -> Array:
        y = self.basic.apply(x)
        return lax.reshape(lax.transpose(y, self.perm), self.z_shape)

    def from_z(self, w: Array) -> Array:
        """The transpose of `to_z`: values of z's shape put back in x's; zeros elsewhere."""
        w = lax.reshape(w, self.permuted_shape)
        w = lax.transpose(w, tuple(np.argsort(self.perm)))
        return self.basic.transpose(w)

    def get(self, x: Array) -> Array:
        if self.adv is None:
            return self.basic.apply(x)
        return lax.gather(self.to_z(x), self.flat, self.p)


def _basic_shape(shape: tuple[int, ...], entries: list[Any]) -> tuple[int, ...]:
    out, axis = [], 0
    for e in entries:
        if e is None:
            out.append(1)
            continue
        n = shape[axis]
        if isinstance(e, slice):
            out.append(len(range(*e.indices(n))))
        elif isinstance(e, _Adv):
            out.append(n)
        axis += 1
    return tuple(out)


def _flat_index(arrays: list[Any], sizes: list[int], B: tuple[int, ...], concrete: bool):
    """The row-major index into the merged axes (C order over `sizes`), of shape B."""
    if len(arrays) == 1:
        idx = arrays[0]
        return np.broadcast_to(idx, B) if concrete else broadcast_to_shape(idx, B)
    strides = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
    if concrete:
        flat = sum(np.asarray(a, np.int64) * s for a, s in zip(arrays, strides))
        return np.broadcast_to(np.asarray(flat, np.int64), B)
    flat = None
    for a, n, s in zip(arrays, sizes, strides):
        term = lax.clamp_indices(a, n) if isinstance(a, Tracer) else _as_int64(a)
        term = broadcast_to_shape(lax.mul(term, s) if s != 1 else term, B)
        flat = term if flat is None else lax.add(flat, term)
    return flat


def getitem(x: Any, index: Any) -> Array:
    """`x[index]`, NumPy's rules (see the module docstring)."""
    x = value(x, "indexing")
    return _Plan(aval_of(x).shape, index).get(x)


# ============================================================================ take


def _take_indices(indices: Any, n: int, axis: int, mode: str | None, fname: str) -> Any:
    """Indices for `lax.gather` on an axis of size n: NumPy's modes for concrete ones."""
    if mode not in (None, "raise", "wrap", "clip"):
        raise ValueError(f"{fname}: mode must be 'raise', 'wrap' or 'clip', got {mode!r}")
    idx = _index_array(indices, fname)
    if get_aval(idx).dtype.kind == "b":
        raise IndexError(f"{fname}: indices must be integers, got a boolean array")
    if n == 0 and get_aval(idx).size:
        raise IndexError(f"{fname}: cannot do a non-empty take from an empty axis")
    if isinstance(idx, Tracer):  # clamped by the primitive, or wrapped / clipped here
        if mode == "wrap":
            idx = lax.convert_element_type(idx, np.int64)
            idx = lax.rem(lax.add(lax.rem(idx, n), n), n)
        elif mode == "clip":
            idx = lax.max(lax.min(lax.convert_element_type(idx, np.int64), n - 1), 0)
        return idx
    if mode == "wrap":
        return np.mod(np.asarray(idx, np.int64), n) if n else np.asarray(idx, np.int64)
    if mode == "clip":
        return np.clip(np.asarray(idx, np.int64), 0, max(n - 1, 0))
    return _check_bounds(idx, n, axis)


def take(a: Any, indices: Any, axis: int | None = None, mode: str | None = None) -> Array:
    """Elements of `a` at `indices` along `axis` (of the flattened `a` if None); the
    indices' shape replaces the axis. `mode` is NumPy's: 'raise' (the default, for
    concrete indices), 'wrap' or 'clip'; traced indices are clamped unless 'wrap'."""
    a = value(a, "take")
    if axis is None:
        a = lax.reshape(a, (aval_of(a).size,))
        axis = 0
    shape = aval_of(a).shape
    ax = normalize_axis("take", axis, len(shape))
    return lax.gather(a, _take_indices(indices, shape[ax], ax, mode, "take"), ax)


def take_along_axis(arr: Any, indices: Any, axis: int | None = -1) -> Array:
    """`out[..., j, ...] = arr[..., indices[..., j, ...], ...]` along `axis` (NumPy's
    take_along_axis): the other axes of `arr` and `indices` broadcast together."""
    arr = value(arr, "take_along_axis")
    idx = _index_array(indices, "take_along_axis")
    if get_aval(idx).dtype.kind == "b":
        raise IndexError("take_along_axis: indices must be integers, got a boolean array")
    if axis is None:
        arr = lax.reshape(arr, (aval_of(arr).size,))
        axis = 0
        if get_aval(idx).ndim != 1:
            raise ValueError("take_along_axis: when axis=None, `indices` must have a single "
                             "dimension")
    a_shape, i_shape = aval_of(arr).shape, get_aval(idx).shape
    if len(a_shape) != len(i_shape):
        raise ValueError(f"take_along_axis: `indices` {i_shape} and `arr` {a_shape} must have "
                         "the same number of dimensions")
    ax = normalize_axis("take_along_axis", axis, len(a_shape))
    n, k = a_shape[ax], i_shape[ax]
    others = [a_shape[:ax] + a_shape[ax + 1:], i_shape[:ax] + i_shape[ax + 1:]]
    try:
        common = tuple(np.broadcast_shapes(*others))
    except ValueError:
        raise ValueError(f"take_along_axis: shapes {a_shape} and {i_shape} do not broadcast "
                         f"outside axis {ax}") from None
    m = math.prod(common)
    last = len(common)
    # The axis last and the other axes broadcast: then one gather on the flattened array.
    arr = lax.transpose(arr, (*[i for i in range(len(a_shape)) if i != ax], ax))
    arr = broadcast_to_shape(arr, (*common, n))
    if isinstance(idx, Tracer):
        idx = lax.transpose(idx, (*[i for i in range(len(i_shape)) if i != ax], ax))
        idx = lax.clamp_indices(broadcast_to_shape(idx, (*common, k)), n)
        offsets = lax.mul(lax.iota(np.int64, (m, k), 0), n)
        flat = lax.add(idx, lax.reshape(offsets, (*common, k)))
    else:
        if n == 0 and get_aval(idx).size:
            raise IndexError("take_along_axis: cannot take from an empty axis")
        idx = _check_bounds(np.moveaxis(np.asarray(idx), ax, -1), n, ax)
        idx = np.broadcast_to(idx, (*common, k))
        flat = idx + (np.arange(m, dtype=np.int64) * n).reshape(*common, 1)
    out = lax.gather(lax.reshape(arr, (m * n,)), flat, 0)
    return lax.transpose(out, (*range(ax), last, *range(ax, last)))


# ============================================================================ .at[...] updates


def _updates(plan: _Plan, x: Array, v: Any, fname: str) -> Array:
    """v as x's dtype, broadcast to the shape of x[index] (NumPy's assignment rule)."""
    v = value(v, fname)
    dtype = aval_of(x).dtype
    v = convert(v, dtype)
    shape = plan.result_shape
    v_shape = aval_of(v).shape
    if len(v_shape) > len(shape):  # leading size-1 axes may be dropped, as in NumPy
        extra = len(v_shape) - len(shape)
        if any(d != 1 for d in v_shape[:extra]):
            raise ValueError(f"{fname}: could not broadcast input array from shape {v_shape} "
                             f"into shape {shape}")
        v = lax.reshape(v, v_shape[extra:])
        v_shape = v_shape[extra:]
    try:
        ok = tuple(np.broadcast_shapes(v_shape, shape)) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{fname}: could not broadcast input array from shape {v_shape} into "
                         f"shape {shape}")
    return broadcast_to_shape(v, shape)


def _written(plan: _Plan, index: Any) -> Array:
    """Where x[index] lies, as a bool array of x's shape."""
    if plan.concrete:
        mask = np.zeros(plan.shape, np.bool_)
        mask[_numpy_index(index)] = True
        return mask
    n = plan.z_shape[plan.p]
    flat = lax.reshape(plan.flat, (math.prod(plan.B),))
    hits = lax.scatter_add(lax.full((n,), 0, np.int32), flat,
                           lax.full(get_aval(flat).shape, 1, np.int32), 0)
    hit = lax.broadcast_in_dim(lax.gt(hits, 0), plan.z_shape, (plan.p,))
    return plan.from_z(hit)


def _numpy_index(index: Any) -> Any:
    """The index with concrete tracers replaced by their values (for NumPy itself)."""
    def one(e):
        if isinstance(e, (list, tuple)):
            return np.asarray(value(e, "indexing")) if not _has_tracer(e) else \
                np.asarray(_concrete(value(e, "indexing")))
        return _concrete(e)

    if isinstance(index, tuple):
        return tuple(one(e) for e in index)
    return one(index)


def _has_tracer(e: Any) -> bool:
    if isinstance(e, Tracer):
        return True
    return isinstance(e, (list, tuple)) and any(_has_tracer(x) for x in e)


def _shift(a: Array, s: int, axis: int, fill: Any) -> Array:
    """a[i - s] along `axis` (fill for i < s)."""
    shape = aval_of(a).shape
    n = shape[axis]
    s = min(s, n)
    limits = list(shape)
    limits[axis] = n - s
    kept = lax.slice(a, [0] * len(shape), limits)
    config = [(0, 0, 0)] * len(shape)
    config[axis] = (s, 0, 0)
    return lax.pad(kept, np.asarray(fill, aval_of(a).dtype), config)


class _Runs:
    """The updates sorted by target (stably), with where each run of equal targets starts
    and ends: what `.set` (last write wins) and `.multiply` (product of a run) need."""

    def __init__(self, plan: _Plan, u: Array):
        m = math.prod(plan.B)
        p = plan.p
        z = plan.z_shape
        u = lax.reshape(u, (*z[:p], m, *z[p + 1:]))
        flat = plan.flat
        if plan.concrete:
            flat = np.asarray(flat).reshape(m)
            order = np.argsort(flat, kind="stable")
            s = flat[order]
            self.starts = np.r_[True, s[1:] != s[:-1]] if m else np.zeros(0, np.bool_)
            self.lasts = np.r_[s[:-1] != s[1:], True] if m else np.zeros(0, np.bool_)
            starts_at = np.flatnonzero(self.starts)
            self.longest = int(np.diff(np.r_[starts_at, m]).max()) if m else 0
            if self.longest <= 1:  # no repeated targets: nothing to sort
                self.targets, self.u = flat, u
            else:
                self.targets, self.u = s, lax.gather(u, order, p)
        elif m <= 1:  # one update: nothing to sort
            self.starts = self.lasts = np.ones(m, np.bool_)
            self.longest = m
            self.targets, self.u = lax.reshape(flat, (m,)), u
        else:  # the same targets must compare equal: -1 and n - 1 are one
            flat = lax.clamp_indices(lax.reshape(flat, (m,)), z[p])
            order = lax.argsort(flat, 0)
            s = lax.gather(flat, order, 0)
            true = np.ones((1,), np.bool_)
            differ = lax.ne(lax.slice(s, (1,), (m,)), lax.slice(s, (0,), (m - 1,)))
            self.starts = lax.concatenate([true, differ], 0)
            self.lasts = lax.concatenate([differ, true], 0)
            self.longest = m
            self.targets, self.u = s, lax.gather(u, order, p)
        self.p, self.z = p, z

    def _along(self, flags: Array) -> Array:
        return _broadcast_in_axis(flags, aval_of(self.u).shape, self.p)

    def last_writes(self) -> Array:
        if self.longest <= 1:
            return self.u
        zeros = lax.full_like(self.u, 0)
        return lax.select_n(self._along(self.lasts), zeros, self.u)

    def run_products(self) -> Array:
        """At the last element of each run the product of the run (zero elsewhere): a
        segmented scan by doubling (log2 of the longest run steps), differentiable."""
        if self.longest <= 1:
            return self.u
        a, started = self.u, self.starts
        step = 1
        while step < self.longest:
            before = _shift(a, step, self.p, 1)
            a = lax.select_n(self._along(started), lax.mul(a, before), a)
            started = lax.bitwise_or(started, _shift(started, step, 0, True))
            step *= 2
        return lax.select_n(self._along(self.lasts), lax.full_like(a, 0), a)

    def scatter(self, vals: Array) -> Array:
        zeros = lax.full(self.z, 0, aval_of(vals).dtype)
        return lax.scatter_add(zeros, self.targets, vals, self.p)


def _broadcast_in_axis(flags: Array, shape: tuple[int, ...], axis: int) -> Array:
    return lax.broadcast_in_dim(flags, shape, (axis,))


def _update(x: Any, index: Any, v: Any, op: str) -> Array:
    fname = f"at[...].{op}"
    x = value(x, fname)
    aval = aval_of(x)
    if aval.dtype == np.bool_:  # updates computed in integers; nonzero is True
        out = _update(convert(x, np.int64), index, convert(value(v, fname), np.bool_), op)
        return lax.ne(out, lax.full_like(out, 0))
    plan = _Plan(aval.shape, index)
    u = _updates(plan, x, v, fname)
    if math.prod(plan.result_shape) == 0:
        return x if isinstance(x, Tracer) else np.array(x, copy=True)
    if op == "add":
        if plan.adv is None:
            return lax.add(x, plan.basic.transpose(u))
        if plan.basic.identity:  # scatter straight into x
            out = lax.scatter_add(plan.to_z(x), plan.flat, u, plan.p)
            return plan.from_z(out)
        zeros = lax.full(plan.z_shape, 0, aval.dtype)
        return lax.add(x, plan.from_z(lax.scatter_add(zeros, plan.flat, u, plan.p)))
    written = _written(plan, index)
    if plan.adv is None:
        placed = plan.basic.transpose(u)
    else:
        runs = _Runs(plan, u)
        vals = runs.last_writes() if op == "set" else runs.run_products()
        placed = plan.from_z(runs.scatter(vals))
    if op == "set":
        return lax.select_n(written, x, placed)
    return lax.select_n(written, x, lax.mul(x, placed))


class _IndexUpdateRef:
    """`x.at[index]`: the pending update; `.set`, `.add`, `.multiply` or `.get` it."""

    __slots__ = ("x", "index")

    def __init__(self, x: Any, index: Any):
        self.x, self.index = x, index

    def __repr__(self) -> str:
        return f"_IndexUpdateRef({self.x!r}, {self.index!r})"

    def get(self) -> Array:
        """`x[index]`."""
        return getitem(self.x, self.index)

    def set(self, values: Any) -> Array:
        """A new array: x with x[index] replaced by `values` (last write wins)."""
        return _update(self.x, self.index, values, "set")

    def add(self, values: Any) -> Array:
        """A new array: x with `values` added at index (repeated indices accumulate)."""
        return _update(self.x, self.index, values, "add")

    def multiply(self, values: Any) -> Array:
        """A new array: x with x[index] multiplied by `values` (repeats multiply)."""
        return _update(self.x, self.index, values, "multiply")

    mul = multiply


class _IndexUpdateHelper:
    """`x.at`: index it to get an update reference, `x.at[i].set(v)`."""

    __slots__ = ("x",)

    def __init__(self, x: Any):
        self.x = x

    def __getitem__(self, index: Any) -> _IndexUpdateRef:
        return _IndexUpdateRef(self.x, index)

    def __repr__(self) -> str:
        return f"_IndexUpdateHelper({self.x!r})"


def at(x: Any) -> _IndexUpdateHelper:
    """`fnp.at(x)[index].set(v)`: index updates for any array, NumPy arrays included
    (traced values also have `x.at[index]`). Returns a new array; x is never changed."""
    return _IndexUpdateHelper(value(x, "at"))


# ============================================================================ nonzero


def nonzero(a: Any) -> tuple[np.ndarray, ...]:
    """Indices of the nonzero elements, one int64 array per axis (NumPy's nonzero). The
    result's size depends on the values, so `a` must be concrete: a NumPy value, or a value
    computed from concrete ones (under grad); under make_jaxpr, jit and vmap use
    fgrad.numpy.where instead."""
    a = _concrete(value(a, "nonzero"))
    if isinstance(a, Tracer):
        raise ConcretizationError(
            f"nonzero needs a concrete value, but got the abstract traced value {a.aval} "
            f"inside {a._interp.transform}: the number of nonzero elements, and so the "
            f"result's shape, depends on the values.\n  at {user_frame_summary()}\n"
            "Use fgrad.numpy.where(condition, x, y) to keep the shape, or call nonzero "
            "outside the transform.")
    a = np.asarray(a)
    if a.ndim == 0:
        raise ValueError("nonzero: calling nonzero on 0d arrays is not allowed; use "
                         "atleast_1d(a).nonzero()")
    return tuple(i.astype(np.int64) for i in np.nonzero(a))


def flatnonzero(a: Any) -> np.ndarray:
    """Indices of the nonzero elements of the flattened array (concrete `a` only)."""
    a = _concrete(value(a, "flatnonzero"))
    if isinstance(a, Tracer):
        return nonzero(a)[0]  # raises, naming the problem
    return np.flatnonzero(a).astype(np.int64)
