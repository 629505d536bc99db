"""The PyTorch autograd tutorials (shared/seeds/000-004), each example as a test.

Every expected number is the one the tutorial prints (or, where the tutorial's
own code cannot run as written, the value its text describes; see the
comments). Only the public API is used.
"""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax, nn, optim
from fgrad.tree_util import tree_leaves, tree_map


def control_flow_f(a):
    """Seed 000's f: a value-dependent `while` and `if` (seed 004 has the same f)."""
    b = a * 2
    while fnp.linalg.norm(b) < 1000:
        b = b * 2
    if b.sum() > 0:
        c = b
    else:
        c = 100 * b
    return c


# ============================================================================ seed 000


def test_000_grad_of_2_dot_x_x():
    x = np.arange(4.0)
    g = fgrad.grad(lambda x: 2 * fnp.dot(x, x))(x)
    assert isinstance(g, np.ndarray) and g.shape == (4,) and g.dtype == np.float64
    np.testing.assert_array_equal(g, [0.0, 4.0, 8.0, 12.0])
    assert (g == 4 * x).all()  # the tutorial's `x.grad == 4 * x`


def test_000_float32_in_float32_out():
    x = np.arange(4, dtype=np.float32)
    g = fgrad.grad(lambda x: 2 * fnp.dot(x, x))(x)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, [0.0, 4.0, 8.0, 12.0])
    (g_vjp,) = fgrad.vjp(lambda x: x * x, x)[1](np.ones(4, np.float32))
    assert g_vjp.dtype == np.float32
    g_sg = fgrad.grad(lambda x: (fgrad.stop_gradient(x * x) * x).sum())(x)
    assert g_sg.dtype == np.float32


def test_000_grad_of_sum_is_ones():
    x = np.arange(4.0)
    y, g = fgrad.value_and_grad(lambda x: x.sum())(x)
    assert y == 6.0
    np.testing.assert_array_equal(g, np.ones(4))


def test_000_gradients_do_not_accumulate():
    # PyTorch needs x.grad.zero_() between the two backward() calls; fgrad returns fresh values.
    x = np.arange(4.0)
    first = fgrad.grad(lambda x: 2 * fnp.dot(x, x))(x)
    second = fgrad.grad(lambda x: x.sum())(x)
    np.testing.assert_array_equal(first, [0.0, 4.0, 8.0, 12.0])
    np.testing.assert_array_equal(second, [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(x, [0.0, 1.0, 2.0, 3.0])  # the input is untouched


def test_000_non_scalar_backward_as_grad_of_sum_and_as_vjp():
    x = np.arange(4.0)
    g = fgrad.grad(lambda x: (x * x).sum())(x)
    np.testing.assert_array_equal(g, [0.0, 2.0, 4.0, 6.0])
    y, pullback = fgrad.vjp(lambda x: x * x, x)
    np.testing.assert_array_equal(y, [0.0, 1.0, 4.0, 9.0])
    cts = pullback(np.ones_like(y))
    assert isinstance(cts, tuple) and len(cts) == 1
    np.testing.assert_array_equal(cts[0], [0.0, 2.0, 4.0, 6.0])


def test_000_non_scalar_output_needs_vjp_not_grad():
    # y.backward() on a non-scalar y fails in PyTorch too; grad says to reduce or use vjp.
    with pytest.raises(TypeError, match="scalar"):
        fgrad.grad(lambda x: x * x)(np.arange(4.0))


def test_000_detach_is_stop_gradient():
    x = np.arange(4.0)
    u = x * x
    g = fgrad.grad(lambda x: (fgrad.stop_gradient(x * x) * x).sum())(x)
    assert (g == u).all()  # the tutorial's `x.grad == u`
    np.testing.assert_array_equal(g, [0.0, 1.0, 4.0, 9.0])
    # ...while y = x * x itself still depends on x: `x.grad == 2 * x`
    g2 = fgrad.grad(lambda x: (x * x).sum())(x)
    assert (g2 == 2 * x).all()


def test_000_stop_gradient_passes_the_value():
    x = np.arange(4.0)
    np.testing.assert_array_equal(fgrad.stop_gradient(x * x), x * x)
    assert fgrad.grad(lambda x: fgrad.stop_gradient(x * x).sum())(x).tolist() == [0.0] * 4


def test_000_control_flow_value_1024_gradient_512():
    d, a_grad = fgrad.value_and_grad(control_flow_f)(2.0)
    assert d == 1024.0
    assert a_grad == 512.0
    assert fgrad.grad(control_flow_f)(2.0) == 512.0


def test_000_control_flow_forward_mode_agrees():
    out, tangent = fgrad.jvp(control_flow_f, (2.0,), (1.0,))
    assert out == 1024.0 and tangent == 512.0


def test_000_control_flow_else_branch():
    # b.sum() < 0 takes `c = 100 * b`: 4 -> 1024 as before, then times 100 and the sign.
    d, a_grad = fgrad.value_and_grad(control_flow_f)(-2.0)
    assert d == -102400.0
    assert a_grad == 51200.0


@pytest.mark.parametrize("a, loops", [(2.0, 8), (0.3, 11), (600.0, 0), (499.0, 1), (-7.0, 7)])
def test_000_control_flow_gradient_follows_the_path_taken(a, loops):
    # f(a) = k * a with k = 2 * 2**loops (times 100 on the else branch).
    k = 2.0 * 2.0**loops * (1 if a > 0 else 100)
    d, g = fgrad.value_and_grad(control_flow_f)(a)
    assert g == k
    np.testing.assert_allclose(d, k * a)


def test_000_control_flow_float32_keeps_float32():
    g = fgrad.grad(control_flow_f)(np.float32(2.0))
    assert g.dtype == np.float32
    assert g == 512.0
    d, g = fgrad.value_and_grad(control_flow_f)(np.float32(-2.0))
    assert d.dtype == np.float32 and g.dtype == np.float32
    assert (d, g) == (-102400.0, 51200.0)


# ============================================================================ seed 001


def seed_001_L(x1, w1, w2, Y):
    """X2 = W1 X1, y = W2 X2, L = mean(Y - y) (the tutorial's code)."""
    x2 = x1 * w1
    y = x2 * w2
    return (Y - y).mean()


SEED_001_ARGS = (
    np.array([2.0, 3.0, 4.0, 5.0]),  # x1
    np.ones(4),  # w1
    np.array([1.0, 2.0, 3.0, 4.0]),  # w2
    np.ones(4),  # Y: the N-vector of the text; the code's torch.ones(2, 2) cannot broadcast
)


def test_001_graph_gradients():
    x1, w1, w2, Y = SEED_001_ARGS
    L, (dx1, dw1, dw2, dY) = fgrad.value_and_grad(seed_001_L, argnums=(0, 1, 2, 3))(
        *SEED_001_ARGS)
    assert L == -9.0
    np.testing.assert_array_equal(dx1, [-0.25, -0.5, -0.75, -1.0])  # -w1 * w2 / 4
    np.testing.assert_array_equal(dw1, [-0.5, -1.5, -3.0, -5.0])  # -x1 * w2 / 4
    np.testing.assert_array_equal(dw2, [-0.5, -0.75, -1.0, -1.25])  # -x1 * w1 / 4
    np.testing.assert_array_equal(dY, [0.25, 0.25, 0.25, 0.25])


def test_001_graph_int_argnums_gives_one_gradient():
    dx1 = fgrad.grad(seed_001_L)(*SEED_001_ARGS)
    assert isinstance(dx1, np.ndarray)
    np.testing.assert_array_equal(dx1, [-0.25, -0.5, -0.75, -1.0])


def test_001_tutorial_Y_of_shape_2x2_does_not_broadcast():
    x1, w1, w2, _ = SEED_001_ARGS
    with pytest.raises(ValueError, match=r"broadcast"):
        seed_001_L(x1, w1, w2, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"broadcast"):
        fgrad.grad(seed_001_L)(x1, w1, w2, np.ones((2, 2)))


def test_001_backward_with_grad_tensor_is_vjp():
    x = np.array([0.0, 2.0, 8.0])
    y = np.array([5.0, 1.0, 7.0])
    z, pullback = fgrad.vjp(lambda x, y: x * y, x, y)
    np.testing.assert_array_equal(z, [0.0, 2.0, 56.0])
    dz_dx, dz_dy = pullback(np.ones(3))  # z.backward(torch.FloatTensor([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(dz_dx, y)
    np.testing.assert_array_equal(dz_dy, x)


def test_001_grad_tensor_weights_the_jacobian():
    x = np.array([0.0, 2.0, 8.0])
    y = np.array([5.0, 1.0, 7.0])
    v = np.array([1.0, 0.1, 0.01])
    _, pullback = fgrad.vjp(lambda x, y: x * y, x, y)
    vjp_x, vjp_y = pullback(v)
    J = fgrad.jacrev(lambda x: x * y)(x)
    np.testing.assert_allclose(vjp_x, v @ J)
    np.testing.assert_allclose(vjp_x, v * y)
    np.testing.assert_allclose(vjp_y, v * x)
    # ...and it is the gradient of the weighted sum l = sum(v * z)
    np.testing.assert_allclose(fgrad.grad(lambda x: fnp.sum(v * (x * y)))(x), vjp_x)


def test_001_scalar_backward_is_vjp_with_one():
    x1, w1, w2, Y = SEED_001_ARGS
    _, pullback = fgrad.vjp(seed_001_L, x1, w1, w2, Y)
    from_vjp = pullback(1.0)
    from_grad = fgrad.grad(seed_001_L, argnums=(0, 1, 2, 3))(x1, w1, w2, Y)
    for a, b in zip(from_vjp, from_grad):
        np.testing.assert_array_equal(a, b)


# ============================================================================ seed 002


def _mlp_setup():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 10))
    y = rng.standard_normal((100, 1))

    def linear(n_in, n_out):
        k = 1 / np.sqrt(n_in)
        return rng.uniform(-k, k, (n_in, n_out)), rng.uniform(-k, k, n_out)

    (W1, b1), (W2, b2) = linear(10, 20), linear(20, 1)
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, x, y


def _mlp_loss(p, x, y):
    h = fnp.maximum(x @ p["W1"] + p["b1"], 0.0)
    return fnp.mean((h @ p["W2"] + p["b2"] - y) ** 2)


def test_002_mlp_gradient_matches_hand_backprop():
    p, x, y = _mlp_setup()
    loss, g = fgrad.value_and_grad(_mlp_loss)(p, x, y)
    assert sorted(g) == ["W1", "W2", "b1", "b2"]
    # by hand
    pre = x @ p["W1"] + p["b1"]
    h = np.maximum(pre, 0.0)
    out = h @ p["W2"] + p["b2"]
    np.testing.assert_allclose(loss, np.mean((out - y) ** 2))
    d_out = 2 * (out - y) / out.size
    d_pre = (d_out @ p["W2"].T) * (pre > 0)
    np.testing.assert_allclose(g["W2"], h.T @ d_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g["b2"], d_out.sum(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g["W1"], x.T @ d_pre, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g["b1"], d_pre.sum(0), rtol=1e-12, atol=1e-14)
    for name in p:
        assert g[name].shape == p[name].shape and g[name].dtype == p[name].dtype


def test_002_mlp_sgd_lowers_the_loss():
    p, x, y = _mlp_setup()
    step = fgrad.value_and_grad(_mlp_loss)
    losses = []
    for _ in range(100):
        loss, g = step(p, x, y)
        losses.append(float(loss))
        p = tree_map(lambda a, d: a - 0.01 * d, p, g)
    assert losses[-1] < losses[0] - 0.2
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))  # small lr: monotone here
    assert all(np.isfinite(leaf).all() for leaf in tree_leaves(p))


def _nn_mlp():
    """Seed 002's net as the demo builds it: fgrad.nn layers, fgrad.optim's SGD."""
    init, net = nn.serial(nn.Dense(20), nn.Relu, nn.Dense(1))
    rng = np.random.default_rng(0)
    params = init(rng, (100, 10))
    x, y = rng.standard_normal((100, 10)), rng.standard_normal((100, 1))

    def loss(p, x, y):
        return nn.mse_loss(net(p, x), y)

    return params, loss, x, y


def _as_hand_params(params):
    (l1, relu, l2) = params
    assert relu == ()
    return {"W1": l1["w"], "b1": l1["b"], "W2": l2["w"], "b2": l2["b"]}


def test_002_nn_serial_is_the_hand_written_net():
    params, loss, x, y = _nn_mlp()
    assert [sorted(p) for p in params] == [["b", "w"], [], ["b", "w"]]
    assert params[0]["w"].shape == (10, 20) and params[2]["w"].shape == (20, 1)
    # nn.Linear's init: uniform in +-1/sqrt(fan_in)
    assert np.abs(params[0]["w"]).max() <= 1 / np.sqrt(10)
    assert np.abs(params[2]["w"]).max() <= 1 / np.sqrt(20)
    hand = _as_hand_params(params)
    np.testing.assert_allclose(loss(params, x, y), _mlp_loss(hand, x, y), rtol=1e-14)
    g = fgrad.grad(loss)(params, x, y)
    g_hand = fgrad.grad(_mlp_loss)(hand, x, y)
    for name, leaf in _as_hand_params(g).items():
        np.testing.assert_allclose(leaf, g_hand[name], rtol=1e-12, atol=1e-15)


def test_002_optim_sgd_is_p_minus_lr_g():
    params, loss, x, y = _nn_mlp()
    opt = optim.sgd(0.01)
    g = fgrad.grad(loss)(params, x, y)
    updates, _ = opt.update(g, opt.init(params), params)
    new = optim.apply_updates(params, updates)
    expected = tree_map(lambda p, d: p - 0.01 * d, params, g)
    for a, b in zip(tree_leaves(new), tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-15)


def test_002_training_eagerly_with_a_jitted_step_and_in_a_fori_loop_agree():
    params, loss, x, y = _nn_mlp()
    opt = optim.sgd(0.01)

    def step(p, s, x, y):
        l, g = fgrad.value_and_grad(loss)(p, x, y)
        updates, s = opt.update(g, s, p)
        return optim.apply_updates(p, updates), s, l

    jitted = fgrad.jit(step)

    @fgrad.jit
    def train(p, s, x, y):
        def body(i, carry):
            p, s, _ = jitted(*carry, x, y)
            return p, s

        return lax.fori_loop(0, 50, body, (p, s))

    p_eager, s = params, opt.init(params)
    p_jit, s_jit = params, opt.init(params)
    losses = []
    for _ in range(50):
        p_eager, s, l = step(p_eager, s, x, y)
        p_jit, s_jit, l_jit = jitted(p_jit, s_jit, x, y)
        np.testing.assert_allclose(l_jit, l, rtol=1e-12)
        losses.append(float(l))
    p_loop, _ = train(params, opt.init(params), x, y)
    for a, b, c in zip(tree_leaves(p_eager), tree_leaves(p_jit), tree_leaves(p_loop)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(c, a, rtol=1e-10, atol=1e-14)
    assert losses == sorted(losses, reverse=True)
    assert loss(p_loop, x, y) < losses[0]


def test_002_per_example_gradients_are_vmap_of_grad():
    params, loss, x, y = _nn_mlp()
    per_example = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))(params, x[:8], y[:8])
    for i in range(8):
        one = fgrad.grad(loss)(params, x[i], y[i])
        for a, b in zip(tree_leaves(per_example), tree_leaves(one)):
            np.testing.assert_allclose(a[i], b, rtol=1e-12, atol=1e-15)
    batch = fgrad.grad(loss)(params, x[:8], y[:8])
    for a, b in zip(tree_leaves(per_example), tree_leaves(batch)):
        np.testing.assert_allclose(a.mean(axis=0), b, rtol=1e-12, atol=1e-15)


# ============================================================================ seed 003


def _descend(w, steps=100, lr=0.01):
    step = fgrad.value_and_grad(lambda w: w**2 + 20)
    log = []
    for i in range(steps):
        loss, dw = step(w)
        w = w - lr * dw
        log.append(f"Iteration {i + 1}: w = {w:.4f}, loss = {loss:.4f}")
    return w, log


def test_003_gradient_of_w_squared_plus_20():
    assert fgrad.grad(lambda w: w**2 + 20)(10.0) == 20.0  # d/dw = 2w


def test_003_gradient_descent_first_iterations():
    w, log = _descend(10.0)
    assert log[0] == "Iteration 1: w = 9.8000, loss = 120.0000"
    # The tutorial's comment says loss = 116.0000 here, but its loop evaluates the loss at
    # w = 9.8 before updating: 9.8**2 + 20 = 116.04.
    assert log[1] == "Iteration 2: w = 9.6040, loss = 116.0400"
    assert len(log) == 100
    np.testing.assert_allclose(w, 10.0 * 0.98**100, rtol=1e-12)
    assert log[-1] == f"Iteration 100: w = {10.0 * 0.98**100:.4f}, " \
                      f"loss = {(10.0 * 0.98**99) ** 2 + 20:.4f}"


def test_003_gradient_descent_float32_stays_float32():
    # the tutorial's w is dtype=torch.float (float32)
    w, log = _descend(np.float32(10.0))
    assert isinstance(w, (np.ndarray, np.generic)) and w.dtype == np.float32
    assert log[0] == "Iteration 1: w = 9.8000, loss = 120.0000"
    assert log[1] == "Iteration 2: w = 9.6040, loss = 116.0400"
    np.testing.assert_allclose(w, 10.0 * 0.98**100, rtol=1e-5)


def test_003_linear_regression_gradients():
    rng = np.random.default_rng(0)
    x, y = np.ones((2, 5)), np.zeros((2, 3))
    w, b = rng.standard_normal((5, 3)), rng.standard_normal(3)

    def mse(w, b):
        z = fnp.matmul(x, w) + b
        return fnp.mean((z - y) ** 2)

    dw, db = fgrad.grad(mse, argnums=(0, 1))(w, b)
    assert dw.shape == (5, 3) and db.shape == (3,)
    dz = 2 * (x @ w + b - y) / y.size
    np.testing.assert_allclose(dw, x.T @ dz, rtol=1e-12)
    np.testing.assert_allclose(db, dz.sum(0), rtol=1e-12)
    # with x all ones every row of dw is db
    np.testing.assert_allclose(dw, np.broadcast_to(db, (5, 3)), rtol=1e-12)


def test_003_linear_regression_float32():
    rng = np.random.default_rng(1)
    x, y = np.ones((2, 5), np.float32), np.zeros((2, 3), np.float32)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    dw, db = fgrad.grad(lambda w, b: fnp.mean((x @ w + b - y) ** 2), argnums=(0, 1))(w, b)
    assert dw.dtype == np.float32 and db.dtype == np.float32
    np.testing.assert_allclose(db, (2 * (x @ w + b - y) / 6).sum(0), rtol=1e-5)


# ============================================================================ seed 004


def test_004_z_is_2x_times_x():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])

    def total(x):
        y = x * 2
        z = y * x
        return fnp.sum(z)

    np.testing.assert_array_equal((x * 2) * x, [[2.0, 8.0], [18.0, 32.0]])
    assert total(x) == 60.0
    g = fgrad.grad(total)(x)
    assert g.shape == (2, 2)
    np.testing.assert_array_equal(g, [[4.0, 8.0], [12.0, 16.0]])


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_004_control_flow_grad_is_c_over_x(seed):
    # seeds whose vector has a positive sum: c = 2**k x exactly, so c / x is exact
    x = np.random.default_rng(seed).standard_normal(3)
    assert x.sum() > 0
    c = control_flow_f(x)
    g = fgrad.grad(lambda x: fnp.sum(control_flow_f(x)))(x)
    assert (g == c / x).all()  # the tutorial's `x.grad == c/x`


@pytest.mark.parametrize("seed", [2, 3, 5])
def test_004_control_flow_else_branch_on_vectors(seed):
    x = np.random.default_rng(seed).standard_normal(3)
    assert x.sum() < 0  # takes `c = 100 * b`
    c = control_flow_f(x)
    g = fgrad.grad(lambda x: fnp.sum(control_flow_f(x)))(x)
    # c / x is 100 * 2**k up to the rounding of 100 * b; the gradient is exactly 100 * 2**k
    np.testing.assert_allclose(g, c / x, rtol=1e-15)
    k = np.log2(g[0] / 100)
    assert k == round(k) and (g == g[0]).all()


def test_004_control_flow_float32_vector():
    x = np.random.default_rng(0).standard_normal(3).astype(np.float32)
    g = fgrad.grad(lambda x: fnp.sum(control_flow_f(x)))(x)
    assert g.dtype == np.float32 and g.shape == (3,)
    np.testing.assert_array_equal(g, control_flow_f(x) / x)
