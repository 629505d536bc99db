"""Indexing: integer-array and boolean-mask indexing, `take`, `take_along_axis`, index
updates `x.at[...]` / `fnp.at(x)[...]`, and the `gather` / `scatter_add` primitives.

Values against NumPy for the same arguments (fixed op specs and Hypothesis-generated
index expressions), `check_grads` in both modes at order 2, float32 and float64, `vmap`
against a loop (batched operand, batched indices, both), `make_jaxpr` type checks, and
bad input.

Behaviours chosen (see fgrad/numpy/_indexing.py and lax.gather):
* concrete out-of-range indices raise IndexError as in NumPy; traced ones are clamped
  (negative ones count from the end first), by gather and scatter_add alike;
* `.at[i].set(v)` with repeated indices keeps the last write (C order of the index);
  `.add` accumulates, `.multiply` multiplies.
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
    int_values,
    uniform,
)
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import lax, make_jaxpr, vmap
from fgrad.core import eval_jaxpr
from fgrad.errors import ConcretizationError
from fgrad.ir import check_jaxpr as type_check
from fgrad.test_util import check_grads
from fgrad.tree_util import tree_leaves, tree_map

NORMAL = uniform(-2.0, 2.0)
I64, I32 = np.dtype(np.int64), np.dtype(np.int32)
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


# ============================================================================ getitem specs


def _index(name, index, shapes):
    """x[index] with a constant index (NumPy arrays, lists, masks) on x of `shapes`."""
    return OpSpec(f"getitem_{name}", lambda x: fnp._indexing.getitem(x, index), 1, NORMAL,
                  ref=lambda x: x[index], shapes=[(s,) for s in shapes])


A = np.array
MASK34 = A([[True, False, True, True], [False, False, True, False], [True, True, False, False]])
GETITEM_SPECS = [
    _index("int_array", A([2, 0, -1]), [(3, 4), (4,), (3, 2, 2)]),
    _index("list", [1, 1, 0], [(3, 4), (2, 3, 4)]),
    _index("duplicates_2d", A([[0, 0], [2, 0]]), [(3, 4), (3,)]),
    _index("axis1", (slice(None), A([3, -4, 1])), [(3, 4), (2, 4, 2)]),
    _index("two_adjacent", (A([0, 2, 1]), A([1, 1, 3])), [(3, 4), (3, 4, 2)]),
    _index("two_broadcast", (A([[0], [2]]), A([1, 3, 0])), [(3, 4), (3, 4, 2)]),
    _index("slice_then_two", (slice(1, None), A([0, 1]), A([1, 0])), [(3, 2, 2), (2, 3, 4)]),
    _index("non_adjacent", (A([0, 1]), slice(None), A([1, 0])), [(2, 3, 4), (3, 2, 2)]),
    _index("int_and_array_apart", (1, slice(None), A([0, 2, 1])), [(2, 3, 4)]),
    _index("int_beside_array", (slice(None), 1, A([0, 2])), [(2, 3, 4)]),
    _index("none_ellipsis", (None, Ellipsis, A([1, 0])), [(3, 4), (2, 3, 2)]),
    _index("ellipsis_between", (A([1, 0]), Ellipsis, A([1, 0])), [(2, 3, 4), (2, 2)]),
    _index("step_slice_array", (slice(None, None, -2), A([[0, 1], [1, 0]])), [(3, 4), (4, 2)]),
    _index("mask", MASK34, [(3, 4)]),
    _index("mask_1d", A([True, False, True]), [(3, 4), (3,)]),
    _index("mask_then_slice", (A([True, False, True]), slice(1, 3)), [(3, 4)]),
    _index("slice_then_mask", (slice(None), A([False, True, True, False])), [(3, 4), (2, 4)]),
    _index("mask_all_false", A([False, False, False]), [(3, 4)]),
    _index("empty_int_array", A([], np.int64), [(3, 4), (3,)]),
    _index("empty_list", [], [(3, 4)]),
    _index("size0_axis_empty_index", (slice(None), A([], np.int64)), [(3, 0), (2, 0, 3)]),
    _index("0d_array_int", A(1), [(3, 4)]),
]

# ============================================================================ take specs


def _take(name, fn, ref, shapes, nargs=1, sampler=NORMAL):
    return OpSpec(f"take_{name}", fn, nargs, sampler, ref=ref, shapes=shapes)


TAKE_SPECS = [
    _take("flat", lambda x: fnp.take(x, A([5, 0, -1, 5])), lambda x: np.take(x, A([5, 0, -1, 5])),
          [((3, 4),), ((6,),), ((2, 3, 4),)]),
    _take("axis1_2d_indices", lambda x: fnp.take(x, A([[1, 0], [1, -1]]), axis=1),
          lambda x: np.take(x, A([[1, 0], [1, -1]]), axis=1), [((3, 4),), ((2, 3, 4),)]),
    _take("axis-1", lambda x: fnp.take(x, [2], axis=-1), lambda x: np.take(x, [2], axis=-1),
          [((3, 4),), ((3,),)]),
    _take("mode_wrap", lambda x: fnp.take(x, A([7, -9]), axis=0, mode="wrap"),
          lambda x: np.take(x, A([7, -9]), axis=0, mode="wrap"), [((3, 4),), ((4,),)]),
    _take("mode_clip", lambda x: fnp.take(x, A([7, -9, 1]), axis=0, mode="clip"),
          lambda x: np.take(x, A([7, -9, 1]), axis=0, mode="clip"), [((3, 4),), ((4,),)]),
    _take("scalar_index", lambda x: fnp.take(x, 1, axis=0), lambda x: np.take(x, 1, axis=0),
          [((3, 4),)]),
    # traced indices (an argument): in range here, so NumPy is the reference
    _take("traced_indices", lambda x, i: fnp.take(x, i, axis=0),
          lambda x, i: np.take(x, i, axis=0), [((3, 4), (2, 2)), ((3,), (5,))], nargs=2,
          sampler=(NORMAL, int_values(-3, 2, I64))),
    _take("along_axis", lambda x, i: fnp.take_along_axis(x, i, axis=1),
          lambda x, i: np.take_along_axis(x, i, axis=1), [((3, 4), (3, 5)), ((2, 4, 2), (2, 2, 1)),
                                                          ((3, 4), (1, 2))],
          nargs=2, sampler=(NORMAL, int_values(-4, 3, I64))),
    _take("along_axis_const", lambda x: fnp.take_along_axis(x, A([[0, 0, -1, 1]]), axis=0),
          lambda x: np.take_along_axis(x, A([[0, 0, -1, 1]]), axis=0), [((3, 4),), ((3, 1),)]),
    _take("along_axis_none", lambda x: fnp.take_along_axis(x, A([3, 3, 0]), axis=None),
          lambda x: np.take_along_axis(x, A([3, 3, 0]), axis=None), [((3, 4),), ((4,),)]),
]

# ============================================================================ .at specs


def _np_update(op):
    def ref(x, index, v):
        out = np.array(x, copy=True)
        if op == "set":
            out[index] = v
        elif op == "add":
            np.add.at(out, index, v)
        elif op == "multiply":
            np.multiply.at(out, index, v)
        else:
            return out[index]
        return out

    return ref


def _at(op, x, index, v=None):
    ref = fnp.at(x)[index]
    return ref.get() if op == "get" else getattr(ref, op)(v)


def _at_spec(name, op, index, shapes, v_sampler=NORMAL):
    """x.at[index].op(v) with a constant index; x and v sampled."""
    return OpSpec(f"at_{op}_{name}", lambda x, v: _at(op, x, index, v), 2, (NORMAL, v_sampler),
                  ref=lambda x, v: _np_update(op)(x, index, v), shapes=shapes)


def _at_traced(name, op, shapes, lo, hi):
    """x.at[i].op(v) with the index an argument (traced under make_jaxpr and vmap)."""
    return OpSpec(f"at_{op}_{name}", lambda x, i, v: _at(op, x, i, v), 3,
                  (NORMAL, int_values(lo, hi, I64), NORMAL),
                  ref=lambda x, i, v: _np_update(op)(x, i, v), shapes=shapes)


DUPS = A([1, 0, 1, 1, -1])
AT_SPECS = [
    *[_at_spec("duplicates", op, DUPS, [((4,), (5,)), ((3, 2), (5, 2)), ((3, 2), ())])
      for op in ("set", "add", "multiply")],
    *[_at_spec("int", op, 1, [((3, 4), (4,)), ((3,), ())]) for op in ("set", "add", "multiply")],
    *[_at_spec("slices", op, (slice(1, None), slice(None, None, -2)), [((3, 4), (2, 2)),
                                                                        ((3, 5), (1,))])
      for op in ("set", "add", "multiply")],
    *[_at_spec("mixed", op, (A([[0], [2]]), slice(1, 3), A([1, 0, 1])),
               [((3, 4, 2), (2, 3, 2)), ((3, 3, 2), ())])
      for op in ("set", "add", "multiply")],
    *[_at_spec("non_adjacent_dups", op, (A([0, 1, 0]), slice(None), A([1, 1, 1])),
               [((2, 3, 2), (3, 3))]) for op in ("set", "add", "multiply")],
    *[_at_spec("mask", op, MASK34, [((3, 4), ()), ((3, 4), (6,))])
      for op in ("set", "add", "multiply")],
    _at_spec("ellipsis_none", "set", (Ellipsis, None, A([0, 0])), [((2, 3), (2, 1, 2))]),
    _at_spec("empty", "set", A([], np.int64), [((3,), ())]),
    _at_spec("get", "get", (A([1, 0]), slice(None)), [((3, 2), ())]),
    *[_at_traced("traced", op, [((4,), (5,), (5,)), ((3, 2), (2, 2), (2, 2, 2))], -3, 2)
      for op in ("set", "add", "multiply")],
]

DIFFERENTIABLE = GETITEM_SPECS + TAKE_SPECS + AT_SPECS

# Non-float dtypes: values only.
NONDIFF_SPECS = [
    OpSpec("getitem_int32", lambda x: fnp._indexing.getitem(x, (A([1, 0]), 2)), 1,
           int_values(-5, 5, I32), dtypes=(I32,), ref=lambda x: x[A([1, 0]), 2], grad=False,
           shapes=[((3, 4),)]),
    OpSpec("at_add_int32_dups", lambda x: fnp.at(x)[A([0, 0, 2])].add(3), 1,
           int_values(-5, 5, I32), dtypes=(I32,), ref=lambda x: _np_update("add")(x, A([0, 0, 2]),
                                                                                  3),
           grad=False, shapes=[((3,),), ((4, 2),)]),
    OpSpec("at_set_bool", lambda x: fnp.at(x > 0)[A([0, 2])].set(True), 1, NORMAL,
           ref=lambda x: _np_update("set")(x > 0, A([0, 2]), True), grad=False,
           shapes=[((3,),), ((4, 2),)]),
    OpSpec("at_add_bool", lambda x: fnp.at(x > 0)[A([0, 0, 2])].add(True), 1, NORMAL,
           ref=lambda x: _np_update("add")(x > 0, A([0, 0, 2]), True), grad=False,
           shapes=[((3,),)]),
    OpSpec("at_set_float_into_int", lambda x: fnp.at(x)[1].set(2.7), 1, int_values(-5, 5, I64),
           dtypes=(I64,), ref=lambda x: _np_update("set")(x, 1, 2.7), grad=False,
           shapes=[((3,),)]),
    OpSpec("at_set_f64_into_f32", lambda x: fnp.at(x)[1].set(np.float64(2.5)), 1, NORMAL,
           dtypes=(F32,), ref=lambda x: _np_update("set")(x, 1, 2.5), grad=False,
           shapes=[((3,),)]),
]

ALL_SPECS = DIFFERENTIABLE + NONDIFF_SPECS
check_unique_names(ALL_SPECS)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(ALL_SPECS))
def test_values(spec, shapes, dtype, representative):
    check_values(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(ALL_SPECS))
def test_jaxpr(spec, shapes, dtype, representative):
    check_jaxpr(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative",
                         cases(DIFFERENTIABLE, grad_only=True))
def test_grads(spec, shapes, dtype, representative):
    check_derivatives(spec, shapes, dtype, representative)


def test_at_never_mutates_and_returns_new_arrays():
    x = np.arange(6.0)
    y = fnp.at(x)[A([0, 0])].add(1.0)
    z = fnp.at(x)[:].set(0.0)
    assert y is not x and z is not x
    np.testing.assert_array_equal(x, np.arange(6.0))
    empty = fnp.at(x)[A([], np.int64)].set(1.0)
    assert empty is not x
    np.testing.assert_array_equal(empty, x)


def test_at_duplicate_semantics():
    """set: the last write wins; add: accumulates; multiply: multiplies; with traced
    indices too (make_jaxpr)."""
    x = np.zeros(3) + 2.0
    i = A([2, 0, 2, 2])
    v = A([1.0, 5.0, 3.0, 4.0])
    for fn in (lambda x, i, v: _at("set", x, i, v), lambda x, i, v: _at("add", x, i, v),
               lambda x, i, v: _at("multiply", x, i, v)):
        eager = fn(x, i, v)
        closed = make_jaxpr(fn)(x, i, v)
        (staged,) = eval_jaxpr(closed.jaxpr, closed.consts, x, i, v)
        np.testing.assert_array_equal(staged, eager)
    np.testing.assert_array_equal(_at("set", x, i, v), [5.0, 2.0, 4.0])
    np.testing.assert_array_equal(_at("add", x, i, v), [7.0, 2.0, 10.0])
    np.testing.assert_array_equal(_at("multiply", x, i, v), [10.0, 2.0, 24.0])


def test_at_multiply_with_duplicates_and_zeros_differentiates():
    rng = np.random.default_rng(0)
    for dtype in FLOATS:
        x = rng.uniform(0.5, 1.5, (4, 2)).astype(dtype)
        v = rng.uniform(0.5, 1.5, (6, 2)).astype(dtype)
        v[1, 0] = 0.0
        i = A([3, 1, 3, 3, 0, 1])
        check_grads(lambda x, v, i=i: _at("multiply", x, i, v), (x, v), order=2)
        check_grads(lambda x, v, i: _at("multiply", x, i, v), (x, v, i), order=1)


def test_at_method_on_tracers():
    x = np.arange(4.0)

    def f(x):
        return x.at[1].set(10.0).at[A([0, 0])].add(1.0).at[-1].multiply(3.0).at[2].get()

    with pytest.raises(AttributeError):  # NumPy arrays have no .at: fnp.at(x) is for them
        f(x)
    assert fgrad.jvp(f, (x,), (np.ones(4),))[0] == 2.0
    closed = make_jaxpr(f)(x)
    assert eval_jaxpr(closed.jaxpr, closed.consts, x)[0] == 2.0
    out, t = fgrad.jvp(lambda x: x.at[1].set(10.0).at[A([0, 0])].add(x[3]), (x,), (np.ones(4),))
    np.testing.assert_array_equal(out, [6.0, 10.0, 2.0, 3.0])
    np.testing.assert_array_equal(t, [3.0, 0.0, 1.0, 1.0])
    g = fgrad.grad(lambda x: (x.at[A([0, 0, 1])].set(A([1.0, 2.0, 3.0]) * x[2]) ** 2).sum())(x)
    np.testing.assert_allclose(g, [0.0, 0.0, 2 * (4.0 * 2 + 9.0 * 2 + 2.0), 6.0])


def test_abstract_scalar_indices():
    """Traced integer scalars (a loop counter, a vmapped index) index like integers, through
    gather; a list of them is an index array."""
    x = np.arange(24.0).reshape(2, 3, 4)
    for fn in (lambda x, i, j: x[i, 1:], lambda x, i, j: x[i, :, j], lambda x, i, j: x[-i, j - 4],
               lambda x, i, j: x[..., [i, j, -1]], lambda x, i, j: x.at[i, :, j].set(-1.0),
               lambda x, i, j: x.at[:, [i, -i, i]].add(1.0)):
        eager = fgrad.jvp(lambda x, fn=fn: fn(x, 1, 3), (x,), (x,))[0]
        want = fgrad.jvp(lambda x, fn=fn: fn(x, np.int64(1), np.int64(3)), (x,), (x,))[0]
        np.testing.assert_array_equal(eager, want)
        closed = make_jaxpr(fn)(x, np.int64(1), np.int64(3))
        type_check(closed.jaxpr)
        (staged,) = eval_jaxpr(closed.jaxpr, closed.consts, x, np.int64(1), np.int64(3))
        np.testing.assert_array_equal(staged, want)
    got = vmap(lambda x, i: x[i, ::-1])(x, A([0, 2]))
    np.testing.assert_array_equal(got, np.stack([x[0, 0, ::-1], x[1, 2, ::-1]]))


def test_nonzero():
    x = np.array([[0.0, 1.5], [2.0, 0.0]])
    for got, want in zip(fnp.nonzero(x), np.nonzero(x)):
        assert_same(got, want.astype(np.int64), 0.0)
    assert_same(fnp.flatnonzero(x), np.flatnonzero(x).astype(np.int64), 0.0)
    g = fgrad.grad(lambda x: (x[fnp.nonzero(x > 1.0)] ** 2).sum())(x)
    np.testing.assert_array_equal(g, [[0.0, 3.0], [4.0, 0.0]])
    with pytest.raises(ConcretizationError, match="fgrad.numpy.where"):
        vmap(fnp.nonzero)(x)
    with pytest.raises(ValueError, match="0d"):
        fnp.nonzero(np.float64(1.0))


# ============================================================================ Hypothesis


@st.composite
def index_expressions(draw):
    """(shape, index): a random NumPy index on a random shape: integers, slices (any step),
    None, an Ellipsis, integer arrays broadcast together (adjacent or not), masks."""
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    ndim = len(shape)
    b_shape = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=2)))
    entries, axis = [], 0
    ellipsis_done = False
    while axis < ndim:
        n = shape[axis]
        choice = draw(st.sampled_from(["slice", "int", "array", "array", "mask", "none",
                                       "ellipsis", "stop"]))
        if choice == "stop":
            break
        if choice == "none":
            entries.append(None)
            continue
        if choice == "ellipsis":
            if ellipsis_done:
                continue
            ellipsis_done = True
            skip = draw(st.integers(0, ndim - axis))
            entries.append(Ellipsis)
            axis += skip
            continue
        if choice == "slice":
            start = draw(st.none() | st.integers(-n - 2, n + 2))
            stop = draw(st.none() | st.integers(-n - 2, n + 2))
            step = draw(st.none() | st.sampled_from([1, 2, 3, -1, -2]))
            entries.append(slice(start, stop, step))
        elif choice == "int":
            if n == 0:
                continue
            entries.append(draw(st.integers(-n, n - 1)))
        elif choice == "array":
            if n == 0 and np.prod(b_shape) > 0:
                continue
            s = tuple(d if draw(st.booleans()) else 1 for d in b_shape)
            s = s[draw(st.integers(0, len(s))):]  # a broadcastable suffix
            values = draw(st.lists(st.integers(-n, max(n - 1, -n)), min_size=int(np.prod(s)),
                                   max_size=int(np.prod(s))))
            entries.append(np.array(values, np.int64).reshape(s))
        else:  # a mask over one or two axes
            k = draw(st.integers(1, min(2, ndim - axis)))
            m_shape = shape[axis:axis + k]
            bits = draw(st.lists(st.booleans(), min_size=int(np.prod(m_shape)),
                                 max_size=int(np.prod(m_shape))))
            entries.append(np.array(bits, np.bool_).reshape(m_shape))
            axis += k
            continue
        axis += 1
    if draw(st.booleans()):
        entries.append(None)
    return shape, tuple(entries)


def _numpy_can(shape, index):
    try:
        return np.zeros(shape)[index].shape
    except IndexError:
        return None


@given(case=index_expressions(), dtype=st.sampled_from(FLOATS), data=st.data())
def test_random_indexing_matches_numpy(case, dtype, data):
    shape, index = case
    out_shape = _numpy_can(shape, index)
    if out_shape is None:  # NumPy refuses it (masks and arrays that don't broadcast): so do we
        with pytest.raises(IndexError):
            fnp._indexing.getitem(np.zeros(shape), index)
        return
    x = np.arange(np.prod(shape), dtype=dtype).reshape(shape) - 3
    assert_same(fnp._indexing.getitem(x, index), x[index], 0.0, what=f"x{shape}[{index}]")
    # staged, with the integer arrays as arguments (traced, so the gather clamps; in range here)
    arrays = [e for e in index if isinstance(e, np.ndarray) and e.dtype != np.bool_]

    def staged(x, *arrs):
        it = iter(arrs)
        idx = tuple(next(it) if isinstance(e, np.ndarray) and e.dtype != np.bool_ else e
                    for e in index)
        return x[idx]

    check_jaxpr_agrees(staged, (x, *arrays), what=f"x{shape}[{index}] staged")
    # updates: set / add / multiply with values broadcast to x[index]
    v = (np.arange(np.prod(out_shape), dtype=dtype).reshape(out_shape) % 5 + 1).astype(dtype)
    if data.draw(st.booleans()) and out_shape:  # a value that broadcasts
        tail = out_shape[data.draw(st.integers(1, len(out_shape))):]
        v = (np.arange(np.prod(tail)).reshape(tail) % 3 + 2).astype(dtype)
    for op in ("set", "add", "multiply"):
        want = _np_update(op)(x, index, v)
        assert_same(_at(op, x, index, v), want, 0.0, what=f"at[{index}].{op} on {shape}")
        closed = make_jaxpr(lambda x, v, *arrs, op=op: _at(op, x, tuple(
            next(it) if isinstance(e, np.ndarray) and e.dtype != np.bool_ else e
            for it in [iter(arrs)] for e in index), v))(x, v, *arrays)
        type_check(closed.jaxpr)
        (got,) = eval_jaxpr(closed.jaxpr, closed.consts, x, v, *arrays)
        assert_same(np.asarray(got), want, 0.0, what=f"at[{index}].{op} staged")


# ============================================================================ vmap


def _loop(fn, args, in_axes):
    size = next(np.shape(a)[ax] for a, ax in zip(args, in_axes) if ax is not None)
    outs = [fn(*[a if ax is None else np.take(a, b, axis=ax) for a, ax in zip(args, in_axes)])
            for b in range(size)]
    return tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *outs)


def check_vmap(fn, args, in_axes):
    got, want = vmap(fn, in_axes=in_axes)(*args), _loop(fn, args, in_axes)
    for g, w in zip(tree_leaves(got), tree_leaves(want)):
        assert_same(g, w, 1e-6 if np.asarray(w).dtype == F32 else 1e-12,
                    what=f"vmap in_axes={in_axes}")
    closed = make_jaxpr(vmap(fn, in_axes=in_axes))(*args)
    type_check(closed.jaxpr)


def _vmap_spec(name, fn, shapes, samplers):
    return OpSpec(f"vmap_{name}", fn, len(samplers), samplers, ref=fn, shapes=shapes)


IDX4 = int_values(-4, 3, I64)
# Small specs for tests/test_vmap.py's table too: each batching pattern of gather (operand,
# indices, both) and scatter_add (operand, indices, updates, all) occurs.
VMAP_SPECS = [
    # x may be a NumPy array (unbatched) and i a tracer: NumPy's x[i] cannot take a tracer,
    # fnp.at(x)[i].get() can
    _vmap_spec("getitem_traced", lambda x, i: _at("get", x, i), [((4, 3), (2, 2)), ((4,), ())],
               (NORMAL, IDX4)),
    _vmap_spec("getitem_two_traced", lambda x, i, j: _at("get", x, (slice(None), i, j)),
               [((2, 4, 4), (3,), (2, 1))],
               (NORMAL, IDX4, IDX4)),
    _vmap_spec("getitem_non_adjacent", lambda x, i: _at("get", x, (i, slice(None), A([0, 1]))),
               [((4, 3, 2), (2,))], (NORMAL, IDX4)),
    _vmap_spec("take_axis1", lambda x, i: fnp.take(x, i, axis=1), [((3, 4), (2, 3))],
               (NORMAL, IDX4)),
    _vmap_spec("at_add", lambda x, i, v: _at("add", x, i, v), [((4, 2), (3,), (3, 2))],
               (NORMAL, IDX4, NORMAL)),
    _vmap_spec("at_set", lambda x, i, v: _at("set", x, (slice(1, None), i), v),
               [((3, 4), (5,), (2, 5))], (NORMAL, IDX4, NORMAL)),
    _vmap_spec("at_multiply", lambda x, i, v: _at("multiply", x, i, v),
               [((4,), (6,), (6,))], (NORMAL, IDX4, NORMAL)),
    _vmap_spec("take_along_axis", lambda x, i: fnp.take_along_axis(x, i, axis=0),
               [((4, 3), (2, 3))], (NORMAL, IDX4)),
]

IN_AXES = {
    1: [(0,), (-1,)],
    2: [(0, 0), (0, None), (None, 0), (-1, 1), (1, -1)],
    3: [(0, 0, 0), (0, None, None), (None, 0, None), (None, None, 0), (1, None, 0),
        (None, -1, 1)],
}


@pytest.mark.parametrize("spec", VMAP_SPECS, ids=lambda s: s.name)
def test_vmap_matches_loop(spec):
    """Batched operand, batched indices, batched updates, and all, at various axes."""
    for shapes in spec.grid():
        for dtype in FLOATS:
            for in_axes in IN_AXES[spec.nargs]:
                if any(ax is not None and ax > len(s) for ax, s in zip(in_axes, shapes)):
                    continue
                rng = np.random.default_rng(zlib.crc32(f"{spec.name}{in_axes}".encode()))
                examples = [tuple(sampler(rng, s, dtype) for sampler, s in
                                  zip(spec.samplers(), shapes)) for _ in range(3)]
                args = [examples[0][k] if ax is None else np.stack([e[k] for e in examples], ax)
                        for k, ax in enumerate(in_axes)]
                check_vmap(spec.fn, args, in_axes)


def test_vmap_of_grad_through_indexing():
    """Per-example gradients through fancy indexing and .at updates."""
    rng = np.random.default_rng(1)
    xs, idx = rng.normal(size=(3, 5)), A([[0, 4, 4], [1, 1, 2], [3, 0, 3]])

    def loss(x, i):
        return (x.at[i].multiply(2.0)[i] ** 2).sum() + fnp.take(x, i).sum()

    got = vmap(fgrad.grad(loss))(xs, idx)
    want = np.stack([fgrad.grad(loss)(x, i) for x, i in zip(xs, idx)])
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ============================================================================ lax level


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_scatter_add_are_transposes(axis):
    """<scatter_add(0, i, u), x> == <u, gather(x, i)>, and the vjp of each is the other,
    at several axes, with repeated and out-of-range (clamped) indices."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 2))
    n = x.shape[axis]
    i = A([[0, n - 1, 0], [-1, n + 3, -n - 5]])
    u = rng.normal(size=np.take(x, np.zeros((2, 3), int), axis=axis).shape)
    lhs = np.vdot(lax.scatter_add(np.zeros_like(x), i, u, axis), x)
    rhs = np.vdot(u, lax.gather(x, i, axis))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
    _, vjp_fn = fgrad.vjp(lambda x: lax.gather(x, i, axis), x)
    np.testing.assert_allclose(vjp_fn(u)[0], lax.scatter_add(np.zeros_like(x), i, u, axis))
    _, vjp_fn = fgrad.vjp(lambda x, u: lax.scatter_add(x, i, u, axis), x, u)
    ct_x, ct_u = vjp_fn(x)
    np.testing.assert_array_equal(ct_x, x)
    np.testing.assert_allclose(ct_u, lax.gather(x, i, axis))
    check_grads(lambda x, u: lax.scatter_add(x, i, u, axis) * lax.gather(x, i, axis).sum(),
                (x, u), order=2)


def test_gather_clamps_out_of_range_indices():
    x = np.arange(4.0)
    np.testing.assert_array_equal(lax.gather(x, A([-1, -4, -5, 4, 100]), 0), [3, 0, 0, 3, 3])
    np.testing.assert_array_equal(lax.scatter_add(np.zeros(4), A([-1, 9, -9]), np.ones(3), 0),
                                  [1, 0, 0, 2])
    # traced indices in fgrad.numpy follow the primitive (they cannot be checked)
    got = vmap(lambda i: fnp.take(x, i))(A([[5], [-7]]))
    np.testing.assert_array_equal(got, [[3.0], [0.0]])
    got = make_jaxpr(lambda i: fnp.at(x)[i].get())(A([9]))
    np.testing.assert_array_equal(eval_jaxpr(got.jaxpr, got.consts, A([9]))[0], [3.0])
    # batched indices clamp per member (not into the neighbouring member)
    xs = np.arange(8.0).reshape(2, 4)
    np.testing.assert_array_equal(vmap(lambda x, i: lax.gather(x, i, 0))(xs, A([[7], [-9]])),
                                  [[3.0], [4.0]])
    np.testing.assert_array_equal(
        vmap(lambda x, i: lax.scatter_add(x, i, np.ones(1), 0))(xs, A([[7], [-9]])),
        [[0, 1, 2, 4], [5, 5, 6, 7]])


def test_lax_gather_scatter_jaxpr_and_errors():
    closed = make_jaxpr(lambda x, i: lax.scatter_add(x, i, lax.gather(x, i, 1), 1))(
        np.ones((2, 3), np.float32), A([[0, 1]], np.int32))
    type_check(closed.jaxpr)
    assert [e.primitive.name for e in closed.eqns] == ["gather", "scatter_add"]
    assert closed.out_avals[0].dtype == F32
    with pytest.raises(TypeError, match="indices must be integers"):
        lax.gather(np.ones(3), np.ones(2), 0)
    with pytest.raises(TypeError, match="axis 1 is out of range"):
        make_jaxpr(lambda x: lax.gather(x, A([0]), 1))(np.ones(3))
    with pytest.raises(TypeError, match="updates must have"):
        make_jaxpr(lambda x: lax.scatter_add(x, A([0, 1]), np.ones(3), 0))(np.ones(3))
    with pytest.raises(TypeError, match="updates must have"):
        make_jaxpr(lambda x: lax.scatter_add(x, A([0, 1]), np.ones(2, np.float32), 0))(
            np.ones(3))
    with pytest.raises(TypeError, match="size 0"):
        make_jaxpr(lambda i: lax.gather(np.ones(0), i, 0))(A([0]))


# ============================================================================ errors


X34 = np.arange(12.0).reshape(3, 4)


@pytest.mark.parametrize("index, exc, match", [
    (A([0, 3]), IndexError, "index 3 is out of bounds for axis 0 with size 3"),
    ((slice(None), A([-5])), IndexError, "index -5 is out of bounds for axis 1 with size 4"),
    ((0, 4), IndexError, "index 4 is out of bounds"),
    (A([0.0, 1.0]), IndexError, "integer \\(or boolean\\) type"),
    (1.0, IndexError, "only integers, slices"),
    ("a", IndexError, "only integers, slices"),
    (A([True, False]), IndexError, "boolean index did not match indexed array along axis 0; "
                                   "size of axis is 3 but size of corresponding boolean axis is 2"),
    ((slice(None), A([True])), IndexError, "along axis 1"),
    ((A([0, 1]), A([0, 1, 2])), IndexError, "could not be broadcast together"),
    ((0, 0, 0), IndexError, "too many indices"),
    ((Ellipsis, 0, Ellipsis), IndexError, "single ellipsis"),
    (True, IndexError, "boolean scalar"),
], ids=str)
def test_bad_indices(index, exc, match):
    with pytest.raises(exc, match=match):
        fnp._indexing.getitem(X34, index)
    with pytest.raises(exc, match=match):  # the same under a transform with concrete values
        fgrad.jvp(lambda x: x[index], (X34,), (X34,))
    with pytest.raises(exc, match=match):
        fnp.at(X34)[index].set(0.0)


def test_traced_mask_raises_pointing_to_where():
    for transform in (make_jaxpr, vmap):
        with pytest.raises(ConcretizationError, match="fgrad.numpy.where"):
            transform(lambda x: x[x > 0])(X34)
        with pytest.raises(ConcretizationError, match="boolean mask"):
            transform(lambda x: x.at[x > 0].set(0.0))(X34)
    # a concrete mask, even computed under grad, works
    g = fgrad.grad(lambda x: (x[x > 5.0] ** 2).sum())(X34)
    np.testing.assert_array_equal(g, np.where(X34 > 5.0, 2 * X34, 0.0))


def test_bad_take_and_updates():
    with pytest.raises(IndexError, match="index 5 is out of bounds for axis 1 with size 4"):
        fnp.take(X34, 5, axis=1)  # NumPy's message
    with pytest.raises(np.exceptions.AxisError):
        fnp.take(X34, 0, axis=2)
    with pytest.raises(ValueError, match="mode"):
        fnp.take(X34, 0, mode="fill")
    with pytest.raises(IndexError, match="integer"):
        fnp.take(X34, np.ones(2))
    with pytest.raises(IndexError, match="empty"):
        fnp.take(np.ones((3, 0)), A([0]), axis=1)
    with pytest.raises(ValueError, match="could not broadcast input array from shape \\(3,\\) "
                                         "into shape \\(2, 4\\)"):
        fnp.at(X34)[A([0, 1])].set(np.ones(3))
    with pytest.raises(ValueError, match="could not broadcast"):
        fnp.at(X34)[0].add(np.ones((2, 4)))
    np.testing.assert_array_equal(fnp.at(X34)[0].set(np.ones((1, 1, 4))), np.r_[[np.ones(4)],
                                                                              X34[1:]])
    with pytest.raises(TypeError, match="immutable.*x.at\\[i\\].set"):
        fgrad.grad(lambda x: x.__setitem__(0, 1.0))(X34)
    with pytest.raises(ValueError, match="same number of dimensions"):
        fnp.take_along_axis(X34, A([0]), axis=0)
    with pytest.raises(IndexError, match="out of bounds"):
        fnp.take_along_axis(X34, A([[3]]), axis=0)
