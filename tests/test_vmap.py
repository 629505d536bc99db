"""vmap: every batching rule against a Python loop over the batch, out_axes, the staged
IR (one batched equation per primitive, however large the batch), composition with the
other transforms, random programs (Hypothesis) and bad input.

The reference for `vmap(f, in_axes)(*xs)` is always `f` applied to each example in a
Python loop, the results stacked on a new axis (then moved to `out_axes`). The op-spec
tables of tests/test_numpy.py and tests/test_lax.py drive the per-primitive checks:
each spec runs with in_axes 0, 1, -1, "batch axis last", None for some arguments
((0, None), (None, 1), ... ) and a seeded mixture, at batch sizes 3 and 1.
"""

from __future__ import annotations

import collections
import itertools
import zlib

import numpy as np
import pytest
import test_indexing
import test_lax
import test_numpy
import test_shapes
from _opspec import REDUCTION_TOL, OpSpec, assert_same, uniform
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import grad, hessian, jacfwd, jacrev, jvp, lax, make_jaxpr, vjp, vmap
from fgrad.core import Primitive, eval_jaxpr
from fgrad.ir import check_jaxpr as type_check_jaxpr
from fgrad.tree_util import tree_flatten, tree_leaves, tree_map, tree_structure

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

# ============================================================================ helpers


def _sample(spec: OpSpec, shapes, dtype, rng):
    """One example: a tuple of arguments for `spec.fn`."""
    if spec.joint is not None:
        return tuple(spec.joint(rng, shapes, dtype))
    return tuple(s(rng, shape, dtype) for s, shape in zip(spec.samplers(), shapes))


def _batch(examples, in_axes):
    """Stack the examples' arguments along each argument's axis; an argument with axis
    None is shared: example 0's value."""
    out = []
    for i, ax in enumerate(in_axes):
        if ax is None:
            out.append(examples[0][i])
        else:
            out.append(np.stack([np.asarray(ex[i]) for ex in examples], axis=ax))
    return out


def loop(fn, args, in_axes, size, out_axes=0):
    """The reference: `fn` on each example in a Python loop, results stacked along a new
    axis at `out_axes` (an int, or a pytree prefix of the output with ints)."""
    outs = []
    for b in range(size):
        outs.append(fn(*[a if ax is None else np.take(a, b, axis=ax)
                         for a, ax in zip(args, in_axes)]))
    stacked = tree_map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *outs)
    leaves, tree = tree_flatten(stacked)
    axes = fgrad.tree_util.broadcast_prefix(out_axes, fgrad.tree_util.tree_unflatten(
        tree, list(range(len(leaves)))))
    moved = [np.moveaxis(x, 0, ax) for x, ax in zip(leaves, axes)]
    return fgrad.tree_util.tree_unflatten(tree, moved)


def _tol(dtype) -> float:
    """Batched and looped evaluation run the same NumPy kernels on the same values; only
    the accumulation order of a reduction or a BLAS product can differ."""
    return REDUCTION_TOL.get(np.dtype(dtype), 0.0)


def assert_tree_same(got, want, what="", rtol=0.0):
    """Same structure; each leaf a NumPy value of the reference's shape and dtype with
    the same values (to rounding: at least `rtol`, or that of the leaf's dtype)."""
    assert tree_structure(got) == tree_structure(want), (
        f"{what}: structure {tree_structure(got)}, the loop gives {tree_structure(want)}")
    for g, w in zip(tree_leaves(got), tree_leaves(want)):
        w = np.asarray(w)
        assert_same(g, w, rtol=max(rtol, _tol(w.dtype)), what=what)


def check_vmap(fn, args, in_axes, out_axes=0, what=""):
    """vmap(fn, in_axes, out_axes)(*args) equals the loop, leaf by leaf; returns it."""
    size = None
    flat_axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    for a, ax in zip(args, flat_axes):
        if ax is not None:
            size = np.shape(a)[ax]
    with np.errstate(all="ignore"):
        want = loop(fn, args, flat_axes, size, out_axes)
        got = vmap(fn, in_axes=in_axes, out_axes=out_axes)(*args)
    # float32 inputs may feed a float64 result: their rounding counts too
    rtol = max([_tol(np.asarray(a).dtype) for a in tree_leaves(list(args))], default=0.0)
    assert_tree_same(got, want, what=what, rtol=rtol)
    return got


# ============================================================================ the op-spec sweep

OPERATOR_SPECS = [
    OpSpec(f"operator_{name}", fn, 2, uniform(-1.0, 1.0), ref=fn, shapes=[((3, 4), (3, 4))])
    for name, fn in test_numpy.OPERATORS
]
# `x.dot(y)` with x a NumPy array is NumPy's own method, which cannot take a traced y (as
# with JAX): the first operand must be mapped.
TRACED_FIRST = {"operator_dot"}
TABLES = {
    "numpy": test_numpy.ALL_SPECS + OPERATOR_SPECS,
    "lax": test_lax.ALL_SPECS,
    "indexing": test_indexing.VMAP_SPECS,  # gather / scatter_add in each batching pattern
    "shapes": test_shapes.VMAP_SPECS,
}


def in_axes_configs(shapes, seed: int) -> list[tuple]:
    """in_axes to try for per-example argument shapes: all 0, all -1, 1 where the rank
    allows, the batch axis last (a positive index past the example's axes), each
    argument alone mapped (the others None: (0, None), (None, 1), ...), and a seeded
    mixture of 0 / 1 / -1 / None."""
    n, ranks = len(shapes), [len(s) for s in shapes]
    configs = [(0,) * n, (-1,) * n, tuple(min(r, 1) for r in ranks), tuple(ranks)]
    if n > 1:
        for i in range(n):
            ax = 0 if i == 0 else (1 if ranks[i] >= 1 else -1)
            configs.append(tuple(ax if j == i else None for j in range(n)))
        rng = np.random.default_rng(seed)
        while True:
            mixed = tuple([None, 0, -1, min(1, r)][rng.integers(4)] for r in ranks)
            if any(ax is not None for ax in mixed):
                break
        configs.append(mixed)
    return list(dict.fromkeys(configs))  # unique, in order


def spec_configs(spec, shapes, seed: int) -> list[tuple]:
    configs = in_axes_configs(shapes, seed)
    if spec.name in TRACED_FIRST:
        configs = [c for c in configs if c[0] is not None]
    return configs


def sweep_cases(spec):
    """(shapes, dtype, full) for one spec: every shape of its grid in its first dtype
    (float32 for float specs: vmap must keep it), and the representative shape in each
    other dtype. The representative shape in the first dtype is `full`: every in_axes
    configuration, at batch sizes 3 and 1; the other cases try a few (the batch axis
    last, the last argument alone mapped, the mixture) at batch size 3."""
    out = []
    for i, shapes in enumerate(spec.grid()):
        for j, dtype in enumerate(spec.dtypes if i == 0 else spec.dtypes[:1]):
            out.append((shapes, np.dtype(dtype), i == 0 and j == 0))
    return out


SPECS = [pytest.param(spec, id=f"{table}-{spec.name}")
         for table, specs in TABLES.items() for spec in specs]


def run_spec(spec, shapes, dtype, full=True):
    case = f"{spec.name}|{shapes}|{dtype.name}"
    configs = spec_configs(spec, shapes, zlib.crc32(case.encode()))
    if not full:
        ranks = tuple(len(s) for s in shapes)
        keep = [ranks] + (configs[-2:] if len(shapes) > 1 else [])
        configs = [c for c in configs if c in keep]
    for k, in_axes in enumerate(configs):
        single = sum(ax is not None for ax in in_axes) == 1 and len(in_axes) > 1
        sizes = (3, 1) if full and (k == 0 or single) else (3,)
        for size in sizes:
            rng = np.random.default_rng(zlib.crc32(f"{case}|{in_axes}|{size}".encode()))
            examples = [_sample(spec, shapes, dtype, rng) for _ in range(size)]
            args = _batch(examples, in_axes)
            check_vmap(spec.fn, args, in_axes,
                       what=f"{spec.name} shapes={shapes} {dtype.name} in_axes={in_axes} "
                            f"batch={size}")


@pytest.mark.parametrize("spec", SPECS)
def test_spec_matches_loop(spec):
    """vmap(spec.fn, in_axes) against the loop, over the spec's shapes and dtypes; the
    result has the loop's dtype (float32 stays float32)."""
    for shapes, dtype, full in sweep_cases(spec):
        run_spec(spec, shapes, dtype, full)


def _lax_primitives() -> list[Primitive]:
    return [v for v in vars(lax.lax).values() if isinstance(v, Primitive)]


def test_every_batching_rule_is_exercised(monkeypatch):
    """Across the tables' representative cases, every primitive's batching rule runs,
    and a rule of several operands runs with all of them batched and with each one
    alone batched (x only / y only / both for dot_general, pad with only the padding
    value batched, concatenate with unbatched operands, ...). iota has no operands: it
    is never batched (tested inside a vmapped function below)."""
    seen = collections.defaultdict(set)
    for prim in _lax_primitives():
        if prim.batch is None:
            continue

        def recording(vals, dims, *, _rule=prim.batch, _name=prim.name, **params):
            seen[_name].add(tuple(d is not None for d in dims))
            return _rule(vals, dims, **params)

        monkeypatch.setattr(prim, "batch", recording)
    for specs in TABLES.values():
        for spec in specs:
            shapes = spec.grid()[0]
            rng = np.random.default_rng(0)
            example = _sample(spec, shapes, np.dtype(spec.dtypes[0]), rng)
            for in_axes in spec_configs(spec, shapes, 0):
                with np.errstate(all="ignore"):
                    vmap(spec.fn, in_axes=in_axes)(*_batch([example, example], in_axes))
    never = {p.name for p in _lax_primitives()} - set(seen)
    assert never == {"iota"}, f"batching rules never exercised by the tables: {never}"
    missing = {}
    for name, patterns in seen.items():
        for n in {len(p) for p in patterns if len(p) > 1}:
            want = {(True,) * n} | {tuple(j == i for j in range(n)) for i in range(n)}
            if not want <= patterns:
                missing[(name, n)] = sorted(want - patterns)
    assert not missing, f"operand batching patterns never exercised: {missing}"
    assert {p.name for p in _lax_primitives() if p.batch is None} == {"iota"}


# ============================================================================ lax-level cases


def test_iota_and_full_inside_vmap():
    """iota has no operands: inside vmap it stays unbatched and mixes with batched values;
    lax.full with a batched fill value is batched."""
    xs = np.arange(24.0).reshape(2, 3, 4)

    def f(x):
        counts = lax.iota(np.float64, (3, 4), 1)
        rows = lax.convert_element_type(lax.iota(np.int32, (3, 4), 0), np.float64)
        return x * counts + rows + lax.full((2,), x[0, 0], np.float64).sum()

    check_vmap(f, [xs], 0)
    check_vmap(f, [np.moveaxis(xs, 0, -1)], -1)
    out = vmap(lambda s: lax.full((3,), s, np.float32))(np.array([1.0, 2.0]))
    assert out.dtype == F32
    np.testing.assert_array_equal(out, [[1, 1, 1], [2, 2, 2]])
    only_iota = vmap(lambda x: lax.iota(np.int32, (3,), 0))(xs)  # an unbatched output
    assert only_iota.dtype == np.int32
    np.testing.assert_array_equal(only_iota, [[0, 1, 2]] * 2)


DOT_NUMBERS = [  # (dimension_numbers, x shape, y shape)
    ((((1,), (0,)), ((), ())), (3, 4), (4, 2)),
    ((((0, 2), (2, 0)), ((), ())), (4, 3, 2), (2, 5, 4)),  # odd contraction order
    ((((2,), (0,)), ((1,), (1,))), (3, 2, 4), (4, 2, 5)),  # a batch axis in the middle
    ((((1,), (2,)), ((2, 0), (0, 1))), (3, 4, 2), (2, 3, 4)),  # two batch axes, swapped
    ((((), ()), ((), ())), (3,), (2,)),  # outer product
]


@pytest.mark.parametrize("size", [1, 3])
@pytest.mark.parametrize("in_axes", [(0, 0), (0, None), (None, 0), (2, 1), (None, -1),
                                     (-1, None), (1, -1)], ids=str)
@pytest.mark.parametrize("numbers, x_shape, y_shape", DOT_NUMBERS,
                         ids=[f"dot{i}" for i in range(len(DOT_NUMBERS))])
def test_dot_general_batching(numbers, x_shape, y_shape, in_axes, size):
    """x only, y only and both batched, at every position, with batch dimensions and
    contractions in odd orders; one dot_general in the staged program."""
    rng = np.random.default_rng(zlib.crc32(f"{numbers}{in_axes}{size}".encode()))
    in_axes = tuple(None if ax is None else min(ax, len(s)) if ax >= 0 else ax
                    for ax, s in zip(in_axes, (x_shape, y_shape)))
    examples = [(rng.normal(size=x_shape), rng.normal(size=y_shape)) for _ in range(size)]
    args = _batch(examples, in_axes)

    def f(x, y):
        return lax.dot_general(x, y, numbers)

    check_vmap(f, args, in_axes)
    names = [e.primitive.name for e in make_jaxpr(vmap(f, in_axes))(*args).eqns]
    assert names.count("dot_general") == 1, names
    assert set(names) <= {"dot_general", "transpose"}, names


def test_pad_with_batched_padding_value():
    """The padding value batched alone, with the operand, or not at all; interior and
    negative (cropping) configs."""
    rng = np.random.default_rng(3)
    config = ((1, -1, 1), (-1, 2, 2))
    x, pv = rng.normal(size=(3, 4)), rng.normal(size=(5,))

    def f(x, p):
        return lax.pad(x, p, config)

    got = check_vmap(f, [x, pv], (None, 0))
    for b in range(5):  # the padding positions hold member b's value, the rest x's
        inside = np.asarray(lax.pad(np.ones((3, 4)), 0.0, config)).astype(bool)
        np.testing.assert_array_equal(got[b][~inside], pv[b])
        np.testing.assert_array_equal(got[b][inside], np.asarray(f(x, 0.0))[inside])
    check_vmap(f, [rng.normal(size=(3, 5, 4)), pv], (1, 0))
    check_vmap(f, [rng.normal(size=(3, 4, 5)), 0.5], (-1, None))


def test_concatenate_with_unbatched_operands():
    rng = np.random.default_rng(4)
    a, b, c = rng.normal(size=(2, 3)), rng.normal(size=(4, 2, 1)), rng.normal(size=(2, 2))

    def f(a, b, c):
        return lax.concatenate([a, b, c], 1)

    check_vmap(f, [a, b, c], (None, 0, None))
    check_vmap(f, [np.stack([a] * 4, -1), b, c], (-1, 0, None))


# ============================================================================ dtypes


@pytest.mark.parametrize("dtype", [F32, F64], ids=lambda d: d.name)
def test_dtypes_are_kept(dtype):
    """float32 stays float32 (weak Python scalars do not widen it), integers and bools
    keep their dtypes, and an unbatched float32 constant output stays float32."""
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    out = vmap(lambda v: fnp.sin(v) * 2.0 + 1 - fnp.sum(v) / 3)(x)
    assert out.dtype == dtype
    assert vmap(lambda v, s: v * s, in_axes=(0, None))(x, 2.5).dtype == dtype
    assert vmap(lambda v: v.astype(np.int32))(x).dtype == np.int32
    assert vmap(lambda v: v > 1.0)(x).dtype == np.bool_
    assert vmap(lambda v: fnp.argmax(v))(x).dtype == np.argmax(x[0]).dtype
    assert vmap(lambda v: np.ones(2, dtype))(x).dtype == dtype
    per_example = vmap(grad(lambda w, v: fnp.sum(fnp.tanh(w * v))), in_axes=(None, 0))
    assert per_example(np.ones(3, dtype), x).dtype == dtype
    assert vmap(lambda v: v * 2)(np.arange(3)).dtype == np.arange(3).dtype


# ============================================================================ out_axes


X234 = np.random.default_rng(5).normal(size=(2, 3, 4))


@pytest.mark.parametrize("out_axes", [0, 1, 2, -1, -2, -3])
@pytest.mark.parametrize("in_axes", [0, 1, -1])
def test_out_axes_place_the_batch_axis(in_axes, out_axes):
    def f(x):
        return fnp.sin(x) * fnp.sum(x)

    got = check_vmap(f, [X234], in_axes, out_axes)
    size = X234.shape[in_axes]
    assert got.shape[out_axes] == size
    # the batch axis is where out_axes says: moving it back gives the looped results
    for b in range(size):
        np.testing.assert_allclose(np.take(got, b, axis=out_axes),
                                   f(np.take(X234, b, axis=in_axes)), rtol=1e-12)


def test_out_axes_for_unbatched_outputs():
    """An output that does not depend on the mapped inputs: out_axes=None returns it as
    computed once; an int broadcasts it along a new axis there."""
    c = np.array([1.0, 2.0])

    def f(x, c):
        return x.sum(), c * 2.0, 3.0

    got = vmap(f, in_axes=(0, None), out_axes=(0, None, None))(X234, c)
    np.testing.assert_allclose(got[0], X234.sum(axis=(1, 2)))
    np.testing.assert_array_equal(got[1], c * 2.0)
    assert np.shape(got[2]) == () and got[2] == 3.0
    got = vmap(f, in_axes=(0, None), out_axes=(0, 1, -1))(X234, c)
    np.testing.assert_array_equal(got[1], np.stack([c * 2.0] * 2, axis=1))
    np.testing.assert_array_equal(got[2], [3.0, 3.0])
    assert got[1].flags.writeable and got[2].flags.writeable
    check_vmap(f, [X234, c], (1, None), (0, 1, -1))


def test_out_axes_pytree_prefixes():
    def f(x):
        return {"a": x, "b": (x.sum(axis=0), [x * 2.0, x.T])}

    check_vmap(f, [X234], 0, {"a": 1, "b": -1})
    check_vmap(f, [X234], 1, {"a": 0, "b": (0, [2, 1])})
    check_vmap(f, [X234], -1, {"a": -1, "b": (1, 0)})
    got = vmap(f, out_axes={"a": 2, "b": (0, [-1, 0])})(X234)
    assert got["a"].shape == (3, 4, 2)
    assert got["b"][1][0].shape == (3, 4, 2) and got["b"][1][1].shape == (2, 4, 3)


def test_in_axes_pytree_prefixes():
    """in_axes as a prefix of the arguments: per-argument entries, dicts and lists inside,
    None for a whole subtree, a list at the top level."""
    rng = np.random.default_rng(6)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=(2,))}
    xs = rng.normal(size=(4, 3))
    pairs = [rng.normal(size=(2, 4)), rng.normal(size=(4, 2))]

    def f(p, x, pair):
        return fnp.tanh(x @ p["w"] + p["b"]) * pair[0] + pair[1], {"x": x}

    for in_axes in [(None, 0, [1, 0]), [None, 0, [1, 0]], ({"w": None, "b": None}, 0, [1, 0])]:
        got = vmap(f, in_axes=in_axes)(params, xs, pairs)
        want = [f(params, xs[b], [pairs[0][:, b], pairs[1][b]]) for b in range(4)]
        np.testing.assert_allclose(got[0], np.stack([w[0] for w in want]), rtol=1e-12)
        np.testing.assert_array_equal(got[1]["x"], xs)
    batched_params = {"w": np.stack([params["w"]] * 4, -1), "b": params["b"]}
    got = vmap(f, in_axes=({"w": -1, "b": None}, 0, [1, 0]))(batched_params, xs, pairs)
    np.testing.assert_allclose(got[0], vmap(f, in_axes=(None, 0, [1, 0]))(params, xs, pairs)[0],
                               rtol=1e-12)


# ============================================================================ the staged program


def _eqn_names(closed) -> list[str]:
    return [e.primitive.name for e in closed.eqns]


@pytest.mark.parametrize("spec", SPECS)
def test_staged_program_does_not_grow_with_the_batch(spec):
    """make_jaxpr(vmap(f)) at batch 2 and 5: the same equations (one batched primitive
    where the function has one, no per-example unrolling), a well-typed program whose
    outputs carry the batch axis, and that evaluates to the eager vmap."""
    shapes, dtype = spec.grid()[0], np.dtype(spec.dtypes[0])
    configs = spec_configs(spec, shapes, 0)
    for in_axes in (configs[0], configs[-1]):
        programs = {}
        for size in (2, 5):
            rng = np.random.default_rng(size)
            args = _batch([_sample(spec, shapes, dtype, rng) for _ in range(size)], in_axes)
            fn = vmap(spec.fn, in_axes=in_axes)
            with np.errstate(all="ignore"):
                closed = make_jaxpr(fn)(*args)
                eager = tree_leaves(fn(*args))
                staged = eval_jaxpr(closed.jaxpr, closed.consts, *args)
            type_check_jaxpr(closed.jaxpr)
            assert [a.shape for a in closed.out_avals] == [np.shape(e) for e in eager]
            assert all(np.shape(e)[0] == size for e in eager)
            for s, e in zip(staged, eager):
                assert_same(np.asarray(s), e, rtol=_tol(np.asarray(e).dtype),
                            what=f"{spec.name}: eval_jaxpr of the batched program")
            programs[size] = _eqn_names(closed)
        assert programs[2] == programs[5], (
            f"{spec.name} in_axes={in_axes}: the program changes with the batch size:\n"
            f"batch 2: {programs[2]}\nbatch 5: {programs[5]}")


def test_staged_program_is_the_batched_program():
    """A small network: the batched program has exactly the unbatched program's
    primitives, each once, on arrays with the batch axis."""

    def f(x, w):
        return fnp.tanh(x @ w).sum() + fnp.max(x)

    w = np.ones((3, 4))
    one = make_jaxpr(f)(np.ones(3), w)
    for size in (2, 7):
        batched = make_jaxpr(vmap(f, in_axes=(0, None)))(np.ones((size, 3)), w)
        assert _eqn_names(batched) == _eqn_names(one), str(batched)
        for eqn in batched.eqns:
            assert eqn.outvars[0].aval.shape[:1] == (size,), str(batched)
    text = str(make_jaxpr(vmap(f, in_axes=(0, None)))(np.ones((5, 3)), w))
    assert "f64[5,3]" in text and "f64[5,4]" in text


# ============================================================================ composition

RNG = np.random.default_rng(7)
W0 = RNG.normal(size=(3, 2))
XS = RNG.normal(size=(5, 3))
YS = RNG.normal(size=(5, 2))


def loss(w, x, y):
    return fnp.sum((fnp.tanh(x @ w) - y) ** 2)


def test_per_example_gradients():
    got = vmap(grad(loss), in_axes=(None, 0, 0))(W0, XS, YS)
    want = np.stack([grad(loss)(W0, x, y) for x, y in zip(XS, YS)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # the same with the batch along axis 1 of the inputs and out of the gradient
    got = vmap(grad(loss), in_axes=(None, 1, 1), out_axes=-1)(W0, XS.T, YS.T)
    np.testing.assert_allclose(got, np.moveaxis(want, 0, -1), rtol=1e-12, atol=1e-14)
    values, grads = vmap(fgrad.value_and_grad(loss, argnums=(0, 1)), (None, 0, 0))(W0, XS, YS)
    np.testing.assert_allclose(values, [loss(W0, x, y) for x, y in zip(XS, YS)], rtol=1e-12)
    np.testing.assert_allclose(grads[0], want, rtol=1e-12, atol=1e-14)
    assert grads[1].shape == XS.shape


def test_grad_of_a_sum_over_vmap():
    def total(w):
        return fnp.sum(vmap(loss, in_axes=(None, 0, 0))(w, XS, YS))

    want = sum(grad(loss)(W0, x, y) for x, y in zip(XS, YS))
    np.testing.assert_allclose(grad(total)(W0), want, rtol=1e-12, atol=1e-14)
    # closing over the differentiated value instead of passing it
    closed = lambda w: fnp.sum(vmap(lambda x, y: loss(w, x, y))(XS, YS))  # noqa: E731
    np.testing.assert_allclose(grad(closed)(W0), want, rtol=1e-12, atol=1e-14)
    # second order through vmap(grad)
    inner = lambda w: fnp.sum(vmap(grad(loss), (None, 0, 0))(w, XS, YS) ** 2)  # noqa: E731
    np.testing.assert_allclose(grad(inner)(W0), jacfwd(inner)(W0), rtol=1e-10, atol=1e-12)


def test_nested_vmap():
    a = RNG.normal(size=(3, 4, 5))

    def f(x):
        return fnp.sin(x) * fnp.sum(x)

    got = vmap(vmap(f))(a)
    np.testing.assert_allclose(got, [[f(v) for v in row] for row in a], rtol=1e-12)
    got = vmap(vmap(f, in_axes=1), in_axes=2)(a)  # inner maps axis 1 of the outer example
    want = [[f(a[:, j, k]) for j in range(4)] for k in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # the inner function closes over the outer example (unbatched in the inner vmap)
    outer = vmap(lambda x: vmap(lambda y: x * y + fnp.sum(x), in_axes=0)(a[0, 0]))(a[:, 0])
    want = [[x * y + np.sum(x) for y in a[0, 0]] for x in a[:, 0]]
    np.testing.assert_allclose(outer, want, rtol=1e-12)
    outer = vmap(lambda x: vmap(lambda y: (y, x * 2.0), out_axes=(0, None))(a[0, 0]))(a[:, 0, 0])
    np.testing.assert_array_equal(outer[1], a[:, 0, 0] * 2.0)
    assert outer[0].shape == (3, 5)


def f_vec(x):
    return fnp.sin(x) * fnp.sum(x ** 2) + x[::-1]


def test_jacfwd_of_vmap():
    xs = RNG.normal(size=(3, 2))
    jac = jacfwd(vmap(f_vec))(xs)  # (3, 2, 3, 2), block diagonal in the batch
    assert jac.shape == (3, 2, 3, 2)
    for b in range(3):
        for c in range(3):
            want = jacfwd(f_vec)(xs[b]) if b == c else np.zeros((2, 2))
            np.testing.assert_allclose(jac[b, :, c, :], want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jacrev(vmap(f_vec))(xs), jac, rtol=1e-12, atol=1e-14)


def test_vmap_of_jacobians():
    xs = RNG.normal(size=(4, 3))
    for jac in (jacfwd, jacrev):
        got = vmap(jac(f_vec))(xs)
        want = np.stack([jac(f_vec)(x) for x in xs])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        # with a basis built by hand: column j is the JVP along e_j
        for x, g in zip(xs, got):
            cols = [jvp(f_vec, (x,), (e,))[1] for e in np.eye(3)]
            np.testing.assert_allclose(g, np.stack(cols, axis=-1), rtol=1e-12, atol=1e-14)


def test_hessian_still_right():
    a = RNG.normal(size=(3, 3))

    def f(x):  # H = (A + A^T) / 2 + diag(12 x^2)
        return 0.5 * fnp.dot(x, a @ x) + fnp.sum(x ** 4)

    x = RNG.normal(size=3)
    want = (a + a.T) / 2 + np.diag(12 * x ** 2)
    np.testing.assert_allclose(hessian(f)(x), want, rtol=1e-12, atol=1e-12)
    xs = RNG.normal(size=(4, 3))
    got = vmap(hessian(f))(xs)
    np.testing.assert_allclose(got, [(a + a.T) / 2 + np.diag(12 * v ** 2) for v in xs],
                               rtol=1e-12, atol=1e-12)
    # a function of two matrices: the blocks of jacfwd(jacrev) and jacfwd(jacfwd) agree
    g = lambda u, v: fnp.sum(fnp.tanh(u @ v) ** 2)  # noqa: E731
    u, v = RNG.normal(size=(2, 3)), RNG.normal(size=(3, 2))
    h = hessian(g, argnums=(0, 1))(u, v)
    h2 = jacfwd(jacfwd(g, argnums=(0, 1)), argnums=(0, 1))(u, v)
    for i, j in itertools.product(range(2), range(2)):
        np.testing.assert_allclose(h[i][j], h2[i][j], rtol=1e-10, atol=1e-12)


def test_vmap_of_jvp_and_vjp():
    xs, ts = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))

    def f_jvp(x, t):
        return jvp(f_vec, (x,), (t,))

    check_vmap(f_jvp, [xs, ts], (0, 0))
    check_vmap(f_jvp, [xs[0], ts.T], (None, 1))  # many tangents at one point
    check_vmap(lambda x, c: vjp(f_vec, x)[1](c), [xs, ts], (0, 0))
    check_vmap(lambda x: fgrad.linearize(f_vec, x)[1](x), [xs], 0)
    # and the other way round: jvp / vjp of a vmapped function
    out, tan = jvp(vmap(f_vec), (xs,), (ts,))
    np.testing.assert_allclose(tan, [jvp(f_vec, (x,), (t,))[1] for x, t in zip(xs, ts)],
                               rtol=1e-12)
    (ct,) = vjp(vmap(f_vec), xs)[1](ts)
    np.testing.assert_allclose(ct, [vjp(f_vec, x)[1](t)[0] for x, t in zip(xs, ts)], rtol=1e-12)


def test_vmap_inside_grad_inside_vmap():
    """Per-example gradients of a loss that itself vmaps over a closed-over batch."""
    zs = RNG.normal(size=(3, 2))

    def inner(w, x):
        return fnp.sum(vmap(lambda z: fnp.tanh(x @ w + z))(zs) ** 2)

    got = vmap(grad(inner), in_axes=(None, 0))(W0, XS)
    want = np.stack([grad(inner)(W0, x) for x in XS])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# ============================================================================ random programs

OPS = ("sin", "mul", "add", "sum", "transpose", "reshape", "dot")


@st.composite
def programs(draw):
    """A per-example input shape, a few ops (each binary op or dot takes a fresh operand,
    drawn with its own in_axes), the in_axes of every input and a batch size."""
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    shapes, steps = [shape], []
    for op in draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=5)):
        if op == "sin":
            steps.append((op, None))
        elif op in ("mul", "add"):  # the operand's shape is a suffix of x's (broadcasting)
            k = draw(st.integers(0, len(shape)))
            shapes.append(shape[k:])
            steps.append((op, None))
        elif op == "sum":
            axis = draw(st.integers(0, len(shape) - 1)) if shape else None
            steps.append((op, axis))
            shape = shape[:axis] + shape[axis + 1:] if shape else shape
        elif op == "transpose":
            perm = tuple(draw(st.permutations(range(len(shape)))))
            steps.append((op, perm))
            shape = tuple(shape[p] for p in perm)
        elif op == "reshape":
            new = draw(st.sampled_from([(-1,), shape[::-1], (1, *shape)]))
            steps.append((op, new))
            shape = (int(np.prod(shape)),) if new == (-1,) else new
        else:  # dot with a (last axis, k) matrix, or a vector for a scalar x
            k = draw(st.integers(1, 3))
            shapes.append((shape[-1], k) if shape else (k,))
            steps.append((op, None))
            shape = shape[:-1] + (k,)
    axes = []
    for s in shapes:
        axes.append(draw(st.sampled_from([None, 0, -1, len(s), *range(1, len(s))])))
    if all(ax is None for ax in axes):
        axes[0] = 0
    return shapes, steps, tuple(axes), draw(st.integers(1, 3))


def run_program(steps, x, *operands):
    operands = iter(operands)
    for op, arg in steps:
        if op == "sin":
            x = fnp.sin(x)
        elif op == "mul":
            x = x * next(operands)
        elif op == "add":
            x = fnp.add(x, next(operands))
        elif op == "sum":
            x = fnp.sum(x, axis=arg)
        elif op == "transpose":
            x = fnp.transpose(x, arg)
        elif op == "reshape":
            x = fnp.reshape(x, arg)
        else:
            x = fnp.dot(x, next(operands))
    return x


@given(program=programs(), seed=st.integers(0, 2**16))
def test_random_programs_match_the_loop(program, seed):
    shapes, steps, in_axes, size = program
    rng = np.random.default_rng(seed)
    examples = [tuple(rng.normal(size=s) for s in shapes) for _ in range(size)]
    args = _batch(examples, in_axes)

    def f(*xs):
        return run_program(steps, *xs)

    check_vmap(f, args, in_axes, what=f"steps={steps} in_axes={in_axes} batch={size}")


# ============================================================================ bad input


class Counter:
    """A function that counts its calls: errors about in_axes come before tracing."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


X32 = np.ones((3, 2))

BAD_IN_AXES = {  # name: (in_axes, args, exception, message pattern)
    "tuple_too_short": ((0,), (X32, X32), ValueError,
                        r"in_axes has 1 entries but the function was called with 2 positional"),
    "tuple_too_long": ((0, None, 0), (X32, X32), ValueError,
                       r"in_axes has 3 entries .* 2 positional"),
    "dict_for_list": (({"a": 0},), ([X32, X32],), ValueError,
                      r"in_axes=\(\{'a': 0\},\) is not a prefix of the structure of the "
                      r"arguments"),
    "dict_at_top_level": ({"a": 0}, ([X32, X32],), ValueError, r"is not a prefix"),
    "list_for_dict": (([0, 0],), ({"a": X32, "b": X32},), ValueError, r"is not a prefix"),
    "axis_too_large": (2, (X32,), ValueError,
                       r"in_axes axis 2 is out of range for argument .*shape \(3, 2\).* rank 2"),
    "axis_too_negative": ((0, -3), (X32, X32), ValueError,
                          r"in_axes axis -3 is out of range for argument 1 .*\(3, 2\)"),
    "axis_in_a_pytree": (({"w": 3},), ({"w": X32},), ValueError,
                         r"in_axes axis 3 is out of range for leaf 0 of argument 0 of shape "
                         r"\(3, 2\)"),
    "scalar_mapped": (0, (1.0,), ValueError, r"in_axes axis 0 is out of range .*rank 0"),
    "sizes_differ": (0, (X32, np.ones((4, 2))), ValueError,
                     r"different sizes: argument 0 of shape \(3, 2\) has size 3 along axis 0; "
                     r"argument 1 of shape \(4, 2\) has size 4 along axis 0"),
    "sizes_differ_axes": ((1, 0), (X32, X32), ValueError,
                          r"argument 0 .*size 2 along axis 1; argument 1 .*size 3 along axis 0"),
    "sizes_differ_in_a_pytree": (({"a": 0, "b": 1},), ({"a": X32, "b": X32},), ValueError,
                                 r"leaf 0 of argument 0 of shape \(3, 2\) has size 3 along axis 0; "
                                 r"leaf 1 of argument 0 of shape \(3, 2\) has size 2 along axis 1"),
    "nothing_mapped": (None, (X32,), ValueError, r"maps no argument"),
    "nothing_mapped_tuple": ((None, None), (X32, X32), ValueError, r"maps no argument"),
    "no_arguments": (0, (), ValueError, r"maps no argument"),
    "float_entry": (0.0, (X32,), TypeError, r"in_axes entries must be int or None, got 0\.0"),
    "str_entry": (("a",), (X32,), TypeError, r"in_axes entries must be int or None, got 'a'"),
    "bool_entry": ((True,), (X32,), TypeError, r"must be int or None, got True"),
}


@pytest.mark.parametrize("in_axes, args, exc, match", list(BAD_IN_AXES.values()),
                         ids=list(BAD_IN_AXES))
def test_bad_in_axes(in_axes, args, exc, match):
    fn = Counter(lambda *xs: xs)
    mapped = vmap(fn, in_axes=in_axes)  # the error comes at the call
    with pytest.raises(exc, match=match):
        mapped(*args)
    assert fn.calls == 0, "the function was traced before the arguments were checked"


BAD_OUT_AXES = {
    "none_for_batched": (None, lambda x: x * 2.0, ValueError,
                         r"out_axes=None for the output, which depends on the mapped inputs"),
    "none_in_a_tuple": ((0, None), lambda x: (x, x.sum()), ValueError,
                        r"out_axes=None for leaf 1 of the output, which depends on the mapped"),
    "too_large": (2, lambda x: x, ValueError,
                  r"out_axes axis 2 is out of range for the output of rank 1"),
    "too_negative": (-3, lambda x: x, ValueError, r"out_axes axis -3 is out of range"),
    "not_a_prefix": ((0, 0, 0), lambda x: (x, x), ValueError,
                     r"out_axes=\(0, 0, 0\) is not a prefix of the structure of the outputs"),
    "float_entry": (1.0, lambda x: x, TypeError, r"out_axes entries must be int or None"),
}


@pytest.mark.parametrize("out_axes, fn, exc, match", list(BAD_OUT_AXES.values()),
                         ids=list(BAD_OUT_AXES))
def test_bad_out_axes(out_axes, fn, exc, match):
    with pytest.raises(exc, match=match):
        vmap(fn, out_axes=out_axes)(X32)


def test_value_dependent_python_control_flow_is_rejected():
    from fgrad.errors import ConcretizationError

    with pytest.raises(ConcretizationError, match=r"inside vmap"):
        vmap(lambda x: x if x.sum() > 0 else -x)(X32)
    with pytest.raises(TypeError, match=r"the function's output contains a value of type str"):
        vmap(lambda x: "x")(X32)
