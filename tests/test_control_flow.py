"""Structured control flow in fgrad.lax: `cond`, `switch`, `scan`, `fori_loop`, `while_loop`.

* values against the Python `if` / `for` / `while` they stand for (pytrees, dtypes,
  closures over concrete and traced values, reverse scans, length 0 and 1, clamped
  switch indices, integer counters beside float carries);
* derivatives: `check_grads` (cond, scan and static fori_loop in both modes, while_loop
  in forward mode; to order 2), derivatives of closed-over values against the same
  function written as a Python loop, and the clear error of reverse mode through
  `while_loop`;
* vmap against a loop over the batch: batched predicates and indices (both branches run,
  then a select), batched carries, xs and closed-over values, while loops whose lanes
  stop at different steps, and vmap composed with the derivatives;
* the staged IR: nested jaxprs in `make_jaxpr`, the forward scan plus `reverse=True`
  linear scan of reverse mode, DCE of unused outputs inside the bodies, and a type check
  of every nested jaxpr that the transforms produce;
* the compositionality table of tests/test_api.py over functions with control flow;
* random scan bodies and cond branches (Hypothesis) against Python loops;
* bad input, each with a clear exception at the call.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import (
    grad,
    hessian,
    jacfwd,
    jacrev,
    jvp,
    lax,
    linearize,
    make_jaxpr,
    value_and_grad,
    vjp,
    vmap,
)
from fgrad.ir import ClosedJaxpr, check_jaxpr
from fgrad.test_util import check_grads
from fgrad.tree_util import tree_leaves, tree_map, tree_structure

RNG = np.random.default_rng(0)
X = np.array([0.3, -1.2, 0.7])
V = np.array([0.5, 0.25, -1.0])
XS = RNG.normal(size=(4, 3))
W = RNG.normal(size=(3, 3)) * 0.5
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
REV_WHILE = r"(?s)(?=.*while_loop)(?=.*fori_loop)(?=.*scan)"  # the message names the fixes


# ============================================================================ helpers


def assert_trees_close(got, want, rtol=1e-12, atol=0.0, check_dtype=True):
    """Same tree structure; each leaf of the reference's shape (and dtype), close values."""
    assert tree_structure(got) == tree_structure(want), (tree_structure(got),
                                                         tree_structure(want))
    for g, w in zip(tree_leaves(got), tree_leaves(want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        if check_dtype:
            assert g.dtype == w.dtype, (g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def py_scan(f, init, xs, length=None, reverse=False):
    """The reference `scan`: a Python loop over the leading axis of every leaf of xs."""
    leaves = tree_leaves(xs)
    n = length if length is not None else len(leaves[0])
    carry, ys = init, []
    for i in (reversed(range(n)) if reverse else range(n)):
        x = None if xs is None else tree_map(lambda a, i=i: a[i], xs)
        carry, y = f(carry, x)
        ys.append(y)
    if reverse:
        ys.reverse()
    return carry, tree_map(lambda *ys: fnp.stack([fnp.asarray(y) for y in ys]), *ys)


def py_while(cond_fun, body_fun, val):
    while cond_fun(val):
        val = body_fun(val)
    return val


def py_fori(lower, upper, body_fun, val):
    for i in range(lower, upper):
        val = body_fun(i, val)
    return val


def loop(fn, *args, in_axes=0):
    """The reference for `vmap(fn, in_axes)(*args)`: fn on each example, outputs stacked."""
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    size = next(np.shape(a)[ax] for a, ax in zip(args, axes) if ax is not None)
    outs = [fn(*[a if ax is None else np.take(a, b, axis=ax) for a, ax in zip(args, axes)])
            for b in range(size)]
    return tree_map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *outs)


def numerical_grad(f, x, eps=1e-6):
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = eps
        out.flat[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


def _types(avals):
    return [(tuple(a.shape), np.dtype(a.dtype)) for a in avals]


def typecheck(closed):
    """`check_jaxpr`, recursively: every nested jaxpr type-checks too, and agrees with the
    equation holding it (branch inputs and outputs, scan consts/carry/xs/ys with the
    length, while cond/body signatures)."""
    jaxpr = closed.jaxpr if isinstance(closed, ClosedJaxpr) else closed
    check_jaxpr(jaxpr)
    for eqn in jaxpr.eqns:
        name, p = eqn.primitive.name, eqn.params
        ins, outs = _types(a.aval for a in eqn.invars), _types(v.aval for v in eqn.outvars)
        if name == "cond":
            assert ins[0] == ((), np.dtype(np.int32))
            for br in p["branches"]:
                typecheck(br)
                assert _types(br.in_avals) == ins[1:]
                assert _types(br.out_avals) == outs
        elif name == "scan":
            body, nc, ncar, n = p["jaxpr"], p["num_consts"], p["num_carry"], p["length"]
            typecheck(body)
            assert all(s[:1] == (n,) for s, _ in ins[nc + ncar:]), "xs of another length"
            assert _types(body.in_avals) == ins[:nc + ncar] + [(s[1:], d)
                                                              for s, d in ins[nc + ncar:]]
            body_outs = _types(body.out_avals)
            assert body_outs[:ncar] == ins[nc:nc + ncar], "the carry changes type"
            assert outs == body_outs[:ncar] + [((n, *s), d) for s, d in body_outs[ncar:]]
        elif name == "while":
            cj, bj = p["cond_jaxpr"], p["body_jaxpr"]
            cn, bn = p["cond_nconsts"], p["body_nconsts"]
            typecheck(cj)
            typecheck(bj)
            carry = ins[cn + bn:]
            assert _types(cj.in_avals) == ins[:cn] + carry
            assert _types(cj.out_avals) == [((), np.dtype(np.bool_))]
            assert _types(bj.in_avals) == ins[cn:cn + bn] + carry
            assert _types(bj.out_avals) == carry == outs


def eqns_named(closed, name):
    return [e for e in closed.jaxpr.eqns if e.primitive.name == name]


def prim_names(closed):
    """Names of every primitive in a jaxpr, nested bodies included."""
    names = []
    for e in closed.jaxpr.eqns:
        names.append(e.primitive.name)
        for v in e.params.values():
            for sub in (v if isinstance(v, tuple) else (v,)):
                if isinstance(sub, ClosedJaxpr):
                    names += prim_names(sub)
    return names


# ============================================================================ cond / switch


def _true_fun(a, b):
    return {"s": a * b["w"] + fnp.sin(a), "k": (b["k"] + 1, a[:2])}


def _false_fun(a, b):
    return {"s": a - b["w"], "k": (b["k"] * 2, fnp.cos(a[1:]))}


@pytest.mark.parametrize("pred", [True, False, np.bool_(True), np.array(False), 1, 0, -3,
                                  np.uint8(2), np.int32(0)], ids=repr)
def test_cond_value_matches_python_if(pred):
    ops = (X, {"w": 0.5, "k": np.int32(3)})
    got = lax.cond(pred, _true_fun, _false_fun, *ops)
    want = _true_fun(*ops) if pred else _false_fun(*ops)
    assert_trees_close(got, want)
    assert got["k"][0].dtype == np.int32


def test_cond_with_no_operands_and_closures():
    assert lax.cond(True, lambda: X @ W, lambda: X).tolist() == (X @ W).tolist()
    # closure over an outer traced value, differentiated
    f = lambda w: lax.cond(w > 1.0, lambda: w**2, lambda: 3.0 * w)
    assert grad(f)(2.0) == 4.0 and grad(f)(0.5) == 3.0
    # the two branches close over different values
    g = lambda w, v: lax.cond(w < v, lambda a: a * w**2, lambda a: a * fnp.sin(v), 3.0)
    np.testing.assert_allclose(grad(g, argnums=(0, 1))(0.5, 2.0), (3.0, 0.0))
    np.testing.assert_allclose(grad(g, argnums=(0, 1))(2.0, 0.5), (0.0, 3 * np.cos(0.5)))


@pytest.mark.parametrize("dtype", [F32, F64, np.dtype(np.int32), np.dtype(np.int64)],
                         ids=str)
def test_cond_and_switch_keep_dtypes(dtype):
    x = np.arange(3).astype(dtype)
    for pred in (True, False):
        out = lax.cond(pred, lambda a: a * 2, lambda a: a + 1, x)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, x * 2 if pred else x + 1)
    out = lax.switch(1, [lambda a: a, lambda a: a * 3, lambda a: -a], x)
    assert out.dtype == dtype and out.tolist() == (x * 3).tolist()


def test_cond_float32_derivatives_stay_float32():
    f = lambda w: lax.cond(w > 0, lambda: w * 2.0, lambda: w**2)
    g = grad(f)(np.float32(1.5))
    assert g.dtype == F32 and g == 2.0
    out, t = jvp(f, (np.float32(-1.5),), (np.float32(1.0),))
    assert out.dtype == t.dtype == F32 and t == -3.0


BRANCHES = [lambda a: a + 1.0, lambda a: a * 2.0, lambda a: fnp.sin(a)]


@pytest.mark.parametrize("index, taken", [(0, 0), (1, 1), (2, 2), (3, 2), (100, 2), (-1, 0),
                                          (-100, 0), (np.int8(-5), 0), (np.uint8(200), 2),
                                          (np.int32(1), 1), (2**40, 2), (-(2**40), 0)],
                         ids=repr)
def test_switch_clamps_the_index(index, taken):
    np.testing.assert_allclose(lax.switch(index, BRANCHES, X), BRANCHES[taken](X), rtol=0)


def test_switch_single_branch_and_derivatives():
    assert lax.switch(7, [lambda a: a * 2.0], 1.5) == 3.0
    f = lambda x: lax.switch(fnp.argmax(x), BRANCHES, x).sum()
    for x in (X, -X, X[::-1]):
        branch = BRANCHES[int(np.argmax(x))]
        np.testing.assert_allclose(grad(f)(x), numerical_grad(lambda a, b=branch: b(a).sum(), x),
                                   rtol=1e-7)
        check_grads(f, (x,), order=2, modes=("fwd", "rev"))


def f_cond_pytree(x, p):
    def tf(a, q):
        return {"u": fnp.sin(a) * q["w"], "v": (a**2).sum() + q["b"]}

    def ff(a, q):
        return {"u": fnp.cos(a) + a**2 * q["w"], "v": fnp.exp(q["b"]) - a.sum()}

    return lax.cond(x.sum() > 0, tf, ff, x, p)


@pytest.mark.parametrize("sign", [-1.0, 1.0], ids=["true_fun", "false_fun"])  # X.sum() < 0
def test_check_grads_cond(sign):
    check_grads(f_cond_pytree, (sign * X, {"w": 0.7, "b": -0.4}), order=2,
                modes=("fwd", "rev"))


def test_cond_partial_eval_keeps_both_branches_residuals():
    # the branches need different residuals (sin and cos vs an exp); reverse mode at a
    # point of each branch, and its jaxpr type-checks
    for x in (X, -X):
        for fn in (lambda a: f_cond_pytree(a, {"w": 0.7, "b": -0.4})["u"].sum(),
                   lambda a: f_cond_pytree(a, {"w": 0.7, "b": -0.4})["v"]):
            np.testing.assert_allclose(grad(fn)(x), numerical_grad(fn, x), rtol=1e-7)
            typecheck(make_jaxpr(grad(fn))(x))


# ============================================================================ scan


def scan_body(c, x):
    """A pytree carry (float vector and an int counter) and pytree xs and ys."""
    h, n = c["h"], c["n"]
    a, b = x
    h_new = fnp.tanh(h * a + b) + 0.1 * n
    return {"h": h_new, "n": n + 1}, [h * b, n, fnp.sum(h_new)]


SCAN_INIT = {"h": np.array([0.5, -0.3]), "n": np.int32(0)}
SCAN_XS = (RNG.normal(size=(4, 2)), RNG.normal(size=(4,)))


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_matches_python_loop(reverse):
    got = lax.scan(scan_body, SCAN_INIT, SCAN_XS, reverse=reverse)
    want = py_scan(scan_body, SCAN_INIT, SCAN_XS, reverse=reverse)
    assert_trees_close(got, want, rtol=1e-14)
    assert got[0]["n"].dtype == np.int32 and got[1][1].dtype == np.int32


@pytest.mark.parametrize("n", [0, 1])
def test_scan_lengths_zero_and_one(n):
    xs = (SCAN_XS[0][:n], SCAN_XS[1][:n])
    carry, ys = lax.scan(scan_body, SCAN_INIT, xs)
    want_carry, _ = py_scan(scan_body, SCAN_INIT, xs) if n else (SCAN_INIT, None)
    assert_trees_close(carry, want_carry, rtol=1e-14)
    assert [y.shape for y in ys] == [(n, 2), (n,), (n,)]
    assert [y.dtype for y in ys] == [F64, np.int32, F64]
    # derivatives of an empty scan: the carry passes through, xs get empty cotangents
    f = lambda c0, xs: lax.scan(lambda c, x: (fnp.sin(c) * x + c, c * x), c0, xs)[0]
    g0, gx = grad(f, argnums=(0, 1))(0.5, np.ones(n))
    assert gx.shape == (n,)
    if n == 0:
        assert g0 == 1.0
    check_grads(f, (0.5, np.full(n, 0.8)), order=2, modes=("fwd", "rev"))


def test_scan_without_xs_and_without_ys():
    carry, ys = lax.scan(lambda c, _: (c * 2.0 + 1.0, c), 1.0, None, length=3)
    assert carry == 15.0 and ys.tolist() == [1.0, 3.0, 7.0]
    carry, ys = lax.scan(lambda c, x: (c + x, None), 0.0, np.arange(4.0))
    assert carry == 6.0 and ys is None
    carry, ys = lax.scan(lambda c, x: (c, x * 2), (), np.arange(3.0))
    assert carry == () and ys.tolist() == [0.0, 2.0, 4.0]
    assert lax.scan(lambda c, _: (c + 1, None), 0, None, length=0) == (0, None)
    # xs=None with length=, under grad: w is closed over
    f = lambda w: lax.scan(lambda c, _: (c * w + 1.0, c), 1.0, None, length=3)[0]
    assert grad(f)(2.0) == 3 * 4.0 + 2 * 2.0 + 1.0  # d/dw (w^3 + w^2 + w + 1)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_scan_keeps_dtypes(dtype):
    xs = np.linspace(0.5, 1.5, 4).astype(dtype)
    c0 = dtype.type(1.0)
    body = lambda c, x: (c * x + 0.5, fnp.sin(c) * 2.0)
    carry, ys = lax.scan(body, c0, xs)
    assert carry.dtype == ys.dtype == dtype
    want = py_scan(body, c0, xs)
    assert_trees_close((carry, ys), want, rtol=1e-6 if dtype == F32 else 1e-14)
    g = grad(lambda xs: lax.scan(body, c0, xs)[1].sum())(xs)
    assert g.dtype == dtype and g.shape == xs.shape
    # a Python-scalar initial carry takes the body's dtype (as in JAX): 1.0 * float32
    carry, ys = lax.scan(lambda c, x: (c * x, c), 1.0, xs)
    assert carry.dtype == ys.dtype == dtype


def test_scan_integer_carries_beside_floats():
    body = lambda c, x: ((c[0] + 1, c[1] * x + c[0]), c[0] * 2)
    f = lambda w: lax.scan(lambda c, x: body(c, x * w), (0, 1.0), np.arange(1.0, 4.0))
    (n, val), ys = f(2.0)
    assert n == 3 and ys.tolist() == [0, 2, 4] and ys.dtype == np.int64
    ref = lambda w: py_scan(lambda c, x: body(c, x * w), (0, 1.0), np.arange(1.0, 4.0))[0][1]
    assert val == ref(2.0)
    assert grad(lambda w: f(w)[0][1])(2.0) == grad(ref)(2.0)
    np.testing.assert_allclose(jvp(lambda w: f(w)[0][1], (2.0,), (1.0,))[1], grad(ref)(2.0))


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_closure_over_traced_value(reverse):
    """`grad(lambda w: scan(lambda c, x: (c * w + x, c), ...))`: w is closed over."""
    xs = np.array([0.5, -1.0, 2.0, 0.25])

    def f(w):
        c, ys = lax.scan(lambda c, x: (c * w + x, c), 1.0, xs, reverse=reverse)
        return c + (ys * xs).sum()

    def ref(w):  # the same loop in Python, differentiated by the core transforms
        c, ys = py_scan(lambda c, x: (c * w + x, c), 1.0, xs, reverse=reverse)
        return c + (ys * xs).sum()

    for w in (0.7, -1.3):
        assert f(w) == pytest.approx(ref(w), rel=1e-14)
        assert grad(f)(w) == pytest.approx(grad(ref)(w), rel=1e-14)
        assert grad(grad(f))(w) == pytest.approx(grad(grad(ref))(w), rel=1e-12)
        assert jvp(f, (w,), (1.0,))[1] == pytest.approx(grad(ref)(w), rel=1e-14)
    # a closed-over array (a matrix in the body) as well
    g = lambda m: lax.scan(lambda c, x: (fnp.tanh(m @ c + x), c.sum()), X, XS)[1].sum()
    np.testing.assert_allclose(grad(g)(W), numerical_grad(g, W), rtol=1e-6, atol=1e-9)


def f_scan(x):
    def body(c, xi):
        h, k = c
        h = fnp.sin(h) * xi + h * 0.5
        return (h, k + 1), (h * xi, fnp.cos(h))

    (h, _), (a, b) = lax.scan(body, (0.3, 0), x)
    return h + a.sum() + (b * x).sum()


def f_scan_rev_matrix(x):
    def body(c, xi):
        c = fnp.tanh(W @ c + xi)
        return c, c[0] * xi[1]

    c, ys = lax.scan(body, x, fnp.stack([x, x**2, -x]), reverse=True)
    return c.sum() + ys.sum()


@pytest.mark.parametrize("f", [f_scan, f_scan_rev_matrix], ids=lambda f: f.__name__)
def test_check_grads_scan(f):
    check_grads(f, (X,), order=2, modes=("fwd", "rev"))


# ============================================================================ fori_loop


def fori_body(i, c):
    n, v = c
    return n + i, v * 0.5 + fnp.sin(v) * i


@pytest.mark.parametrize("lower, upper", [(0, 4), (2, 5), (3, 3), (5, 2)])
def test_fori_loop_concrete_bounds(lower, upper):
    init = (0, X)
    got = lax.fori_loop(lower, upper, fori_body, init)
    assert_trees_close(got, py_fori(lower, upper, fori_body, init), rtol=1e-14)
    jaxpr = make_jaxpr(lambda x: lax.fori_loop(lower, upper, fori_body, (0, x)))(X)
    assert len(eqns_named(jaxpr, "scan")) == 1 and not eqns_named(jaxpr, "while")


def test_fori_loop_counter_dtype_follows_the_bounds():
    # the counter has the bounds' dtype; Python-int bounds give a weak counter, so an
    # int32 carry stays int32 (as in JAX)
    for lo, hi in ((0, 4), (np.int32(0), np.int32(4)), (np.int32(0), 4)):
        out = lax.fori_loop(lo, hi, lambda i, c: c + i, np.int32(0))
        assert out == 6 and out.dtype == np.int32
    with pytest.raises(TypeError, match=r"\(i64\[\], i32\[\]\) and returns .*\(i64\[\], i64\[\]\)"):
        lax.fori_loop(np.int64(0), np.int64(4), lambda i, c: c + i, np.int32(0))  # int64 i
    out = lax.fori_loop(0, 4, lambda i, c: c + i, np.float32(0))
    assert out.dtype == F32 and out == 6.0
    assert lax.fori_loop(np.int32(1), np.int32(3), lambda i, c: c * i, 5) == 10


def test_fori_loop_indexes_with_the_counter():
    f = lambda x: lax.fori_loop(0, 3, lambda i, c: fnp.sin(c) * fnp.take(x, i) + c, 0.5)
    ref = lambda x: py_fori(0, 3, lambda i, c: fnp.sin(c) * x[i] + c, 0.5)
    np.testing.assert_allclose(f(X), ref(X), rtol=1e-14)
    check_grads(f, (X,), order=2, modes=("fwd", "rev"))


def test_indexing_a_numpy_array_with_the_counter_names_the_fix():
    with pytest.raises(TypeError, match=r"fgrad\.numpy\.take"):
        lax.fori_loop(0, 3, lambda i, c: c + X[i], 0.5)


def test_fori_loop_weak_counter_arithmetic_keeps_float32():
    out = lax.fori_loop(0, 4, lambda i, c: c + i * 0.5, np.float32(0))
    assert out.dtype == F32 and out == 3.0


def test_fori_loop_traced_bounds_is_a_while_loop():
    f = lambda lo, hi, x: lax.fori_loop(lo, hi, fori_body, (0, x))
    jaxpr = make_jaxpr(f)(0, 3, X)
    assert len(eqns_named(jaxpr, "while")) == 1 and "scan" not in prim_names(jaxpr)
    typecheck(jaxpr)
    # per-lane bounds under vmap: each lane runs its own number of steps
    los, his = np.array([0, 2, 5, 1]), np.array([3, 2, 9, 4])
    assert_trees_close(vmap(f, (0, 0, None))(los, his, X),
                       loop(lambda lo, hi: py_fori(int(lo), int(hi), fori_body, (0, X)), los, his),
                       rtol=1e-14)
    # forward mode through the while loop (the bound traced by vmap)
    out, t = vmap(lambda hi: jvp(lambda x: f(0, hi, x)[1], (X,), (V,)))(his)
    want = loop(lambda hi: jvp(lambda x: py_fori(0, int(hi), fori_body, (0, x))[1],
                               (X,), (V,)), his)
    assert_trees_close((out, t), want, rtol=1e-13)


def f_fori(x):
    return lax.fori_loop(0, 3, lambda i, c: fnp.sin(c) * x + c * i, x).sum()


def test_check_grads_fori_loop():
    check_grads(f_fori, (X,), order=2, modes=("fwd", "rev"))
    # the counter is usable as a value (float arithmetic, comparisons)
    onehot = lambda i, c, x: c + fnp.sum(fnp.where(fnp.arange(3) == i, x, 0.0)) * c
    g = lambda x: lax.fori_loop(0, 3, lambda i, c: onehot(i, c, x), 1.0)
    np.testing.assert_allclose(g(X), np.prod(1 + X))
    check_grads(g, (X,), order=2, modes=("fwd", "rev"))


# ============================================================================ while_loop


def test_while_loop_matches_python_while():
    cond_fun = lambda c: (c["i"] < 5) & (c["v"].sum() < 50.0)
    body_fun = lambda c: {"i": c["i"] + 1, "v": c["v"] * 1.7 + c["i"], "tag": c["tag"]}
    init = {"i": 0, "v": np.abs(X), "tag": np.float32(2.5)}
    got = lax.while_loop(cond_fun, body_fun, init)
    assert_trees_close(got, py_while(cond_fun, body_fun, init), rtol=1e-14)
    # zero iterations
    assert lax.while_loop(lambda c: c > 10.0, lambda c: c * 2.0, 3.0) == 3.0


@pytest.mark.parametrize("dtype", [F32, F64, np.dtype(np.int32)], ids=str)
def test_while_loop_keeps_dtypes(dtype):
    out = lax.while_loop(lambda c: c < 100, lambda c: c * 3, dtype.type(1))
    assert out.dtype == dtype and out == 243
    if dtype.kind == "f":
        w = dtype.type(1.5)
        out, t = jvp(lambda w: lax.while_loop(lambda c: c < 10, lambda c: c * w, 1.0),
                     (w,), (dtype.type(1.0),))  # 1.0 (weak) takes the dtype of c * w
        assert out.dtype == t.dtype == dtype
        np.testing.assert_allclose([out, t], [1.5**6, 6 * 1.5**5], rtol=1e-6)


def f_while(x):
    def body(c):
        i, v = c
        return i + 1, fnp.sin(v) * x + v * 0.5

    return lax.while_loop(lambda c: c[0] < 3, body, (0, x))[1].sum()


def f_while_data_dependent(x):
    """Trip count decided by the values; under a small perturbation it stays the same."""
    return lax.while_loop(lambda v: fnp.sum(v**2) < 20.0, lambda v: v * 1.5 + x, x).sum()


@pytest.mark.parametrize("f", [f_while, f_while_data_dependent], ids=lambda f: f.__name__)
def test_check_grads_while_loop_forward_mode(f):
    check_grads(f, (X,), order=2, modes=("fwd",))
    np.testing.assert_allclose(jacfwd(f)(X), numerical_grad(f, X), rtol=1e-6)


def test_while_loop_closure_over_traced_value():
    def f(w):
        return lax.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, c[1] * w + 1.0),
                              (0, 1.0))[1]

    ref = lambda w: py_while(lambda c: c[0] < 4, lambda c: (c[0] + 1, c[1] * w + 1.0),
                             (0, 1.0))[1]
    out, t = jvp(f, (1.5,), (1.0,))
    assert out == ref(1.5) and t == pytest.approx(grad(ref)(1.5), rel=1e-14)
    assert jacfwd(jacfwd(f))(1.5) == pytest.approx(grad(grad(ref))(1.5), rel=1e-12)
    # reverse mode is fine where nothing differentiated flows through the loop
    assert grad(lambda w: w * lax.while_loop(lambda c: c < 10, lambda c: c * 2, 1.0))(3.0) == 16


@pytest.mark.parametrize("transform", [
    lambda f: grad(f), lambda f: jacrev(f), lambda f: hessian(f),
    lambda f: (lambda x: vjp(f, x)), lambda f: (lambda x: linearize(f, x)),
    lambda f: grad(lambda x: vmap(f)(fnp.stack([x, x * 2])).sum()),
], ids=["grad", "jacrev", "hessian", "vjp", "linearize", "grad_vmap"])
def test_reverse_mode_through_while_loop_raises(transform):
    with pytest.raises(TypeError, match=REV_WHILE):
        transform(f_while)(X)


def test_reverse_mode_through_traced_fori_loop_raises():
    f = lambda w, n: lax.fori_loop(0, n, lambda i, c: c * w, 1.0)
    assert grad(f)(2.0, 3) == 12.0  # concrete bounds under grad: a scan
    with pytest.raises(TypeError, match=REV_WHILE):
        vmap(grad(f), (None, 0))(2.0, np.array([1, 2]))  # bounds traced by vmap: a while
    np.testing.assert_allclose(vmap(jacfwd(f), (None, 0))(2.0, np.array([1, 3])), [1.0, 12.0])


# ============================================================================ the tutorial


def tutorial_f(a):
    """Seed 000's control-flow function written with lax.while_loop and lax.cond."""
    b = a * 2
    b = lax.while_loop(lambda b: fnp.linalg.norm(b) < 1000, lambda b: b * 2, b)
    return lax.cond(b.sum() > 0, lambda b: b, lambda b: 100 * b, b)


def test_tutorial_control_flow_with_lax():
    assert jvp(tutorial_f, (2.0,), (1.0,)) == (1024.0, 512.0)
    assert jacfwd(tutorial_f)(2.0) == 512.0
    assert tutorial_f(2.0) == 1024.0
    assert jvp(tutorial_f, (-2.0,), (1.0,)) == (-102400.0, 51200.0)
    # per-lane trip counts under vmap (2.0: 8 doublings, 0.3: 11, 600.0: none, -7.0: 7)
    a = np.array([2.0, 0.3, 600.0, 499.0, -7.0])
    np.testing.assert_array_equal(vmap(tutorial_f)(a), [tutorial_f(x) for x in a])
    np.testing.assert_array_equal(jacfwd(lambda a: vmap(tutorial_f)(a))(a),
                                  np.diag([jacfwd(tutorial_f)(x) for x in a]))
    names = [e.primitive.name for e in make_jaxpr(tutorial_f)(2.0).jaxpr.eqns]
    assert "while" in names and "cond" in names
    with pytest.raises(TypeError, match=REV_WHILE):
        grad(tutorial_f)(2.0)


# ============================================================================ vmap


def f_cond_closure(p, a, w):
    return lax.cond(p > 0, lambda a: fnp.sin(a) * w, lambda a: a * 2.0 - w, a)


def test_vmap_cond_batched_predicate_selects_both_branches():
    p, w = XS[:, 0], XS[:, 1]
    assert_trees_close(vmap(f_cond_closure)(p, XS, w), loop(f_cond_closure, p, XS, w))
    assert_trees_close(vmap(f_cond_closure, (0, 1, None))(p, XS.T, 0.7),
                       loop(lambda p, a: f_cond_closure(p, a, 0.7), p, XS))
    jaxpr = make_jaxpr(vmap(f_cond_closure))(p, XS, w)
    names = [e.primitive.name for e in jaxpr.jaxpr.eqns]
    assert "cond" not in names and "select_n" in names and "sin" in names
    typecheck(jaxpr)
    # an unbatched predicate stays a cond, of batched branches
    jaxpr = make_jaxpr(vmap(lambda a, w: f_cond_closure(1.0, a, w)))(XS, w)
    assert len(eqns_named(jaxpr, "cond")) == 1
    assert_trees_close(vmap(lambda a, w: f_cond_closure(-1.0, a, w))(XS, w),
                       loop(lambda a, w: f_cond_closure(-1.0, a, w), XS, w))


def test_vmap_cond_pytree_and_integer_outputs():
    f = lambda p, x: lax.cond(p > 0, lambda x: (1, {"a": x * 2.0}), lambda x: (3, {"a": -x}), x)
    assert_trees_close(vmap(f)(XS[:, 0], XS), loop(f, XS[:, 0], XS))
    assert_trees_close(vmap(f, (0, None))(XS[:, 0], X), loop(lambda p: f(p, X), XS[:, 0]))


def test_vmap_switch_batched_index():
    idx = np.array([0, 1, 2, 7, -4])
    xs = RNG.normal(size=(5, 3))
    f = lambda i, x, w: lax.switch(i, [lambda a: a * w, lambda a: fnp.sin(a) + w,
                                       lambda a: a**2 - w], x)
    assert_trees_close(vmap(f)(idx, xs, xs[:, 0]), loop(f, idx, xs, xs[:, 0]))
    assert_trees_close(vmap(f, (0, None, None))(idx, X, 0.5),
                       loop(lambda i: f(i, X, 0.5), idx))
    assert_trees_close(vmap(f, (None, 0, None))(2, xs, 0.5), loop(lambda x: f(2, x, 0.5), xs))


SCAN_VMAP_CASES = {
    "carry": ((0, None, None), (XS, SCAN_XS[1], 0.3)),
    "xs": ((None, 0, None), (X, RNG.normal(size=(3, 4)), 0.3)),
    "xs_axis_1": ((None, 1, None), (X, RNG.normal(size=(4, 3)), 0.3)),
    "closed_over": ((None, None, 0), (X, SCAN_XS[1], XS[:, 0])),
    "all": ((0, 0, 0), (XS, RNG.normal(size=(4, 5)), XS[:, 0])),
}


def f_scan_vmap(c0, xs, w):
    def body(c, x):
        c = fnp.tanh(c * w + x)
        return c, (c.sum(), x * w)

    return lax.scan(body, c0, xs)


@pytest.mark.parametrize("in_axes, args", list(SCAN_VMAP_CASES.values()),
                         ids=list(SCAN_VMAP_CASES))
def test_vmap_scan(in_axes, args):
    assert_trees_close(vmap(f_scan_vmap, in_axes)(*args), loop(f_scan_vmap, *args,
                                                               in_axes=in_axes), rtol=1e-14)
    jaxpr = make_jaxpr(vmap(f_scan_vmap, in_axes))(*args)
    assert len(eqns_named(jaxpr, "scan")) == 1  # one loop for the whole batch
    typecheck(jaxpr)


def test_vmap_scan_reverse_pytree_and_nested():
    f = lambda init, xs: lax.scan(scan_body, init, xs, reverse=True)
    inits = {"h": XS[:, :2], "n": np.arange(4, dtype=np.int32)}
    xs = (RNG.normal(size=(4, 3, 2)), RNG.normal(size=(4, 3)))
    assert_trees_close(vmap(f)(inits, xs), loop(lambda h, n, a, b: f({"h": h, "n": n}, (a, b)),
                                                inits["h"], inits["n"], *xs), rtol=1e-14)
    g = lambda x: lax.scan(lambda c, xi: (c * xi + 1.0, c), 1.0, x)
    xss = RNG.normal(size=(2, 3, 4))
    assert_trees_close(vmap(vmap(g))(xss), loop(lambda a: loop(g, a), xss))


def f_while_lanes(n, x):
    """The body keeps changing a finished lane's value: the lane must be frozen."""
    return lax.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, c[1] * x + 1.0, c[2] * 2),
                          (0, x, np.float32(1.0)))


def test_vmap_while_loop_lanes_finish_at_different_steps():
    ns = np.array([0, 2, 5, 1])
    xs = XS[:, 0]
    got = vmap(f_while_lanes)(ns, xs)
    assert_trees_close(got, loop(f_while_lanes, ns, xs), rtol=1e-14)
    assert got[2].dtype == F32 and got[2].tolist() == [1.0, 4.0, 32.0, 2.0]
    jaxpr = make_jaxpr(vmap(f_while_lanes))(ns, xs)
    assert len(eqns_named(jaxpr, "while")) == 1
    typecheck(jaxpr)
    # batched carry with an unbatched trip count; batched closed-over values
    assert_trees_close(vmap(f_while_lanes, (None, 0))(3, xs),
                       loop(lambda x: f_while_lanes(3, x), xs), rtol=1e-14)
    assert_trees_close(vmap(f_while_lanes, (0, None))(ns, 0.5),
                       loop(lambda n: f_while_lanes(n, 0.5), ns), rtol=1e-14)
    # forward mode per lane, and vmap of vmap
    out, t = jvp(lambda x: vmap(f_while_lanes)(ns, x)[1], (xs,), (np.ones(4),))
    want = loop(lambda n, x: jvp(lambda x: f_while_lanes(n, x)[1], (x,), (1.0,)), ns, xs)
    assert_trees_close((out, t), want, rtol=1e-14)
    nss, xss = np.array([[0, 2], [5, 1]]), XS[:2, :2]
    assert_trees_close(vmap(vmap(f_while_lanes))(nss, xss),
                       loop(lambda n, x: loop(f_while_lanes, n, x), nss, xss), rtol=1e-14)


def test_vmap_grad_and_grad_vmap_of_scan():
    xs = RNG.normal(size=(4, 3))
    per_example = [grad(f_scan)(x) for x in xs]
    np.testing.assert_allclose(vmap(grad(f_scan))(xs), per_example, rtol=1e-12)
    np.testing.assert_allclose(grad(lambda xs: vmap(f_scan)(xs).sum())(xs), per_example,
                               rtol=1e-12)
    np.testing.assert_allclose(per_example[0], numerical_grad(f_scan, xs[0]), rtol=1e-6)


def f_cond_scan(x):
    y = lax.cond(x[0] > 0, lambda a: a * fnp.sin(a), lambda a: a**2, x)
    c, ys = lax.scan(lambda c, xi: (c * xi + fnp.cos(c), c**2), 0.1, y)
    return ys + c


def test_jacfwd_jacrev_over_cond_and_scan():
    for x in (X, -X):
        h = jacfwd(jacrev(f_cond_scan))(x)
        assert h.shape == (3, 3, 3)
        fd = np.stack([numerical_grad(lambda a, i=i: jacrev(f_cond_scan)(a)[i // 3, i % 3], x)
                       for i in range(9)]).reshape(3, 3, 3)
        np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-8)
        for other in (jacrev(jacfwd(f_cond_scan)), jacfwd(jacfwd(f_cond_scan)),
                      jacrev(jacrev(f_cond_scan))):
            np.testing.assert_allclose(other(x), h, rtol=1e-10, atol=1e-12)


# ============================================================================ the staged IR


def test_make_jaxpr_shows_nested_jaxprs():
    def f(x):
        y = lax.cond(x.sum() > 0, lambda a: fnp.sin(a), lambda a: fnp.cos(a), x)
        c, _ = lax.scan(lambda c, xi: (c * xi, c), 1.0, y)
        return lax.while_loop(lambda v: v < 10.0, lambda v: fnp.exp(v), c)

    jaxpr = make_jaxpr(f)(X)
    text = str(jaxpr)
    assert [e.primitive.name for e in jaxpr.jaxpr.eqns][-3:] == ["cond", "scan", "while"]
    for head in ("cond[branches=(", "scan[jaxpr=", "while[body_jaxpr="):
        assert head in text
    # the bodies' equations are printed, indented deeper than the top-level ones
    for prim in ("sin", "cos", "mul", "exp", "lt"):
        assert re.search(rf"^ {{8,}}\w+:\w+\[3?\] = {prim} ", text, re.M), prim
    assert re.search(r"^ {4}\w+:f64\[\] = while\[", text, re.M)
    assert "reverse=False" in text and "length=3" in text
    typecheck(jaxpr)


@pytest.mark.parametrize("reverse", [False, True])
def test_grad_of_scan_is_a_forward_scan_then_a_linear_reverse_scan(reverse):
    def f(w):
        c, ys = lax.scan(lambda c, x: (fnp.sin(c * w) + x, fnp.exp(c)), 0.5, X,
                         reverse=reverse)
        return c + ys.sum()

    jaxpr = make_jaxpr(grad(f))(1.3)
    typecheck(jaxpr)
    scans = eqns_named(jaxpr, "scan")
    assert [s.params["reverse"] for s in scans] == [reverse, not reverse]
    forward, backward = scans
    # the forward scan stacks the residuals (per-step outputs) that the backward one reads
    stacked = [v for v in forward.outvars[forward.params["num_carry"]:]]
    assert len(stacked) >= 2 and all(v.aval.shape[:1] == (3,) for v in stacked)
    assert set(stacked) & set(backward.invars)
    # the backward loop is linear: no sin/exp/cos, the forward pass is not re-run per step
    assert set(prim_names(backward.params["jaxpr"])) <= {"mul", "add", "neg", "sub",
                                                         "convert_element_type"}
    assert {"sin", "cos", "exp"} <= set(prim_names(forward.params["jaxpr"]))
    assert np.isclose(grad(f)(1.3), numerical_grad(lambda w: f(w[0]), np.array([1.3]))[0])


def value_shapes(closed):
    """Shapes of every value in a jaxpr, nested bodies included."""
    j = closed.jaxpr if isinstance(closed, ClosedJaxpr) else closed
    shapes = {tuple(v.aval.shape) for v in [*j.constvars, *j.invars]}
    for e in j.eqns:
        shapes |= {tuple(v.aval.shape) for v in e.outvars}
        for v in e.params.values():
            for sub in (v if isinstance(v, tuple) else (v,)):
                if isinstance(sub, ClosedJaxpr):
                    shapes |= value_shapes(sub)
    return shapes


RNN_W = RNG.normal(size=(4, 4)) * 0.5
RNN_H0, RNN_XS = RNG.normal(size=4), RNG.normal(size=(7, 4))


def f_rnn(w, h0, xs):
    def body(h, x):
        h = fnp.tanh(h @ w + x)
        return h, h.sum()

    return lax.scan(body, h0, xs)[1].sum()


def f_rnn_sin_reverse(w, h0, xs):
    """The const is used nonlinearly, and the loop runs backwards."""
    def body(h, x):
        h = fnp.tanh(h @ fnp.sin(w) + x * fnp.exp(w).sum())
        return h, (h * h).sum()

    h, ys = lax.scan(body, h0, xs, reverse=True)
    return ys.sum() + h.sum()


@pytest.mark.parametrize("f", [f_rnn, f_rnn_sin_reverse], ids=lambda f: f.__name__)
def test_grad_of_scan_reads_loop_invariant_residuals_as_consts(f):
    """A residual that is a const (`w` in `h @ w`), or computed from consts alone (`sin(w)`),
    goes to the linear scan once, as a const, not stacked once per step."""
    args = (RNN_W, RNN_H0, RNN_XS)
    jaxpr = make_jaxpr(grad(f, argnums=(0, 1, 2)))(*args)
    typecheck(jaxpr)
    assert (7, 4, 4) not in value_shapes(jaxpr)
    forward, backward = eqns_named(jaxpr, "scan")
    assert backward.params["num_consts"] >= 1
    stacked = forward.outvars[forward.params["num_carry"]:]
    assert all(v.aval.shape != (7, 4, 4) for v in stacked)
    check_grads(f, args, order=2, modes=("rev",))


@pytest.mark.parametrize("f", [f_rnn, f_rnn_sin_reverse], ids=lambda f: f.__name__)
def test_grad_of_scan_with_invariant_residuals_under_jit_and_vmap(f):
    args = (RNN_W, RNN_H0, RNN_XS)
    g = grad(f, argnums=(0, 1, 2))
    want = g(*args)
    assert_trees_close(fgrad.jit(g)(*args), want, rtol=1e-10, atol=1e-12)
    assert (7, 4, 4) not in value_shapes(make_jaxpr(fgrad.jit(g))(*args))
    h0s = np.stack([RNN_H0, -RNN_H0, 0.5 * RNN_H0])
    in_axes = (None, 0, None)
    assert_trees_close(vmap(g, in_axes)(RNN_W, h0s, RNN_XS),
                       loop(g, RNN_W, h0s, RNN_XS, in_axes=in_axes), rtol=1e-10, atol=1e-12)


def test_dce_drops_unused_scan_outputs_and_carries():
    def body(c, x):
        a, b = c
        return (a + x, b * fnp.sin(x)), (fnp.exp(a) * x, fnp.cos(b) + x)

    def body_size(fn):
        (eqn,) = eqns_named(make_jaxpr(fn)(X), "scan")
        return len(eqn.params["jaxpr"].jaxpr.eqns), len(eqn.outvars)

    full, n_out = body_size(lambda x: lax.scan(body, (0.0, 1.0), x))
    assert n_out == 4
    one_y = body_size(lambda x: lax.scan(body, (0.0, 1.0), x)[1][0])
    one_carry = body_size(lambda x: lax.scan(body, (0.0, 1.0), x)[0][0])
    assert one_y[0] < full and one_carry[0] < one_y[0]
    assert one_carry[1] == 1  # the carry b feeds nothing that is used: dropped too
    for fn in (lambda x: lax.scan(body, (0.0, 1.0), x)[1][0],
               lambda x: lax.scan(body, (0.0, 1.0), x)[0][0],
               lambda x: lax.scan(body, (0.0, 1.0), x)[0][1]):
        jaxpr = make_jaxpr(fn)(X)
        typecheck(jaxpr)
        np.testing.assert_allclose(fgrad.core.eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, X)[0], fn(X))
    # an unused output that a used carry depends on keeps its part of the body
    dep = lambda x: lax.scan(lambda c, xi: ((c[0] + c[1], c[1] * xi), None), (0.0, 1.0), x)[0][0]
    jaxpr = make_jaxpr(dep)(X)
    assert eqns_named(jaxpr, "scan")[0].params["num_carry"] == 2
    assert fgrad.core.eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, X)[0] == dep(X)


def test_dce_drops_unused_cond_outputs():
    def f(x):
        return lax.cond(x.sum() > 0, lambda a, b: (fnp.sin(a) * b, fnp.exp(a) * 2),
                        lambda a, b: (fnp.cos(a), a**3), x, X)

    def branch_sizes(fn):
        (eqn,) = eqns_named(make_jaxpr(fn)(X), "cond")
        return [len(br.jaxpr.eqns) for br in eqn.params["branches"]], len(eqn.invars)

    full, n_in = branch_sizes(f)
    first, n_in_first = branch_sizes(lambda x: f(x)[0])
    second, n_in_second = branch_sizes(lambda x: f(x)[1])
    assert all(a < b for a, b in zip(first, full)) and all(a < b for a, b in zip(second, full))
    assert n_in == n_in_first == 3 and n_in_second == 2  # b is read only by output 0
    for fn in (lambda x: f(x)[0], lambda x: f(x)[1]):
        for x in (X, -X):
            jaxpr = make_jaxpr(fn)(x)
            typecheck(jaxpr)
            np.testing.assert_allclose(fgrad.core.eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, x)[0],
                                       fn(x))


def f_nested(x):
    def body(c, xi):
        c = lax.cond(xi > 0, lambda c: c * xi, lambda c: fnp.sin(c) + xi, c)
        return c, lax.switch(fnp.argmax(x), [lambda: c, lambda: c**2, lambda: -c])

    c, ys = lax.scan(body, 0.5, x)
    return c + ys.sum() + lax.fori_loop(0, 2, lambda i, v: v * fnp.cos(c) + 0.1, x).sum()


TRANSFORMS = {
    "plain": (lambda f: f, False),
    "grad": (grad, False),
    "hessian": (hessian, False),
    "jacfwd_jacrev": (lambda f: jacfwd(jacrev(f)), False),
    "grad_grad": (lambda f: grad(lambda x: grad(f)(x).sum()), False),
    "jvp": (lambda f: (lambda x: jvp(f, (x,), (V,))), False),
    "linearize": (lambda f: (lambda x: linearize(f, x)[1](V)), False),
    "vjp": (lambda f: (lambda x: vjp(f, x)[1](1.0)), False),
    "vmap": (vmap, True),
    "vmap_grad": (lambda f: vmap(grad(f)), True),
    "grad_vmap": (lambda f: grad(lambda xb: vmap(f)(xb).sum()), True),
    "vmap_jacfwd": (lambda f: vmap(jacfwd(f)), True),
}
FORWARD_ONLY = {"plain", "jvp", "vmap", "vmap_jacfwd"}  # these apply to while_loop too


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transformed_jaxprs_type_check(name):
    """Every nested jaxpr that the rules build agrees with its equation, and the staged
    program computes what the transform computes eagerly."""
    transform, batched = TRANSFORMS[name]
    x = XS[:2] if batched else X
    for f in (f_nested, f_while) if name in FORWARD_ONLY else (f_nested,):
        fn = transform(f)
        jaxpr = make_jaxpr(fn)(x)
        typecheck(jaxpr)
        staged = fgrad.core.eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, x)
        assert_trees_close(staged, tree_leaves(fn(x)), rtol=1e-12, check_dtype=False)


# ============================================================================ compositionality


def f_table_cond(x):
    return lax.cond(x[0] > 0, lambda a: fnp.sum(fnp.sin(a) * a**2),
                    lambda a: fnp.sum(fnp.cos(a)) + fnp.prod(a), x)


def f_table_scan(x):
    c, ys = lax.scan(lambda c, xi: (fnp.tanh(W @ c) * xi + c, c.sum() * xi), x, fnp.stack([x, -x]))
    return fnp.sum(c**2) + ys.sum()


def f_table_fori(x):
    return lax.fori_loop(0, 3, lambda i, c: fnp.sin(c) * x + c * 0.5, x).sum()


def f_table_nested(x):
    return f_nested(x)


TABLE = [f_table_cond, f_table_scan, f_table_fori, f_table_nested]
# the batch: lanes take both branches of the conds
XB = np.stack([X, -X, X[::-1], np.array([0.9, 0.4, -0.2])])


@pytest.mark.parametrize("f", TABLE, ids=lambda f: f.__name__)
class TestCompositionality:
    """plain, jvp, linearize, vjp, grad, jacfwd, jacrev, hessian, grad∘grad, vmap, vmap∘grad
    and grad∘vmap agree with each other and with finite differences."""

    def test_first_order_modes_agree(self, f):
        for x in (X, -X):
            g = grad(f)(x)
            np.testing.assert_allclose(g, numerical_grad(f, x), rtol=1e-6, atol=1e-8)
            out, tangent = jvp(f, (x,), (V,))
            np.testing.assert_allclose(out, f(x), rtol=1e-14)
            np.testing.assert_allclose(tangent, g @ V, rtol=1e-10)
            out_lin, f_jvp = linearize(f, x)
            np.testing.assert_allclose(out_lin, f(x), rtol=1e-14)
            np.testing.assert_allclose(f_jvp(V), g @ V, rtol=1e-10)
            _, vjp_fn = vjp(f, x)
            np.testing.assert_allclose(vjp_fn(1.0)[0], g, rtol=1e-12)
            value, g2 = value_and_grad(f)(x)
            np.testing.assert_allclose(value, f(x), rtol=1e-14)
            np.testing.assert_allclose(g2, g, rtol=1e-14)
            np.testing.assert_allclose(jacfwd(f)(x), g, rtol=1e-10)
            np.testing.assert_allclose(jacrev(f)(x), g, rtol=1e-10)

    def test_second_order_modes_agree(self, f):
        h = hessian(f)(X)
        assert h.shape == (3, 3)
        np.testing.assert_allclose(h, h.T, rtol=1e-9, atol=1e-12)
        for jac in (jacfwd(grad(f)), jacrev(grad(f)), jacrev(jacrev(f)), jacfwd(jacfwd(f))):
            np.testing.assert_allclose(jac(X), h, rtol=1e-9, atol=1e-12)
        columns = np.stack([numerical_grad(lambda x, i=i: grad(f)(x)[i], X) for i in range(3)])
        np.testing.assert_allclose(h, columns, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad(grad(lambda s: f(X + s * V)))(0.0), V @ h @ V,
                                   rtol=1e-9)
        np.testing.assert_allclose(jvp(grad(f), (X,), (V,))[1], h @ V, rtol=1e-9, atol=1e-12)

    def test_batched_modes_agree(self, f):
        want = np.array([f(x) for x in XB])
        np.testing.assert_allclose(vmap(f)(XB), want, rtol=1e-14)
        grads = np.stack([grad(f)(x) for x in XB])
        np.testing.assert_allclose(vmap(grad(f))(XB), grads, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grad(lambda xb: vmap(f)(xb).sum())(XB), grads, rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(vmap(hessian(f))(XB[:2]),
                                   np.stack([hessian(f)(x) for x in XB[:2]]), rtol=1e-12,
                                   atol=1e-14)

    def test_check_grads_order_two(self, f):
        check_grads(f, (X,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("f", [f_while, f_while_data_dependent, tutorial_f],
                         ids=lambda f: f.__name__)
def test_compositionality_forward_only_while(f):
    """while_loop: the forward-mode half of the table (and vmap) agree; reverse raises."""
    x = X if f is not tutorial_f else 2.0
    fd = numerical_grad(lambda a: f(a), np.asarray(x, float))
    np.testing.assert_allclose(jacfwd(f)(x), fd, rtol=1e-6, atol=1e-8)
    out, t = jvp(f, (x,), (np.ones_like(x),))
    np.testing.assert_allclose(out, f(x), rtol=1e-14)
    np.testing.assert_allclose(t, np.sum(jacfwd(f)(x)), rtol=1e-10)
    xb = np.stack([x, np.asarray(x) * 1.1])
    np.testing.assert_allclose(vmap(f)(xb), [f(a) for a in xb], rtol=1e-14)
    np.testing.assert_allclose(vmap(jacfwd(f))(xb), [jacfwd(f)(a) for a in xb], rtol=1e-12)
    h = jacfwd(jacfwd(f))(x)
    np.testing.assert_allclose(h, np.transpose(h) if np.ndim(h) else h, rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError, match=REV_WHILE):
        grad(lambda a: fnp.sum(f(a)))(x)


# ============================================================================ random programs

# (op on the carry h and the step's x, same op in NumPy): every op keeps the shape.
OPS = {
    "add_x": lambda m, h, x: h + x,
    "mul_x": lambda m, h, x: h * x,
    "sin": lambda m, h, x: m.sin(h),
    "tanh_mix": lambda m, h, x: m.tanh(h * 0.5 - x),
    "scale": lambda m, h, x: h * 0.75,
    "exp_small": lambda m, h, x: m.exp(-(h**2)),
    "square_sum": lambda m, h, x: h**2 * 0.1 + m.sum(x) * 0.1,
    "flip_sum": lambda m, h, x: h + m.mean(h),
}


@st.composite
def scan_programs(draw):
    shape = draw(st.sampled_from([(), (2,), (2, 3)]))
    ops = draw(st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=4))
    y_ops = draw(st.lists(st.sampled_from(sorted(OPS)), min_size=0, max_size=2))
    length = draw(st.integers(0, 4))
    reverse = draw(st.booleans())
    dtype = draw(st.sampled_from([F32, F64]))
    return shape, tuple(ops), tuple(y_ops), length, reverse, dtype


def _apply(m, ops, h, x):
    for op in ops:
        h = OPS[op](m, h, x)
    return h


@given(program=scan_programs(), seed=st.integers(0, 2**16))
def test_random_scan_bodies_match_python_loop(program, seed):
    shape, ops, y_ops, length, reverse, dtype = program
    rng = np.random.default_rng(seed)
    init = rng.uniform(-1, 1, size=shape).astype(dtype)
    xs = rng.uniform(-1, 1, size=(length, *shape)).astype(dtype)

    def body(m):
        def step(carry, x):
            h, n = carry
            new = _apply(m, ops, h, x)
            return (new, n + 1), (_apply(m, y_ops, new, x), n)
        return step

    carry, ys = lax.scan(body(fnp), (init, 0), xs, reverse=reverse)
    ref_carry, ref_ys = (init, 0), (np.zeros((0, *shape), dtype), np.zeros(0, int))
    if length:
        ref_carry, ref_ys = py_scan(body(np), (init, 0), xs, reverse=reverse)
    tol = 1e-5 if dtype == F32 else 1e-13
    assert_trees_close((carry, ys), (ref_carry, ref_ys), rtol=tol, atol=tol)
    # forward and reverse mode agree with each other (and, via check_grads, with FD)
    f = lambda init, xs: fnp.sum(lax.scan(body(fnp), (init, 0), xs, reverse=reverse)[1][0]) \
        + fnp.sum(lax.scan(body(fnp), (init, 0), xs, reverse=reverse)[0][0])
    if dtype == F64:
        check_grads(f, (init, xs), order=1, modes=("fwd", "rev"))
    g = grad(f, argnums=(0, 1))(init, xs)
    assert g[0].dtype == g[1].dtype == dtype and g[1].shape == xs.shape


@given(shape=st.sampled_from([(), (3,), (2, 2)]),
       branch_ops=st.lists(st.lists(st.sampled_from(sorted(OPS)), min_size=0, max_size=3),
                           min_size=1, max_size=3),
       index=st.integers(-1, 3), seed=st.integers(0, 2**16))
def test_random_switch_branches_match_python(shape, branch_ops, index, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-1, 1, size=(2, *shape))
    branches = [lambda a, b, ops=ops, m=fnp: _apply(m, ops, a, b) for ops in branch_ops]
    taken = min(max(index, 0), len(branch_ops) - 1)
    want = _apply(np, branch_ops[taken], a, b)
    got = lax.switch(index, branches, a, b)
    assert_trees_close(got, np.asarray(want, float), rtol=1e-14)
    if len(branch_ops) == 2:
        got = lax.cond(index > 0, branches[1], branches[0], a, b)
        want = _apply(np, branch_ops[1 if index > 0 else 0], a, b)
        assert_trees_close(got, np.asarray(want, float), rtol=1e-14)
    # batched index: every lane takes its own branch
    idx = rng.integers(-1, 4, size=3)
    batched = vmap(lambda i, a: lax.switch(i, branches, a, b))(idx, np.stack([a, b, a * 0.5]))
    want = [_apply(np, branch_ops[min(max(i, 0), len(branch_ops) - 1)], x, b)
            for i, x in zip(idx, (a, b, a * 0.5))]
    np.testing.assert_allclose(batched, np.stack([np.broadcast_to(w, shape) for w in want]),
                               rtol=1e-14)
    f = lambda a, b: fnp.sum(lax.switch(index, branches, a, b))
    check_grads(f, (a, b), order=1, modes=("fwd", "rev"))


# ============================================================================ bad input


def test_cond_branches_of_different_types_name_both():
    with pytest.raises(TypeError, match=r"true_fun returns .* \(f64\[3\]\) and false_fun "
                                        r"returns .* \(f64\[\]\)"):
        lax.cond(True, lambda a: a, lambda a: a.sum(), X)
    with pytest.raises(TypeError, match=r"true_fun .*f64\[3\].*false_fun .*f32\[3\]"):
        lax.cond(True, lambda a: a, lambda a: a.astype(np.float32), X)
    with pytest.raises(TypeError, match=r"branch 0 .*f64\[3\].*branch 2 .*i64\[3\]"):
        lax.switch(0, [lambda a: a, lambda a: a, lambda a: a.astype(np.int64)], X)


def test_cond_branches_of_different_structures():
    with pytest.raises(TypeError, match=r"structure.*true_fun returns PyTreeDef\(\(\*, \*\)\)"
                                        r".*false_fun returns PyTreeDef\(\[\*, \*\]\)"):
        lax.cond(True, lambda a: (a, a), lambda a: [a, a], X)
    with pytest.raises(TypeError, match=r"false_fun returns PyTreeDef\(\*\)"):
        lax.cond(False, lambda a: {"x": a}, lambda a: a, X)


@pytest.mark.parametrize("pred, what", [(np.array([True, False]), r"bool\[2\]"),
                                        (1.0, r"f64\[\]"), (np.float32(0.0), r"f32\[\]"),
                                        (np.ones((1,), int), r"i64\[1\]")], ids=repr)
def test_cond_predicate_must_be_a_scalar_bool_or_int(pred, what):
    with pytest.raises(TypeError, match=rf"cond: the predicate must be a scalar .*{what}"):
        lax.cond(pred, lambda: 1.0, lambda: 0.0)
    with pytest.raises(TypeError, match=rf"switch: the index must be a scalar .*{what}"):
        lax.switch(pred, [lambda: 1.0, lambda: 0.0])
    with pytest.raises(TypeError, match=r"predicate .*f64\[\]"):  # traced as well
        vmap(lambda p: lax.cond(p, lambda: 1.0, lambda: 0.0))(X)
    with pytest.raises(ValueError, match=r"switch: needs at least one branch"):
        lax.switch(0, [], X)


def test_while_loop_body_changing_the_carry_type_names_old_and_new():
    with pytest.raises(TypeError, match=r"body_fun changes the carry's type: it receives "
                                        r".*\(f64\[\]\) and returns .*\(f32\[\]\)"):
        lax.while_loop(lambda c: c < 3, lambda c: c.astype(np.float32), np.float64(1.0))
    with pytest.raises(TypeError, match=r"receives .*\(f64\[3\]\) .*returns .*\(f64\[6\]\)"):
        lax.while_loop(lambda c: c.sum() < 3, lambda c: fnp.concatenate([c, c]), X)
    with pytest.raises(TypeError, match=r"receives PyTreeDef\(\(\*, \*\)\).*returns "
                                        r"PyTreeDef\(\[\*, \*\]\)"):
        lax.while_loop(lambda c: c[0] < 3, lambda c: [c[0] + 1, c[1]], (0, 1.0))
    with pytest.raises(TypeError, match=r"receives .*\(i64\[\]\) .*returns .*\(f64\[\]\)"):
        lax.while_loop(lambda c: c < 3, lambda c: c + 0.5, np.int64(0))


@pytest.mark.parametrize("cond_fun, what", [(lambda c: c, r"\(f64\[\]\)"),
                                            (lambda c: c < X, r"\(bool\[3\]\)"),
                                            (lambda c: (c < 3, c < 4), r"\(bool\[\], bool\[\]\)"),
                                            (lambda c: 1, r"\(i64\[\]\)")],
                         ids=["float", "vector", "pair", "int"])
def test_while_loop_cond_fun_must_return_a_bool_scalar(cond_fun, what):
    with pytest.raises(TypeError, match=rf"cond_fun must return a boolean scalar, got {what}"):
        lax.while_loop(cond_fun, lambda c: c * 2.0, 1.0)


@pytest.mark.parametrize("lower, upper, what", [(0.0, 3, r"f64\[\] and i64\[\]"),
                                                (0, np.float32(3), r"i64\[\] and f32\[\]"),
                                                (0, np.array([3]), r"i64\[\] and i64\[1\]"),
                                                (True, 3, r"bool\[\] and i64\[\]")],
                         ids=["float_lower", "float32_upper", "vector", "bool"])
def test_fori_loop_bounds_must_be_scalar_integers(lower, upper, what):
    with pytest.raises(TypeError, match=rf"fori_loop: lower and upper must be scalar "
                                        rf"integers, got {what}"):
        lax.fori_loop(lower, upper, lambda i, c: c, 0.0)


def test_scan_xs_of_unequal_lengths_name_them():
    with pytest.raises(ValueError, match=r"unequal leading sizes \(\(3,\), \(4, 2\)\)"):
        lax.scan(lambda c, x: (c, None), 0.0, (np.zeros(3), np.zeros((4, 2))))
    with pytest.raises(ValueError, match=r"\(\(3,\)\) or differ from length=4"):
        lax.scan(lambda c, x: (c, None), 0.0, np.zeros(3), length=4)
    with pytest.raises(ValueError, match=r"leading axis"):
        lax.scan(lambda c, x: (c, None), 0.0, 1.0)


@pytest.mark.parametrize("body", [lambda c, x: c + x, lambda c, x: (c + x, c, c),
                                  lambda c, x: ((c + x,),), lambda c, x: None],
                         ids=["leaf", "triple", "single", "none"])
def test_scan_body_must_return_a_pair(body):
    with pytest.raises(TypeError, match=r"scan: the body must return a pair \(carry, y\)"):
        lax.scan(body, 0.0, np.zeros(3))


def test_scan_needs_xs_or_length_and_a_fixed_carry_type():
    with pytest.raises(ValueError, match=r"scan: with no xs, give the number of steps as "
                                         r"length="):
        lax.scan(lambda c, x: (c, c), 0.0, None)
    with pytest.raises(TypeError, match=r"scan: the body changes the carry's type: it "
                                        r"receives .*\(f64\[\]\) and returns .*\(f64\[2\]\)"):
        lax.scan(lambda c, x: (c + x, c), 1.0, np.ones((3, 2)))
    with pytest.raises(TypeError, match=r"receives .*\(i64\[\]\) and returns .*\(f64\[\]\)"):
        lax.scan(lambda c, x: (c + x, c), np.int64(0), np.zeros(3))


def test_dce_keeps_the_used_consts_of_a_body_with_consts():
    """Bodies built by the rules may be closed jaxprs with constants of their own; DCE
    must prune their constants together with their constvars."""
    from fgrad.interpreters.staging import trace_to_jaxpr
    from fgrad.ir import ShapedArray
    from fgrad.lax.control_flow import cond_p, scan_p

    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    s = ShapedArray((2,), F64)
    body = trace_to_jaxpr(lambda c, x: [c + x, c * a, fnp.sin(c) * b], [s, s])
    branch = trace_to_jaxpr(lambda c: [c * a, fnp.sin(c) * b], [s])
    assert len(body.consts) == len(branch.consts) == 2
    xs = RNG.normal(size=(3, 2))
    fns = [lambda c: scan_p.bind(c, xs, jaxpr=body, num_consts=0, num_carry=1, length=3,
                                 reverse=False)[2],
           lambda c: cond_p.bind(np.int32(1), c, branches=(branch, branch))[1]]
    for fn in fns:
        jaxpr = make_jaxpr(fn)(X[:2])
        typecheck(jaxpr)
        np.testing.assert_allclose(fgrad.core.eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, X[:2])[0],
                                   fn(X[:2]))
