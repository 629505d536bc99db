"""checkpoint / remat (fgrad/checkpoint.py): same values and derivatives, and the
backward pass recomputes the forward computation instead of storing it."""

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fgrad.test_util import check_grads


def block(x):
    return fnp.sin(fnp.sin(x)) * fnp.exp(x * 0.1)


def plain(x):
    return fnp.sum(block(x))


def remat(x):
    return fnp.sum(fgrad.checkpoint(block)(x))


X = np.array([0.2, -0.7, 1.3])


def test_values_and_derivatives_equal_the_plain_version():
    np.testing.assert_allclose(remat(X), plain(X))
    np.testing.assert_allclose(fgrad.grad(remat)(X), fgrad.grad(plain)(X))
    np.testing.assert_allclose(fgrad.hessian(remat)(X), fgrad.hessian(plain)(X))
    np.testing.assert_allclose(fgrad.jacfwd(fgrad.checkpoint(block))(X),
                               fgrad.jacrev(block)(X))
    np.testing.assert_allclose(fgrad.vmap(fgrad.grad(remat))(np.stack([X, 2 * X])),
                               np.stack([fgrad.grad(plain)(X), fgrad.grad(plain)(2 * X)]))
    check_grads(remat, (X,), order=2)
    assert fgrad.remat is fgrad.checkpoint


def count(listing, name):
    return sum(line.split("= ")[1].startswith(name) for line in listing.splitlines()
               if " = " in line)


def test_backward_pass_recomputes_forward():
    with_remat = str(fgrad.make_jaxpr(fgrad.value_and_grad(remat))(X))
    without = str(fgrad.make_jaxpr(fgrad.value_and_grad(plain))(X))
    # plain: sin(x) and sin(sin(x)) once each, their cosines kept as residuals.
    assert count(without, "sin") == 2
    # remat: the forward pass inside the checkpoint equation, and sin(x) again in the
    # backward pass (cos of it is needed there).
    assert "checkpoint[" in with_remat
    outside = with_remat.split("}]")[-1]
    assert count(outside, "sin") >= 1


def test_checkpoint_in_a_scan_body():
    def loss(w, xs):
        step = fgrad.checkpoint(lambda c, x: (fnp.tanh(c * w + x), c))
        c, ys = lax.scan(step, 0.5, xs)
        return c + fnp.sum(ys)

    def loss_plain(w, xs):
        c, ys = lax.scan(lambda c, x: (fnp.tanh(c * w + x), c), 0.5, xs)
        return c + fnp.sum(ys)

    xs = np.array([0.1, -0.2, 0.3])
    np.testing.assert_allclose(fgrad.grad(loss)(0.8, xs), fgrad.grad(loss_plain)(0.8, xs))
    check_grads(loss, (0.8, xs), order=1)


def test_unused_outputs_are_dropped():
    def two(x):
        return fnp.sin(x), fnp.exp(x)

    listing = str(fgrad.make_jaxpr(lambda x: fgrad.checkpoint(two)(x)[0])(X))
    assert "exp" not in listing and "sin" in listing
