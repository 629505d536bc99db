"""custom_jvp and custom_vjp (fgrad/custom_derivatives.py): the rule is used in every
mode, under vmap and make_jaxpr, and composes with the other transforms."""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fgrad.test_util import check_grads


@fgrad.custom_jvp
def log1pexp(x):
    """softplus, naive formula: its derivative overflows for large x."""
    return fnp.log(1.0 + fnp.exp(x))


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), t * lax.logistic(x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_custom_jvp_rule_is_used_in_both_modes():
    x = np.array([-3.0, 0.0, 2.0, 800.0])
    with np.errstate(over="ignore"):
        naive = fgrad.grad(lambda x: fnp.sum(fnp.log(1.0 + fnp.exp(x))))(x)
    assert np.isnan(naive[-1])  # inf / inf in the naive derivative
    np.testing.assert_allclose(fgrad.grad(lambda x: fnp.sum(log1pexp(x)))(x), sigmoid(x))
    _, tangent = fgrad.jvp(log1pexp, (x,), (np.ones(4),))
    np.testing.assert_allclose(tangent, sigmoid(x))
    np.testing.assert_allclose(fgrad.jacrev(log1pexp)(x), np.diag(sigmoid(x)))
    np.testing.assert_allclose(fgrad.jacfwd(log1pexp)(x), np.diag(sigmoid(x)))


def test_custom_jvp_second_order_and_check_grads():
    x = np.array([-1.0, 0.5, 2.0])
    s = sigmoid(x)
    np.testing.assert_allclose(fgrad.hessian(lambda x: fnp.sum(log1pexp(x)))(x),
                               np.diag(s * (1 - s)))
    check_grads(log1pexp, (x,), order=2)
    check_grads(log1pexp, (x.astype(np.float32),), order=2)


def test_custom_jvp_under_vmap_and_make_jaxpr():
    xs = np.array([0.0, 1.0, 900.0])
    np.testing.assert_allclose(fgrad.vmap(fgrad.grad(log1pexp))(xs), sigmoid(xs))
    g = fgrad.grad(lambda x: fnp.sum(fgrad.vmap(log1pexp)(x)))(xs)
    np.testing.assert_allclose(g, sigmoid(xs))
    listing = str(fgrad.make_jaxpr(log1pexp)(1.0))
    assert "custom_jvp_call" in listing and "custom jvp rule of log1pexp" in listing
    listing = str(fgrad.make_jaxpr(fgrad.grad(log1pexp))(1.0))
    assert "logistic" in listing and "custom_jvp_call" not in listing


def test_custom_jvp_with_pytrees_and_nondiff_argnums():
    @fgrad.custom_jvp
    def scaled(n, xs):
        return {"out": xs["a"] * n + xs["b"]}

    scaled_nd = fgrad.custom_jvp(scaled.fun, nondiff_argnums=(0,))

    @scaled_nd.defjvp
    def _(n, primals, tangents):
        (xs,), (ts,) = primals, tangents
        return scaled_nd(n, xs), {"out": ts["a"] * (2 * n) + ts["b"]}  # deliberately 2n

    xs = {"a": np.ones(2), "b": np.zeros(2)}
    g = fgrad.grad(lambda xs: fnp.sum(scaled_nd(3.0, xs)["out"]))(xs)
    np.testing.assert_allclose(g["a"], [6.0, 6.0])
    np.testing.assert_allclose(g["b"], [1.0, 1.0])
    assert scaled_nd(3.0, xs)["out"].tolist() == [3.0, 3.0]


def test_custom_jvp_rule_errors():
    @fgrad.custom_jvp
    def f(x):
        return x * 2.0

    with pytest.raises(AttributeError, match="defjvp"):
        f(1.0)

    @f.defjvp
    def _(primals, tangents):
        return primals[0] * 2.0, np.ones(3)  # wrong tangent shape

    with pytest.raises(TypeError, match=r"tangent_out.*f64\[3\].*f64\[\]"):
        fgrad.jvp(f, (1.0,), (1.0,))


@fgrad.custom_vjp
def clip_gradient(x):
    return x


def _clip_fwd(x):
    return x, None


def _clip_bwd(_, g):
    return (fnp.clip(g, -1.0, 1.0),)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


def test_custom_vjp_rule_is_used_in_reverse_mode():
    x = np.array([1.0, 2.0])
    g = fgrad.grad(lambda x: fnp.sum(clip_gradient(x) * 5.0))(x)
    np.testing.assert_array_equal(g, [1.0, 1.0])  # the true gradient 5 is clipped
    np.testing.assert_array_equal(fgrad.jacrev(lambda x: clip_gradient(x) * 0.5)(x),
                                  np.diag([0.5, 0.5]))
    assert clip_gradient(x) is not None and np.array_equal(clip_gradient(x), x)


def test_custom_vjp_residuals_and_second_order():
    @fgrad.custom_vjp
    def my_sin(x):
        return fnp.sin(x)

    def fwd(x):
        return fnp.sin(x), fnp.cos(x)

    def bwd(cos_x, g):
        return (g * cos_x,)

    my_sin.defvjp(fwd, bwd)
    x = np.array([0.3, 1.2])
    np.testing.assert_allclose(fgrad.grad(lambda x: fnp.sum(my_sin(x)))(x), np.cos(x))
    # the bwd rule is differentiable, so reverse-over-reverse and hessian work
    np.testing.assert_allclose(fgrad.hessian(lambda x: fnp.sum(my_sin(x)))(x),
                               np.diag(-np.sin(x)))
    check_grads(my_sin, (x,), order=2, modes=("rev",))


def test_custom_vjp_under_vmap():
    xs = np.array([1.0, -2.0, 3.0])
    per_example = fgrad.vmap(fgrad.grad(lambda x: clip_gradient(x) * 5.0))(xs)
    np.testing.assert_array_equal(per_example, [1.0, 1.0, 1.0])
    g = fgrad.grad(lambda x: fnp.sum(fgrad.vmap(clip_gradient)(x) * -5.0))(xs)
    np.testing.assert_array_equal(g, [-1.0, -1.0, -1.0])
    assert "custom_vjp_call" in str(fgrad.make_jaxpr(clip_gradient)(xs))


def test_custom_vjp_forward_mode_is_a_clear_error():
    with pytest.raises(TypeError, match="forward-mode.*custom_vjp"):
        fgrad.jvp(clip_gradient, (1.0,), (1.0,))


def test_custom_vjp_bad_bwd():
    @fgrad.custom_vjp
    def f(x, y):
        return x * y

    f.defvjp(lambda x, y: (x * y, (x, y)), lambda res, g: (g * res[1],))
    with pytest.raises(TypeError, match="one cotangent per differentiable argument"):
        fgrad.grad(f)(1.0, 2.0)


def test_closing_over_a_differentiated_value_is_an_error():
    def outer(w):
        @fgrad.custom_jvp
        def f(x):
            return x * w

        f.defjvp(lambda p, t: (f(p[0]), t[0] * w))
        return f(2.0)

    with pytest.raises(TypeError, match="closes over a value"):
        fgrad.grad(outer)(3.0)
