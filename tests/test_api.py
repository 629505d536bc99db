"""The transforms in fgrad/api.py: agreement between modes (the compositionality
table), pytrees, argnums and has_aux, dtypes, Jacobian shapes, and bad input."""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad.test_util import check_grads

RNG = np.random.default_rng(0)
W = RNG.normal(size=(3, 2))


def f_poly_trig(x):
    return fnp.sum(fnp.sin(x) * x**2)


def f_matmul_tanh(x):
    return fnp.sum(fnp.tanh(x @ W)) + fnp.mean(x) ** 2


def f_rational(x):
    return fnp.mean(fnp.exp(x) / (1.0 + x**2)) + fnp.max(x * 0.5)


def f_python_control_flow(x):
    while fnp.linalg.norm(x) < 10.0:
        x = x * 2.0
    if x.sum() > 0:
        return fnp.sum(x**3)
    return fnp.sum(fnp.cos(x))


def f_stop_gradient(x):
    return fnp.sum(fgrad.stop_gradient(x**2) * fnp.sin(x))


def f_shapes(x):
    y = fnp.concatenate([x[::-1], x[1:] * 2.0])
    m = fnp.reshape(fnp.stack([y, y**2]), (2, -1)).T
    return fnp.sum(fnp.sqrt(1.0 + m**2)) + fnp.var(x) + fnp.prod(x[:2])


FUNCTIONS = [f_poly_trig, f_matmul_tanh, f_rational, f_python_control_flow, f_stop_gradient,
             f_shapes]
X = np.array([0.3, -1.2, 0.7])
# stop_gradient makes the derivative differ from finite differences on purpose.
NOT_FD = {f_stop_gradient}
V = np.array([0.5, 0.25, -1.0])


def numerical_grad(f, x, eps=1e-6):
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = eps
        out[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.__name__)
class TestCompositionality:
    """Each function through plain, jvp, linearize, vjp, grad, jacobians, hessian, grad∘grad."""

    def test_first_order_modes_agree(self, f):
        g = fgrad.grad(f)(X)
        if f in NOT_FD:
            np.testing.assert_allclose(g, X**2 * np.cos(X))
        else:
            np.testing.assert_allclose(g, numerical_grad(f, X), rtol=1e-6, atol=1e-7)
        out, tangent = fgrad.jvp(f, (X,), (V,))
        np.testing.assert_allclose(out, f(X))
        np.testing.assert_allclose(tangent, g @ V, rtol=1e-10)
        out_lin, f_jvp = fgrad.linearize(f, X)
        np.testing.assert_allclose(out_lin, f(X))
        np.testing.assert_allclose(f_jvp(V), g @ V, rtol=1e-10)
        out_vjp, vjp_fn = fgrad.vjp(f, X)
        np.testing.assert_allclose(vjp_fn(1.0)[0], g, rtol=1e-12)
        value, g2 = fgrad.value_and_grad(f)(X)
        np.testing.assert_allclose(value, f(X))
        np.testing.assert_allclose(g2, g)
        np.testing.assert_allclose(fgrad.jacfwd(f)(X), g, rtol=1e-10)
        np.testing.assert_allclose(fgrad.jacrev(f)(X), g, rtol=1e-10)

    def test_second_order_modes_agree(self, f):
        h = fgrad.hessian(f)(X)
        assert h.shape == (3, 3)
        np.testing.assert_allclose(h, h.T, rtol=1e-9, atol=1e-12)
        for jac in (fgrad.jacfwd(fgrad.grad(f)), fgrad.jacrev(fgrad.grad(f)),
                    fgrad.jacfwd(fgrad.jacfwd(f)), fgrad.jacrev(fgrad.jacrev(f)),
                    fgrad.jacrev(fgrad.jacfwd(f))):
            np.testing.assert_allclose(jac(X), h, rtol=1e-9, atol=1e-12)
        if f in NOT_FD:
            np.testing.assert_allclose(h, np.diag(-(X**2) * np.sin(X)), atol=1e-15)
        else:
            columns = np.stack([numerical_grad(lambda x, i=i: fgrad.grad(f)(x)[i], X)
                                for i in range(3)])
            np.testing.assert_allclose(h, columns, rtol=1e-5, atol=1e-6)
        # grad of grad along a line: d²/ds² f(x + s v) = vᵀ H v
        def along(s):
            return f(X + s * V)

        np.testing.assert_allclose(fgrad.grad(fgrad.grad(along))(0.0), V @ h @ V, rtol=1e-9)
        _, hvp = fgrad.jvp(fgrad.grad(f), (X,), (V,))
        np.testing.assert_allclose(hvp, h @ V, rtol=1e-9, atol=1e-12)

    def test_check_grads_order_two(self, f):
        if f in NOT_FD:
            pytest.skip("stop_gradient differs from finite differences by design")
        check_grads(f, (X,), order=2, modes=("fwd", "rev"))


def test_perturbation_confusion():
    # d/dx [x * d/dy (x * y)] = d/dx x**2 = 2x: the inner x is a constant of the inner grad.
    assert fgrad.grad(lambda x: x * fgrad.grad(lambda y: x * y)(2.0))(3.0) == 6.0
    # Siskind & Pearlmutter: d/dx [x * d/dy (x + y)] = 1
    assert fgrad.grad(lambda x: x * fgrad.grad(lambda y: x + y)(1.0))(5.0) == 1.0


def test_third_derivative():
    d3 = fgrad.grad(fgrad.grad(fgrad.grad(fnp.sin)))(0.7)
    np.testing.assert_allclose(d3, -np.cos(0.7))


# ---------------------------------------------------------------------------- pytrees, argnums


def test_grad_of_dict_params_and_argnums_tuple():
    def loss(params, x, y):
        pred = x @ params["w"] + params["b"]
        return fnp.mean((pred - y) ** 2)

    params = {"w": np.ones((3, 2)), "b": np.zeros(2)}
    x, y = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2))
    g = fgrad.grad(loss)(params, x, y)
    assert set(g) == {"w", "b"}
    assert g["w"].shape == (3, 2) and g["b"].shape == (2,)
    resid = x @ params["w"] + params["b"] - y
    np.testing.assert_allclose(g["w"], 2 * x.T @ resid / resid.size)
    np.testing.assert_allclose(g["b"], 2 * resid.sum(0) / resid.size)
    gp, gx = fgrad.grad(loss, argnums=(0, 1))(params, x, y)
    np.testing.assert_allclose(gp["b"], g["b"])
    assert gx.shape == x.shape
    gx_neg = fgrad.grad(loss, argnums=-2)(params, x, y)
    np.testing.assert_allclose(gx_neg, gx)


def test_has_aux_and_value_and_grad():
    def f(x):
        return fnp.sum(x**2), {"norm": fnp.linalg.norm(x), "x": x}

    x = np.array([3.0, 4.0])
    g, aux = fgrad.grad(f, has_aux=True)(x)
    np.testing.assert_allclose(g, 2 * x)
    assert aux["norm"] == 5.0 and isinstance(aux["x"], np.ndarray)
    (value, aux2), g2 = fgrad.value_and_grad(f, has_aux=True)(x)
    assert value == 25.0 and aux2["norm"] == 5.0
    np.testing.assert_allclose(g2, g)
    out, vjp_fn, aux3 = fgrad.vjp(f, x, has_aux=True)
    np.testing.assert_allclose(vjp_fn(1.0)[0], 2 * x)
    assert aux3["norm"] == 5.0


def test_vjp_and_jvp_with_pytrees():
    def f(a, b):
        return {"sum": a["x"] * b, "prod": (a["x"] * a["y"], b)}

    a = {"x": np.array([1.0, 2.0]), "y": np.array([3.0, 4.0])}
    b = np.array([5.0, 6.0])
    out, vjp_fn = fgrad.vjp(f, a, b)
    ct = {"sum": np.ones(2), "prod": (np.ones(2), np.ones(2))}
    ga, gb = vjp_fn(ct)
    np.testing.assert_allclose(ga["x"], b + a["y"])
    np.testing.assert_allclose(ga["y"], a["x"])
    np.testing.assert_allclose(gb, a["x"] + 1)
    ta = {"x": np.ones(2), "y": np.zeros(2)}
    _, t_out = fgrad.jvp(f, (a, b), (ta, np.zeros(2)))
    np.testing.assert_allclose(t_out["sum"], b)
    np.testing.assert_allclose(t_out["prod"][0], a["y"])
    np.testing.assert_allclose(t_out["prod"][1], 0.0)


def test_jacobian_shapes_are_out_shape_plus_in_shape():
    def f(x):
        return fnp.outer(fnp.sin(x), x[:2])  # (3,) -> (3, 2)

    x = np.array([0.1, 0.2, 0.3])
    for jac in (fgrad.jacfwd(f), fgrad.jacrev(f)):
        j = jac(x)
        assert j.shape == (3, 2, 3)
    np.testing.assert_allclose(fgrad.jacfwd(f)(x), fgrad.jacrev(f)(x))
    m = np.arange(6.0).reshape(2, 3)
    assert fgrad.jacrev(lambda m: m @ x)(m).shape == (2, 2, 3)
    assert fgrad.hessian(lambda m: fnp.sum(m**3))(m).shape == (2, 3, 2, 3)


def test_jacobian_of_pytree_in_and_out():
    def f(p):
        return {"a": p[0] * p[1], "b": fnp.sum(p[0])}

    p = (np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    for jac in (fgrad.jacfwd(f), fgrad.jacrev(f)):
        j = jac(p)
        np.testing.assert_allclose(j["a"][0], np.diag(p[1]))
        np.testing.assert_allclose(j["a"][1], np.diag(p[0]))
        np.testing.assert_allclose(j["b"][0], np.ones(2))
        np.testing.assert_allclose(j["b"][1], np.zeros(2))


# ---------------------------------------------------------------------------- values and dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_through_every_transform(dtype):
    x = np.array([0.5, 1.5, -0.25], dtype)

    def f(x):
        return fnp.sum(fnp.exp(x * 2.0) / (x**2 + 1.0))

    assert f(x).dtype == dtype
    assert fgrad.grad(f)(x).dtype == dtype
    assert fgrad.jvp(f, (x,), (np.ones(3, dtype),))[1].dtype == dtype
    assert fgrad.vjp(f, x)[1](dtype(1.0))[0].dtype == dtype
    assert fgrad.linearize(f, x)[1](np.ones(3, dtype)).dtype == dtype
    assert fgrad.hessian(f)(x).dtype == dtype
    assert fgrad.jacfwd(f)(x).dtype == dtype


def test_gradient_of_promoted_float32_input_is_float32():
    x32 = np.float32(2.0)
    g = fgrad.grad(lambda x: x * np.float64(3.0))(x32)  # promotes to float64 inside
    assert g.dtype == np.float32 and g == 3.0


def test_python_float_input_is_weak_and_gives_float64_gradient():
    x32 = np.ones(2, np.float32)
    out, vjp_fn = fgrad.vjp(lambda s: s * x32, 2.0)  # a weak scalar takes the array's dtype
    assert out.dtype == np.float32
    (g,) = vjp_fn(np.ones(2, np.float32))
    assert g.dtype == np.float64 and g == 2.0


def test_results_are_numpy_values_and_inputs_are_not_mutated():
    x = np.array([1.0, 2.0, 3.0])
    before = x.copy()
    g = fgrad.grad(lambda x: fnp.sum(x))(x)
    assert type(g) is np.ndarray and g.flags.writeable
    g[0] = 100.0  # a broadcast of ones underneath, but the user gets their own array
    np.testing.assert_array_equal(fgrad.grad(lambda x: fnp.sum(x))(x), np.ones(3))
    out, _ = fgrad.vjp(lambda x: x, x)
    assert not np.shares_memory(out, x)
    out[0] = -1.0
    np.testing.assert_array_equal(x, before)
    value = fgrad.value_and_grad(lambda x: fnp.sum(x**2))(x)[0]
    assert isinstance(value, np.float64)


def test_zero_gradient_when_output_ignores_input():
    g = fgrad.grad(lambda x, y: fnp.sum(y**2), argnums=(0, 1))(np.ones(3), 2.0)
    np.testing.assert_array_equal(g[0], np.zeros(3))
    assert g[1] == 4.0


def test_stop_gradient_is_detach():
    x = np.arange(4.0)
    u = x * x
    g = fgrad.grad(lambda x: fnp.sum(fgrad.stop_gradient(x * x) * x))(x)
    np.testing.assert_array_equal(g, u)
    tree = fgrad.stop_gradient({"a": 1.0, "b": np.ones(2)})
    assert set(tree) == {"a", "b"}


def test_make_jaxpr_static_argnums():
    def f(x, n):
        for _ in range(n):
            x = fnp.sin(x)
        return x

    jaxpr = fgrad.make_jaxpr(f, static_argnums=1)(np.ones(2), 3)
    assert str(jaxpr).count("sin") == 3
    assert len(jaxpr.in_avals) == 1


# ---------------------------------------------------------------------------- bad input


def test_grad_rejects_non_scalar_output():
    with pytest.raises(TypeError, match=r"scalar.*f64\[3\].*\.sum\(\).*jacrev"):
        fgrad.grad(lambda x: x * 2.0)(np.ones(3))


def test_grad_rejects_integer_input():
    with pytest.raises(TypeError, match=r"argument 0 has dtype int64.*floating"):
        fgrad.grad(lambda x: x * 2.0)(3)
    with pytest.raises(TypeError, match=r"argument 1 has dtype int"):
        fgrad.grad(lambda x, n: x * n, argnums=1)(1.0, np.arange(3))


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match=r"argnums=2 is out of range.*2 positional"):
        fgrad.grad(lambda x, y: x * y, argnums=2)(1.0, 2.0)


def test_vjp_cotangent_mismatch():
    _, vjp_fn = fgrad.vjp(lambda x: x * 2.0, np.ones(3))
    with pytest.raises(ValueError, match=r"cotangent has type f64\[4\].*f64\[3\]"):
        vjp_fn(np.ones(4))
    with pytest.raises(ValueError, match="structure"):
        vjp_fn((np.ones(3),))


def test_jvp_tangent_mismatch():
    with pytest.raises(ValueError, match=r"tangent has type f32\[3\].*f64\[3\]"):
        fgrad.jvp(lambda x: x, (np.ones(3),), (np.ones(3, np.float32),))
    with pytest.raises(ValueError, match="structure"):
        fgrad.jvp(lambda x, y: x, (1.0, 2.0), (1.0,))
    with pytest.raises(TypeError, match="tuples"):
        fgrad.jvp(lambda x: x, 1.0, 1.0)


def test_non_array_argument():
    with pytest.raises(TypeError, match="str"):
        fgrad.grad(lambda x: x)("hello")


def test_has_aux_requires_pair():
    with pytest.raises(TypeError, match="pair"):
        fgrad.grad(lambda x: x * 2.0, has_aux=True)(1.0)
