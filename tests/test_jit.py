"""The jit transform (fgrad/jit.py): trace cache, static arguments, disable_jit, its
rules under the other transforms, and errors. Code generation is tested in
tests/test_backend.py."""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fgrad.errors import ConcretizationError
from fgrad.test_util import check_grads


def loss(w, x):
    return fnp.sum(fnp.tanh(x @ w) ** 2) + 0.5 * fnp.sum(w * w)


W = np.array([[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]])
X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]])


def test_values_and_a_single_trace_per_signature():
    f = fgrad.jit(loss)
    np.testing.assert_allclose(f(W, X), loss(W, X))
    f(W, X)
    f(W * 2, X + 1)  # same shapes and dtypes: no retrace
    assert f.trace_count == 1
    f(W.astype(np.float32), X.astype(np.float32))  # new dtypes: one more
    f(W, X[:1])  # new shape: one more
    assert f.trace_count == 3


def test_weak_types_and_tree_structure_are_part_of_the_key():
    f = fgrad.jit(lambda x, s: x * s)
    x32 = np.ones(2, np.float32)
    assert f(x32, 2.0).dtype == np.float32  # a weak Python float keeps float32
    assert f(x32, np.float64(2.0)).dtype == np.float64
    assert f.trace_count == 2
    g = fgrad.jit(lambda t: t[0] + t[1])
    g((1.0, 2.0))
    g([1.0, 2.0])
    assert g.trace_count == 2


def test_static_argnums_and_argnames():
    def power(x, n, *, mode="plain"):
        out = x
        for _ in range(n - 1):
            out = out * x
        return out + 1.0 if mode == "plus" else out

    f = fgrad.jit(power, static_argnums=1, static_argnames="mode")
    assert f(2.0, 3) == 8.0 and f(2.0, 3, mode="plus") == 9.0 and f(3.0, 3) == 27.0
    assert f.trace_count == 2
    with pytest.raises(TypeError, match=r"static argument 1 .*unhashable.*list"):
        f(2.0, [3])


def test_jit_composes_with_every_transform():
    f = fgrad.jit(loss)
    g_eager = fgrad.grad(loss)(W, X)
    np.testing.assert_allclose(fgrad.grad(f)(W, X), g_eager)
    np.testing.assert_allclose(fgrad.jit(fgrad.grad(loss))(W, X), g_eager)
    np.testing.assert_allclose(fgrad.jit(fgrad.grad(f))(W, X), g_eager)
    np.testing.assert_allclose(fgrad.hessian(f)(W, X), fgrad.hessian(loss)(W, X))
    xs = np.stack([X, 2 * X])
    batched = fgrad.vmap(f, in_axes=(None, 0))(W, xs)
    np.testing.assert_allclose(batched, [loss(W, X), loss(W, 2 * X)])
    per_example = fgrad.jit(fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0)))(W, xs)
    np.testing.assert_allclose(per_example[1], fgrad.grad(loss)(W, 2 * X))
    _, tangent = fgrad.jvp(lambda w: f(w, X), (W,), (np.ones_like(W),))
    np.testing.assert_allclose(tangent, np.sum(g_eager))
    check_grads(lambda w: f(w, X), (W,), order=2)


def test_grad_of_jit_runs_jitted_programs():
    listing = str(fgrad.make_jaxpr(fgrad.grad(fgrad.jit(loss)))(W, X))
    assert listing.count("jit[") >= 2  # the known forward part and the transposed part
    assert "name='transpose(" in listing


def test_nested_jit_and_control_flow():
    inner = fgrad.jit(lambda c, x: (c * 0.9 + x, c))

    @fgrad.jit
    def outer(xs):
        c, ys = lax.scan(inner, 0.0, xs)
        return c + fnp.sum(ys)

    xs = np.arange(4.0)
    c, acc = 0.0, 0.0
    for x in xs:
        acc += c
        c = c * 0.9 + x
    np.testing.assert_allclose(outer(xs), c + acc)
    np.testing.assert_allclose(fgrad.grad(outer)(xs), fgrad.grad(outer.__wrapped__)(xs))


def test_python_control_flow_on_traced_values_is_a_clear_error():
    def branchy(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(ConcretizationError, match=r"inside jit.*\n.*test_jit.py.*if x.sum"):
        fgrad.jit(branchy)(np.ones(2))
    with fgrad.disable_jit():
        np.testing.assert_array_equal(fgrad.jit(branchy)(np.ones(2)), np.ones(2))


def test_non_array_arguments_are_rejected_with_the_fix():
    f = fgrad.jit(lambda x, name: x)
    with pytest.raises(TypeError, match=r"is a str, not an array.*static_argnums"):
        f(1.0, "label")
    assert fgrad.jit(lambda x, name: x, static_argnums=1)(1.0, "label") == 1.0


def test_inputs_not_mutated_and_outputs_fresh():
    f = fgrad.jit(lambda x: x)
    x = np.arange(3.0)
    out = f(x)
    assert out is not x and not np.shares_memory(out, x)
    out[0] = 99.0
    assert x[0] == 0.0 and f(x)[0] == 0.0
    const = np.ones(2)
    g = fgrad.jit(lambda: const)
    r = g()
    r[0] = 5.0
    assert g()[0] == 1.0 and const[0] == 1.0


def test_a_closure_over_a_traced_value_is_retraced():
    def outer(w):
        return fgrad.jit(lambda x: x * w)(2.0)

    assert fgrad.grad(outer)(3.0) == 2.0
    f_shared = {}

    def outer_shared(w):
        f = f_shared.setdefault("f", fgrad.jit(lambda x: x * w_box[0]))
        w_box[0] = w
        return f(2.0)

    w_box = [None]
    assert fgrad.grad(outer_shared)(3.0) == 2.0
    assert fgrad.grad(outer_shared)(5.0) == 2.0  # not a stale tracer from the first call


def test_lower_shows_the_program():
    lowered = fgrad.jit(loss).lower(W, X)
    assert "tanh" in lowered.as_text()
    assert isinstance(lowered.kernels(), dict)


def test_numpy_backend_env(monkeypatch):
    monkeypatch.setenv("FGRAD_BACKEND", "numpy")
    f = fgrad.jit(lambda x: fnp.sin(x) * 2.0)
    np.testing.assert_allclose(f(np.arange(3.0)), np.sin(np.arange(3.0)) * 2.0)


def test_method_and_wrapping():
    class Model:
        scale = 3.0

        def __call__(self, x):
            return x * self.scale

        jitted = fgrad.jit(__call__, static_argnums=0)  # self is static, as in JAX

    assert Model().jitted(1.5) == 4.5
    f = fgrad.jit(loss)
    assert f.__name__ == "loss" and "jit(loss)" in repr(f)
