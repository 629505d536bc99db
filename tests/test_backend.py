"""The jit backend (fgrad/backend): compiled programs agree with eager evaluation.

* Parity (at the end of the module): every op spec of tests/test_numpy.py and
  tests/test_lax.py (all shapes, all dtypes) under `fgrad.jit` equals eager.
  Compiling is the cost (Numba spends tens of milliseconds per loop or array it
  lowers), so cases are deduplicated (equal programs share a kernel) and grouped ~20
  to a jitted function; with a spare core, a helper process compiles the groups from
  the last one backwards into the shared kernel cache, from the start of the module,
  while this process runs the other tests and then the groups from the first one.
* Control flow (scan, fori_loop, while_loop, cond, nested), transforms around and
  inside jit, fusion group counts, the passes, the kernel cache (cold and warm
  processes, concurrent writers, truncated and corrupt files, unwritable directories),
  inputs never mutated, outputs fresh, and host fallbacks.

The module compiles into a private temporary FGRAD_CACHE_DIR, with FGRAD_JIT_STRICT=1
so that a program the backend cannot compile fails instead of falling back.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import numpy as np
import pytest
import test_lax
import test_numpy
from _opspec import VALUE_TOL, OpSpec, assert_same, cases
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fgrad.backend import cache, codegen, executor, fusion, passes
from fgrad.core import Primitive, eval_jaxpr
from fgrad.errors import FgradError
from fgrad.ir import Literal, ShapedArray
from fgrad.jit import executable_for
from fgrad.tree_util import tree_leaves

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory):
    """A private kernel cache for this module, strict mode, and (with a spare core) a
    helper process precompiling the parity sweep while the other tests run."""
    patch = pytest.MonkeyPatch()
    directory = tmp_path_factory.mktemp("kernels")
    patch.setenv("FGRAD_CACHE_DIR", str(directory))
    patch.setenv("FGRAD_JIT_STRICT", "1")
    helper = _start_helper()
    yield directory
    if helper is not None:
        helper.kill()
        helper.wait()
    patch.undo()


def compiled(fn, *args):
    """The backend executable `jit(fn)` runs for these arguments."""
    return executable_for(fgrad.jit(fn).lower(*args).jaxpr)


def assert_tree_close(got, want, rtol=1e-12, what=""):
    g_leaves, w_leaves = tree_leaves(got), tree_leaves(want)
    assert len(g_leaves) == len(w_leaves), what
    for g, w in zip(g_leaves, w_leaves):
        assert isinstance(g, (np.ndarray, np.generic)), f"{what}: got {type(g).__name__}"
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (what, g.shape, g.dtype, w.dtype)
        if w.dtype.kind == "f":
            tol = max(rtol, VALUE_TOL.get(w.dtype, 0.0))
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=what)
        else:
            np.testing.assert_array_equal(g, w, err_msg=what)


def check_jit(fn, *args, rtol=1e-12):
    """jit(fn) equals fn, leaves its inputs alone, and returns fresh NumPy values."""
    inputs = tree_leaves(args)
    saved = [np.array(a, copy=True) for a in inputs]
    with np.errstate(all="ignore"):
        want = fn(*args)
    got = fgrad.jit(fn)(*args)
    assert_tree_close(got, want, rtol, what=getattr(fn, "__name__", "fn"))
    for a, s in zip(inputs, saved):
        np.testing.assert_array_equal(a, s, err_msg="an input was mutated")
    for leaf in tree_leaves(got):
        for a in inputs:
            if isinstance(a, np.ndarray) and isinstance(leaf, np.ndarray):
                assert not np.may_share_memory(leaf, a), "an output aliases an input"
    return got


# ============================================================================ control flow

X = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
FLOAT_DTYPES = [np.float64, np.float32]


def scan_decay(x):
    def body(c, xi):
        c = c * 0.9 + fnp.sin(xi)
        return c, c.sum()
    return lax.scan(body, fnp.zeros(3, x.dtype), x)


def scan_reverse_scalar(x):
    return lax.scan(lambda c, xi: (c + xi, c * xi), x[0, 0] * 0, x.ravel(), reverse=True)


def fori_static(x):
    return lax.fori_loop(0, 5, lambda i, c: c * 1.1 + i, x)


def while_pair(x):
    return lax.while_loop(lambda c: c[0] < 10.0, lambda c: (c[0] + 1.5, c[1] * 2), (0.0, x))


def nested_loops(x):
    def outer(c, xi):
        inner = lax.fori_loop(0, 3, lambda i, d: d + xi * i, c)
        smaller = lax.cond(inner.sum() > 0, lambda a: a * 0.5, lambda a: -a, inner)
        return smaller, inner.max()
    return lax.scan(outer, fnp.ones(3, x.dtype), x)


def while_with_cond(x):
    def body(c):
        step, value = c
        value = lax.cond(step % 2 == 0, lambda a: a + 1.0, lambda a: a * 2.0, value)
        return step + 1, value
    return lax.while_loop(lambda c: c[0] < 5, body, (0, x))


CONTROL_FLOW = [scan_decay, scan_reverse_scalar, fori_static, while_pair, nested_loops,
                while_with_cond]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("fn", CONTROL_FLOW, ids=lambda f: f.__name__)
def test_control_flow_under_jit(fn, dtype):
    check_jit(fn, X.astype(dtype))


@pytest.mark.parametrize("pred", [True, False])
def test_cond(pred):
    check_jit(lambda p, x: lax.cond(p, lambda a: a * 2, lambda a: a - 1, x), pred, X)
    check_jit(lambda p, x: lax.cond(p, lambda a: a, lambda a: a * 2, x), pred, X)  # aliasing


@pytest.mark.parametrize("index", [-3, 0, 1, 2, 7])
def test_switch_clamps(index):
    branches = [lambda a: a, lambda a: a * 2, fnp.exp]
    check_jit(lambda i, x: lax.switch(i, branches, x), index, X)


def test_fori_loop_with_traced_bound_is_a_while_loop():
    check_jit(lambda x, n: lax.fori_loop(0, n, lambda i, c: c * 1.1 + i, x), X, 4)
    assert "while True:" in "".join(compiled(
        lambda x, n: lax.fori_loop(0, n, lambda i, c: c + i, x), X, 4).kernels().values())


def test_scan_of_length_zero():
    check_jit(lambda x: lax.scan(lambda c, xi: (c + xi.sum(), xi * 2), 0.0, x[:0]), X)


def test_loops_are_native():
    """The loop body is inline code in the kernel: no call back to Python per step."""
    source = "".join(compiled(scan_decay, X).kernels().values())
    assert re.search(r"for s0 in range\(\w+\):", source)
    assert "if " in "".join(compiled(nested_loops, X).kernels().values())


# ============================================================================ transforms


def mlp_loss(params, x, y):
    h = fnp.tanh(x @ params["w1"] + params["b1"])
    out = h @ params["w2"] + params["b2"]
    return fnp.mean((out - y) ** 2)


RNG = np.random.default_rng(0)
PARAMS = {"w1": RNG.normal(size=(4, 8)), "b1": RNG.normal(size=8),
          "w2": RNG.normal(size=(8, 2)), "b2": RNG.normal(size=2)}
BATCH = (RNG.normal(size=(16, 4)), RNG.normal(size=(16, 2)))


def sgd_step(params, x, y):
    loss, grads = fgrad.value_and_grad(mlp_loss)(params, x, y)
    return loss, {k: params[k] - 0.1 * grads[k] for k in params}


def test_jit_of_grad_and_grad_of_jit():
    want = fgrad.grad(mlp_loss)(PARAMS, *BATCH)
    assert_tree_close(fgrad.jit(fgrad.grad(mlp_loss))(PARAMS, *BATCH), want)
    assert_tree_close(fgrad.grad(fgrad.jit(mlp_loss))(PARAMS, *BATCH), want)


def test_training_step_under_jit():
    check_jit(sgd_step, PARAMS, *BATCH)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_a_new_batch_size_reuses_the_kernel(dtype):
    """Kernels read sizes at run time: batches of 16, 5 and 11 rows run one compiled
    kernel (mean's divisor included), with the right values."""
    step = fgrad.jit(sgd_step)
    params = {k: v.astype(dtype) for k, v in PARAMS.items()}
    x, y = (a.astype(dtype) for a in BATCH)
    sources = set()
    compiled = []
    for rows in (16, 5, 11):
        batch = (x[:rows], y[:rows])
        assert_tree_close(step(params, *batch), sgd_step(params, *batch),
                          rtol=1e-12 if dtype == np.float64 else 1e-5)
        sources.add(executor.kernel_source(step.lower(params, *batch).jaxpr))
        compiled.append(cache.stats()["compiled"])
    assert len(sources) == 1
    assert compiled[0] == compiled[1] == compiled[2]


def test_vmap_of_jit_and_jit_of_vmap_of_grad():
    row = lambda r: fnp.sin(r) * r.sum()  # noqa: E731
    assert_tree_close(fgrad.vmap(fgrad.jit(row))(X), fgrad.vmap(row)(X))
    per_row = fgrad.vmap(fgrad.grad(lambda r: fnp.sum(fnp.sin(r) ** 2)))
    check_jit(per_row, X)


def test_jvp_of_jit_and_grad_through_loops():
    f = lambda x: fnp.sum(fnp.tanh(x) * x)  # noqa: E731
    t = np.ones_like(X)
    assert_tree_close(fgrad.jvp(fgrad.jit(f), (X,), (t,)), fgrad.jvp(f, (X,), (t,)))
    check_jit(fgrad.grad(lambda x: scan_decay(x)[1].sum()), X)
    check_jit(fgrad.grad(lambda x: lax.fori_loop(0, 3, lambda i, c: fnp.sin(c) * c, x).sum()),
              X)


def test_float32_stays_float32():
    x = X.astype(np.float32)
    out = check_jit(lambda x: (x * 2.0 + 1, fnp.sum(x), fnp.exp(x).mean(axis=0)), x)
    assert all(leaf.dtype == np.float32 for leaf in tree_leaves(out))


# ============================================================================ values in, out


def test_outputs_are_fresh_and_inputs_untouched():
    x = np.arange(6.0).reshape(2, 3)
    out = check_jit(lambda x: (x, x, x.reshape(3, 2), x + 1, 2.0), x)
    assert out[0] is not out[1] and not np.may_share_memory(out[0], out[1])
    assert isinstance(out[4], np.float64)


def test_unusual_inputs():
    check_jit(lambda x: x * 2, np.asfortranarray(RNG.normal(size=(3, 4))))
    readonly = RNG.normal(size=(3, 4))
    readonly.flags.writeable = False
    check_jit(lambda x: x * 2, readonly)
    check_jit(lambda x: x * 2, np.array(3.0))  # a 0-d array for a scalar input
    check_jit(lambda x: x[::2, 1:] * 2, RNG.normal(size=(5, 4))[:, ::-1])
    check_jit(lambda x, n: x * n, X, 3)  # a Python int, weakly typed


def test_scalars_come_back_as_numpy_scalars():
    out = check_jit(lambda x: (fnp.sum(x), fnp.argmax(x), x.sum() > 0), X)
    assert [type(o) for o in out] == [np.float64, np.int64, np.bool_]


def test_integer_and_bool_programs():
    check_jit(lambda x: (x > 0).astype(np.int32) * 3 + 1, X)
    check_jit(lambda x: x.astype(np.int32) @ x.astype(np.int32).T, X * 5)
    check_jit(lambda x: fnp.argmax(x, axis=0), X)


def test_shape_operations():
    check_jit(lambda x, y: fnp.concatenate([x, y], axis=1), X, X)
    check_jit(lambda x: fnp.pad(x, ((1, 2), (0, 1))), X)
    check_jit(lambda x: lax.pad(x, 0.0, [(-1, 1, 1), (1, -1, 0)]), X)
    check_jit(lambda x: fnp.einsum("ij,kj->ik", x, x), X)
    check_jit(lambda x: fnp.tile(x, (2, 1)), X)


@pytest.mark.skipif(not all(hasattr(lax.lax, n) for n in ("gather", "scatter_add", "cumsum",
                                                           "argsort")),
                    reason="gather/scatter_add/cumsum/argsort not in fgrad.lax yet")
def test_indexing_and_scans_lower_natively():
    L = lax.lax
    idx = np.array([2, -1, 0, 7])
    with warnings.catch_warnings():
        warnings.simplefilter("error", executor.BackendWarning)
        check_jit(lambda x, i: (L.gather(x, i, 1), L.gather(x, i, 0)), X, idx)
        check_jit(lambda x, i: L.gather(x, i, 0), X, np.int32(1))
        check_jit(lambda x, i: L.scatter_add(x, i, np.ones((2, 4)), 1), X, idx)
        check_jit(lambda x: (L.cumsum(x, 1), L.cumsum(x, 0, True),
                             L.cumsum(x.astype(np.float32), 1)), X)
        check_jit(lambda x: (L.argsort(x, 1), L.argsort(x, 0)), X)
        check_jit(lambda x: L.argsort(x, 0), np.array([3.0, np.nan, 1.0, 1.0, -np.inf]))
        check_jit(fgrad.grad(lambda x: fnp.sum(x[np.array([1, 0, 1])] ** 2)), X)


# ============================================================================ fusion


def softmax(x):
    e = fnp.exp(x - fnp.max(x, axis=-1, keepdims=True))
    return e / fnp.sum(e, axis=-1, keepdims=True)


def test_elementwise_chain_is_one_group():
    f = lambda x, y: fnp.exp(fnp.sin(x) * y + 1.0) - fnp.cos(y) / 2.0  # noqa: E731
    exe = compiled(f, X, X)
    assert len(exe.groups) == 1
    check_jit(f, X, X)


def test_softmax_is_two_or_three_groups():
    x = RNG.normal(size=(4, 5))
    assert 2 <= len(compiled(softmax, x).groups) <= 3
    check_jit(softmax, x)


def test_a_value_read_by_two_groups_is_materialised():
    def f(x):
        e = fnp.exp(x)
        return fnp.sum(e, axis=0), fnp.sum(e, axis=1)  # two reductions over other axes
    closed = passes.optimize(fgrad.make_jaxpr(f)(X))
    groups = [n for n in fusion.fuse(closed.jaxpr) if isinstance(n, fusion.Group)]
    exp_var = closed.jaxpr.eqns[0].outvars[0]
    assert sum(exp_var in g.outputs for g in groups) == 1
    check_jit(f, X)


def test_listing_and_kernels():
    lowered = fgrad.jit(softmax).lower(X)
    text = lowered.as_text()
    assert "group[" in text and "reduce_max" in text
    kernels = lowered.kernels()
    assert "host" in kernels and any(k.startswith("k_") for k in kernels)
    assert "@njit" in "".join(kernels.values())


def test_parallel_groups(monkeypatch):
    """Groups above the size threshold run their outermost loop in a prange."""
    monkeypatch.setattr(codegen, "PARALLEL_MIN_SIZE", 8)
    x = RNG.normal(size=(6, 5))
    f = lambda x: (fnp.sin(x) * 2, fnp.sum(fnp.exp(x), axis=1))  # noqa: E731
    assert "prange" in "".join(compiled(f, x).kernels().values())
    check_jit(f, x)


def _random_program(ops: list[tuple[str, int, int]]):
    """A traced function from a list of (op, operand, operand) picks over earlier values."""
    def program(x, y):
        values = [x, y, fnp.sum(x, axis=1)]
        for op, i, j in ops:
            a, b = values[i % len(values)], values[j % len(values)]
            if op == "add":
                values.append(a + b if a.shape == b.shape else a)
            elif op == "sin":
                values.append(fnp.sin(a))
            elif op == "sum":
                values.append(fnp.sum(a, axis=-1) if a.ndim else a)
            elif op == "bcast":
                values.append(a[:, None] + x if a.shape == (3,) else a)
            elif op == "dot":
                values.append(a @ x.T if a.shape == (3, 4) else a)
            elif op == "max":
                values.append(fnp.max(a, axis=0) if a.ndim == 2 else a * 2)
            elif op == "center":  # a keepdims reduction (a reshape) broadcast back
                values.append(a - fnp.mean(a, axis=-1, keepdims=True) if a.ndim else a)
        return values[3:] or [x]
    return program


OPS = ["add", "sin", "sum", "bcast", "dot", "max", "center"]


@given(st.lists(st.tuples(st.sampled_from(OPS),
                          st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=25))
def test_fusion_partitions_any_program(ops):
    """Whatever the program, fusion gives groups in an order where every value is
    defined before it is read, and evaluating them in that order gives the program's
    results."""
    x, y = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    closed = passes.optimize(fgrad.make_jaxpr(_random_program(ops))(x, y))
    env = dict(zip(closed.jaxpr.invars, [x, y]))
    env.update(zip(closed.jaxpr.constvars, closed.consts))
    for node in fusion.fuse(closed.jaxpr):
        for eqn in node.eqns if isinstance(node, fusion.Group) else [node]:
            ins = [a.val if isinstance(a, Literal) else env[a] for a in eqn.invars]
            outs = eqn.primitive.impl(*ins, **eqn.params)
            env.update(zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]))
        if isinstance(node, fusion.Group):
            assert all(e.outvars[0].aval.shape == node.domain for e in node.eqns
                       if e.primitive.name not in fusion.REDUCTIONS)
    want = eval_jaxpr(closed.jaxpr, closed.consts, x, y)
    got = [a.val if isinstance(a, Literal) else env[a] for a in closed.jaxpr.outvars]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w)


# ============================================================================ passes


def _prims(closed) -> list[str]:
    return [e.primitive.name for e in closed.jaxpr.eqns]


def test_calls_are_inlined():
    inner = fgrad.jit(lambda x: fnp.sin(x) * 2)

    @fgrad.custom_jvp
    def f(x):
        return fnp.exp(x)

    f.defjvp(lambda p, t: (f(p[0]), f(p[0]) * t[0]))

    @fgrad.custom_vjp
    def g(x):
        return fnp.cos(x)

    g.defvjp(lambda x: (g(x), x), lambda x, ct: (-fnp.sin(x) * ct,))
    outer = lambda x: fgrad.checkpoint(lambda y: inner(y) + f(y) * g(y))(x)  # noqa: E731
    closed = passes.optimize(fgrad.make_jaxpr(outer)(X))
    assert not {"jit", "checkpoint", "custom_jvp_call", "custom_vjp_call"} & set(_prims(closed))
    check_jit(outer, X)
    check_jit(fgrad.grad(lambda x: outer(x).sum()), X)


def test_cse_folding_and_dce():
    def f(x):
        unused = fnp.cos(x) * 3  # noqa: F841
        return fnp.sin(x) + fnp.sin(x) * lax.mul(np.float64(2.0), np.float64(3.0))
    closed = fgrad.make_jaxpr(f)(X)
    assert _prims(closed).count("mul") == 2  # one of them on two literals
    prims = _prims(passes.optimize(closed))
    assert prims.count("sin") == 1 and prims.count("mul") == 1 and "cos" not in prims
    check_jit(f, X)


def test_multiplying_by_one_is_dropped():
    """The seed cotangent 1.0 leaves `mul x 1.0` in every gradient; none survives."""
    closed = fgrad.make_jaxpr(fgrad.grad(lambda x: fnp.sum(fnp.sin(x) * 3.0)))(X)
    assert "1.0" in str(closed.jaxpr)
    prims = _prims(passes.optimize(closed))
    assert prims.count("mul") == 1 and "div" not in prims  # cos(x) * 3.0
    check_jit(fgrad.grad(lambda x: fnp.sum(fnp.sin(x) * 3.0)), X)


def test_transposes_fold_into_matrix_products():
    a, b = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 4))
    for f in (lambda a, b: a.T @ b, lambda a, b: (a.T @ b).T):
        assert "transpose" not in _prims(passes.optimize(fgrad.make_jaxpr(f)(a, b)))
        check_jit(f, a, b)


# ============================================================================ the kernel cache


def _run_python(code: str, cache_dir, extra_env: dict | None = None) -> str:
    env = dict(os.environ, FGRAD_CACHE_DIR=str(cache_dir), PYTHONPATH=REPO,
               **(extra_env or {}))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


PROGRAM = """
    import numpy as np, fgrad, fgrad.numpy as fnp, fgrad.backend
    f = fgrad.jit(lambda x: fnp.tanh(fnp.sin(x) * 3.0 + 1.0).sum(axis=0))
    print(repr(f(np.linspace(0, 1, 12).reshape(3, 4)).tolist()))
    print(fgrad.backend.stats())
"""


def _outcome(stdout: str) -> tuple[str, dict]:
    value, stats = stdout.strip().splitlines()[-2:]
    return value, eval(stats)


def test_cold_then_warm_process(tmp_path):
    cold_value, cold = _outcome(_run_python(PROGRAM, tmp_path))
    warm_value, warm = _outcome(_run_python(PROGRAM, tmp_path))
    assert cold["compiled"] >= 1
    assert warm["compiled"] == 0 and warm["loaded"] >= 1
    assert cold_value == warm_value


def test_two_processes_compiling_one_kernel_at_once(tmp_path):
    env = dict(os.environ, FGRAD_CACHE_DIR=str(tmp_path), PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(PROGRAM)], env=env,
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert len({_outcome(out)[0] for out, _ in outs}) == 1
    assert len(list(tmp_path.glob("k_*.py"))) == 1
    assert not list(tmp_path.glob(".k_*"))  # no temporary file left behind
    _, again = _outcome(_run_python(PROGRAM, tmp_path))
    assert again["compiled"] == 0


def test_truncated_and_corrupt_cache_files(tmp_path):
    value, _ = _outcome(_run_python(PROGRAM, tmp_path))
    (kernel,) = tmp_path.glob("k_*.py")
    kernel.write_text(kernel.read_text()[:200])  # truncated
    value2, stats = _outcome(_run_python(PROGRAM, tmp_path))
    assert value2 == value and stats["rewritten"] == 1
    for f in (tmp_path / "__pycache__").glob("*.nb*"):
        f.write_bytes(b"garbage")
    value3, stats = _outcome(_run_python(PROGRAM, tmp_path))
    assert value3 == value and stats["compiled"] == 1
    assert cache.digest(kernel.read_text()) in kernel.name


def test_unwritable_cache_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FGRAD_CACHE_DIR", str(blocker / "kernels"))
    with pytest.warns(cache.CacheWarning, match="cannot write"):
        check_jit(lambda x: fnp.cosh(x) * 7.0, X)
    check_jit(lambda x: fnp.cosh(x) * 8.0, X)  # warned once; still compiles


def test_version_salt_changes_the_file(monkeypatch):
    x = RNG.normal(size=(3,))
    f = lambda x: fnp.arctan(x) * 11.0  # noqa: E731
    source = executor.kernel_source(fgrad.jit(f).lower(x).jaxpr)
    monkeypatch.setattr(cache, "salt", lambda: "fgrad 99, numba 0, numpy 0")
    bumped = executor.kernel_source(fgrad.jit(f).lower(x).jaxpr)
    assert cache.digest(source) != cache.digest(bumped)
    assert "fgrad 99" in bumped.splitlines()[0]


def test_same_source_same_module():
    x = RNG.normal(size=(3,))
    before = cache.stats()["memory_hits"]
    check_jit(lambda x: fnp.sinh(x) - 5.0, x)
    check_jit(lambda x: fnp.sinh(x) - 5.0, x)  # a new function, the same program
    assert cache.stats()["memory_hits"] == before + 1


def test_import_fgrad_leaves_numba_alone(tmp_path):
    out = _run_python("import fgrad, sys; print('numba' in sys.modules)", tmp_path)
    assert out.strip() == "False"


# ============================================================================ fallbacks


host_only_p = Primitive("host_only_double")
host_only_p.impl = lambda x: np.asarray(x) * 2
host_only_p.abstract_eval_rule = lambda x: ShapedArray(x.shape, x.dtype)


def test_a_primitive_without_lowering_runs_on_the_host():
    f = lambda x: fnp.exp(host_only_p.bind(fnp.sin(x))) + 1  # noqa: E731
    with pytest.warns(executor.BackendWarning, match="host_only_double"):
        check_jit(f, X)
    exe = compiled(f, X)
    assert "host (NumPy): host_only_double" in exe.as_text()
    g = lambda x: lax.scan(lambda c, r: (c + host_only_p.bind(r), c), fnp.zeros(3), x)  # noqa
    check_jit(g, X)  # inside a loop: the whole loop runs on the host


def test_unsupported_dtypes_fall_back():
    x16 = np.ones(3, np.float16)
    with pytest.warns(executor.BackendWarning, match="float16"):
        assert_tree_close(fgrad.jit(lambda x: x * 2 + 1)(x16), x16 * 2 + 1)


def test_compile_failures_are_fgrad_errors(monkeypatch):
    monkeypatch.setitem(codegen._ELEMENTWISE, "sinh",
                        lambda k, xs, dt, eqn: f"np.no_such_function({xs[0]})")
    f = lambda x: fnp.sinh(x) * 13.0  # noqa: E731
    with pytest.raises(FgradError, match="sinh") as info:
        fgrad.jit(f)(X)
    assert "f64[2,3]" in str(info.value)
    monkeypatch.setenv("FGRAD_JIT_STRICT", "0")
    with pytest.warns(executor.BackendWarning, match="NumPy interpreter"):
        assert_tree_close(fgrad.jit(lambda x: fnp.sinh(x) * 14.0)(X), np.sinh(X) * 14.0)


# ============================================================================ parity sweep

TABLES = {"lax": test_lax.ALL_SPECS, "numpy": test_numpy.ALL_SPECS}
CHUNK = 20


@dataclasses.dataclass
class Case:
    """One (spec, shapes, dtype) point: its arguments, the eager result, and the jitted
    result once computed (or the error)."""

    table: str
    spec: OpSpec
    shapes: tuple
    dtype: np.dtype
    args: tuple = ()
    want: Any = None
    skip: str = ""
    got: Any = None
    error: str = ""

    def label(self) -> str:
        return f"{self.spec.name} shapes={self.shapes} {self.dtype.name}"


class Chunk:
    """Distinct programs (one member case each) jitted together as one function; a case
    whose program equals a member's runs the same compiled function with its own
    arguments in that member's place."""

    def __init__(self, members: list[Case], duplicates: dict[int, list[Case]]):
        self.members = members
        self.duplicates = duplicates  # id(member) -> cases with the same program
        self.jitted = fgrad.jit(self.program)

    def program(self, *flat):
        outs, pos = [], 0
        for case in self.members:
            n = len(case.args)
            outs.append(case.spec.fn(*flat[pos:pos + n]))
            pos += n
        return outs

    def flat(self, replace: tuple[int, tuple] | None = None) -> list:
        args = [c.args for c in self.members]
        if replace is not None:
            args[replace[0]] = replace[1]
        return [a for group in args for a in group]

    def source(self) -> str:
        return executor.kernel_source(self.jitted.lower(*self.flat()).jaxpr)

    def run(self) -> None:
        """Fill in `got` for the members and their duplicates (or `error`)."""
        try:
            outs = self.jitted(*self.flat())
            for i, member in enumerate(self.members):
                member.got = outs[i]
                for dup in self.duplicates.get(id(member), []):
                    dup.got = self.jitted(*self.flat((i, dup.args)))[i]
        except Exception as err:
            if len(self.members) > 1:  # find the culprit: each member alone
                for member in self.members:
                    Chunk([member], self.duplicates).run()
                return
            for case in [self.members[0], *self.duplicates.get(id(self.members[0]), [])]:
                case.error = f"{type(err).__name__}: {err}"


class Sweep:
    """Every case of both tables, deduplicated by program and grouped into chunks."""

    def __init__(self):
        self.by_spec: dict[tuple[str, str], list[Case]] = {}
        programs: dict[str, Case] = {}
        duplicates: dict[int, list[Case]] = {}
        for table, specs in TABLES.items():
            for param in cases(specs):
                spec, shapes, dtype, _ = param.values
                case = Case(table, spec, shapes, dtype)
                self.by_spec.setdefault((table, spec.name), []).append(case)
                closed = self._prepare(case)
                if closed is None:
                    continue
                key = str(passes.optimize(closed).jaxpr)
                if key in programs:
                    duplicates.setdefault(id(programs[key]), []).append(case)
                else:
                    programs[key] = case
        members = sorted(programs.values(), key=lambda c: (
            str([(np.shape(a), np.asarray(a).dtype.name) for a in c.args])))
        self.chunks = [Chunk(members[i:i + CHUNK], duplicates)
                       for i in range(0, len(members), CHUNK)]
        self.done = False

    @staticmethod
    def _prepare(case: Case) -> Any:
        """Sample the arguments, evaluate eagerly and trace; the jaxpr, or None (with
        `skip` set) if the case cannot be traced."""
        case.args = case.spec.args(case.shapes, case.dtype)
        try:
            with np.errstate(all="ignore"):
                case.want = case.spec.fn(*case.args)
            return fgrad.make_jaxpr(case.spec.fn)(*case.args)
        except Exception as err:  # not traceable (a value-dependent shape, ...): not ours
            case.skip = f"{type(err).__name__}: {err}"
            return None

    def run_all(self) -> None:
        if not self.done:
            for chunk in self.chunks:
                chunk.run()
            self.done = True


_SWEEP: list[Sweep] = []


def sweep() -> Sweep:
    if not _SWEEP:
        _SWEEP.append(Sweep())
    return _SWEEP[0]


def _start_helper() -> subprocess.Popen | None:
    """A process compiling the sweep's chunks from the last one backwards into the shared
    kernel cache, until it meets one already compiled (by this process)."""
    if os.environ.get("FGRAD_TEST_SERIAL") or (os.cpu_count() or 1) < 2:
        return None
    code = "import test_backend as t; t.precompile_backwards()"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO]))
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def precompile_backwards() -> None:
    """Entry point of the helper process."""
    warnings.simplefilter("ignore")
    for chunk in reversed(sweep().chunks):
        if cache.is_compiled(chunk.source()):
            return
        try:
            chunk.jitted(*chunk.flat())
        except Exception:
            pass  # the main process reports it


SPEC_PARAMS = [pytest.param(table, spec, id=f"{table}-{spec.name}")
               for table, specs in TABLES.items() for spec in specs]


@pytest.mark.parametrize("table, spec", SPEC_PARAMS)
def test_spec_under_jit_equals_eager(table, spec):
    """jit(spec.fn) equals spec.fn on every shape and dtype of the spec's grid."""
    s = sweep()
    s.run_all()
    checked = 0
    for case in s.by_spec[(table, spec.name)]:
        if case.skip:
            continue
        assert not case.error, f"{case.label()}: {case.error}"
        # float32 inputs feeding a float64 result: their rounding counts too
        dtypes = [np.asarray(v).dtype for v in [*tree_leaves(case.want), *case.args]]
        tol = max([_tolerance(spec, d) for d in dtypes] + [0.0])
        assert_same(case.got, case.want, tol, what=f"{case.label()} under jit")
        checked += 1
    if not checked:
        pytest.skip("no case of this spec can be traced")


def _tolerance(spec: OpSpec, dtype: np.dtype) -> float:
    """The spec's tolerance for values of this dtype (mixed-dtype specs give float32
    results in float64 cases, and the reverse)."""
    table = spec.tol or VALUE_TOL
    return table.get(np.dtype(dtype), VALUE_TOL.get(np.dtype(dtype), 0.0))


def test_sweep_covers_both_tables():
    s = sweep()
    traced = [c for cs in s.by_spec.values() for c in cs if not c.skip]
    assert len(traced) > 3000
    assert len(s.chunks) * CHUNK < len(traced)  # deduplication saved compiles
