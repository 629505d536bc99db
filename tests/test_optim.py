"""fgrad.optim: each optimizer against its update formula written out by hand (optax's
definitions) over several steps, learning-rate schedules, dtypes, use under jit and
inside lax.fori_loop, and bad input."""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax, nn, optim
from fgrad.tree_util import tree_leaves, tree_map, tree_structure

RNG = np.random.default_rng(0)
PARAMS = {"w": RNG.normal(size=(3, 4)), "b": RNG.normal(size=(4,))}
GRADS = [tree_map(lambda p: RNG.normal(size=p.shape), PARAMS) for _ in range(6)]


def run(opt, params=PARAMS, grads=GRADS):
    """The updates and states of `len(grads)` steps (params updated in between)."""
    state = opt.init(params)
    history = []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)
        history.append((updates, state, params))
    return history


def assert_trees_close(a, b, rtol=1e-14, atol=0.0):
    assert tree_structure(a) == tree_structure(b)
    for x, y in zip(tree_leaves(a), tree_leaves(b)):
        assert np.shape(x) == np.shape(y)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# ============================================================================ the formulas


def reference_sgd(lr, momentum=0.0, nesterov=False):
    """optax.sgd: t = g + momentum t; update -lr t, or -lr (g + momentum t) with nesterov."""
    out = []
    for key in ("w", "b"):
        p, t = PARAMS[key].copy(), np.zeros_like(PARAMS[key])
        steps = []
        for g in GRADS:
            g = g[key]
            t = g + momentum * t
            u = -lr * (g + momentum * t if nesterov else t)
            p = p + u
            steps.append((u, t, p))
        out.append(steps)
    return out


def reference_adam(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=None):
    """optax.adam / optax.adamw, by hand: moments, bias correction with the count from 1."""
    out = []
    for key in ("w", "b"):
        p = PARAMS[key].copy()
        m, v = np.zeros_like(p), np.zeros_like(p)
        steps = []
        for count, g in enumerate(GRADS, start=1):
            g = g[key]
            m = (1 - b1) * g + b1 * m
            v = (1 - b2) * g**2 + b2 * v
            m_hat = m / (1 - b1**count)
            v_hat = v / (1 - b2**count)
            direction = m_hat / (np.sqrt(v_hat) + eps)
            if weight_decay is not None:
                direction = direction + weight_decay * p
            u = -lr * direction
            p = p + u
            steps.append((u, (m, v, count), p))
        out.append(steps)
    return out


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True),
                                               (0.5, True)])
def test_sgd_matches_its_formula(momentum, nesterov):
    opt = optim.sgd(0.1, momentum, nesterov)
    history = run(opt)
    expected = reference_sgd(0.1, momentum, nesterov)
    for i, (updates, state, params) in enumerate(history):
        for key, ref in zip(("w", "b"), expected):
            u, t, p = ref[i]
            np.testing.assert_allclose(updates[key], u, rtol=1e-15)
            np.testing.assert_allclose(params[key], p, rtol=1e-15)
            if momentum:
                np.testing.assert_allclose(state[0].trace[key], t, rtol=1e-15)
    if momentum == 0.0:  # plain sgd keeps no momentum
        assert tree_leaves(history[0][1]) == []


def test_sgd_first_steps():
    u, _ = optim.sgd(0.1).update(GRADS[0], optim.sgd(0.1).init(PARAMS))
    assert_trees_close(u, tree_map(lambda g: -0.1 * g, GRADS[0]))
    opt = optim.sgd(0.1, momentum=None)  # optax's "no momentum"
    assert_trees_close(opt.update(GRADS[0], opt.init(PARAMS))[0], u)
    opt = optim.sgd(0.1, 0.9)
    assert_trees_close(opt.update(GRADS[0], opt.init(PARAMS))[0], u)
    opt = optim.sgd(0.1, 0.9, nesterov=True)  # -lr (g + m g)
    u, _ = opt.update(GRADS[0], opt.init(PARAMS))
    assert_trees_close(u, tree_map(lambda g: -0.1 * (g + 0.9 * g), GRADS[0]))


@pytest.mark.parametrize("kwargs", [{}, {"b1": 0.5, "b2": 0.9, "eps": 1e-3}])
def test_adam_matches_its_formula(kwargs):
    history = run(optim.adam(0.01, **kwargs))
    expected = reference_adam(0.01, **kwargs)
    for i, (updates, state, params) in enumerate(history):
        adam_state = state[0]
        assert adam_state.count.dtype == np.int32 and int(adam_state.count) == i + 1
        for key, ref in zip(("w", "b"), expected):
            u, (m, v, _), p = ref[i]
            np.testing.assert_allclose(updates[key], u, rtol=1e-14)
            np.testing.assert_allclose(adam_state.mu[key], m, rtol=1e-15)
            np.testing.assert_allclose(adam_state.nu[key], v, rtol=1e-15)
            np.testing.assert_allclose(params[key], p, rtol=1e-14)


def test_adam_first_step_has_size_lr():
    """With bias correction, the first Adam step is -lr * g / (|g| + eps): size lr."""
    opt = optim.adam(0.01)
    u, _ = opt.update(GRADS[0], opt.init(PARAMS))
    assert_trees_close(u, tree_map(lambda g: -0.01 * g / (np.abs(g) + 1e-8), GRADS[0]))


@pytest.mark.parametrize("weight_decay", [1e-4, 0.1])
def test_adamw_matches_its_formula(weight_decay):
    opt = (optim.adamw(0.01) if weight_decay == 1e-4
           else optim.adamw(0.01, weight_decay=weight_decay))
    history = run(opt)
    expected = reference_adam(0.01, weight_decay=weight_decay)
    for i, (updates, _, params) in enumerate(history):
        for key, ref in zip(("w", "b"), expected):
            u, _, p = ref[i]
            np.testing.assert_allclose(updates[key], u, rtol=1e-14)
            np.testing.assert_allclose(params[key], p, rtol=1e-14)


def test_adamw_mask_limits_the_decay():
    masked = optim.adamw(0.01, weight_decay=0.5, mask={"w": True, "b": False})
    by_fn = optim.adamw(0.01, weight_decay=0.5, mask=lambda p: {"w": True, "b": False})
    plain_adam = run(optim.adam(0.01), grads=GRADS[:1])[0][0]
    decayed = run(optim.adamw(0.01, weight_decay=0.5), grads=GRADS[:1])[0][0]
    for opt in (masked, by_fn):
        updates = run(opt, grads=GRADS[:1])[0][0]
        np.testing.assert_allclose(updates["b"], plain_adam["b"], rtol=1e-15)
        np.testing.assert_allclose(updates["w"], decayed["w"], rtol=1e-15)
    with pytest.raises(ValueError, match="mask must be a pytree of bools"):
        run(optim.adamw(0.01, mask={"w": True}), grads=GRADS[:1])


def test_learning_rate_schedules_see_the_count_from_zero():
    seen = []

    def schedule(count):
        seen.append(int(count))
        return 0.1 / (1.0 + count)

    history = run(optim.sgd(schedule), grads=GRADS[:3])
    assert seen == [0, 1, 2]
    for i, (updates, _, _) in enumerate(history):
        assert_trees_close(updates, tree_map(lambda g, i=i: -0.1 / (1 + i) * g, GRADS[i]))
    constant = run(optim.adam(0.01), grads=GRADS[:3])
    scheduled = run(optim.adam(lambda count: 0.01 + 0.0 * count), grads=GRADS[:3])
    for a, b in zip(constant, scheduled):
        assert_trees_close(a[0], b[0], rtol=1e-15)
    # inside a loop body the schedule gets a traced count
    opt = optim.sgd(lambda count: 0.1 / (1.0 + count))

    def body(i, carry):
        params, state = carry
        updates, state = opt.update(GRADS[0], state)
        return optim.apply_updates(params, updates), state

    params, state = lax.fori_loop(0, 3, body, (PARAMS, opt.init(PARAMS)))
    assert int(state[1].count) == 3
    total = 0.1 * (1 + 1 / 2 + 1 / 3)
    assert_trees_close(params, tree_map(lambda p, g: p - total * g, PARAMS, GRADS[0]))


# ============================================================================ dtypes


@pytest.mark.parametrize("opt", [optim.sgd(0.1), optim.sgd(0.1, 0.9, True), optim.adam(1e-3),
                                 optim.adamw(1e-3), optim.adam(lambda c: 1e-3 * 0.9**c)],
                         ids=["sgd", "nesterov", "adam", "adamw", "adam-schedule"])
def test_float32_params_stay_float32(opt):
    params = tree_map(lambda p: p.astype(np.float32), PARAMS)
    state = opt.init(params)
    for g in GRADS[:3]:
        g32 = tree_map(lambda x: x.astype(np.float32), g)
        updates, state = opt.update(g32, state, params)
        params = optim.apply_updates(params, updates)
        assert all(x.dtype == np.float32 for x in tree_leaves(updates))
        assert all(x.dtype == np.float32 for x in tree_leaves(params))
        assert all(x.dtype in (np.float32, np.int32) for x in tree_leaves(state))
    # float64 gradients do not change the state's or the params' dtypes
    updates, state2 = opt.update(GRADS[3], state, params)
    assert [x.dtype for x in tree_leaves(state2)] == [x.dtype for x in tree_leaves(state)]
    assert all(x.dtype == np.float32
               for x in tree_leaves(optim.apply_updates(params, updates)))


def test_scalar_and_nested_params():
    params = {"layers": [np.float64(1.5), (np.ones(2), None)], "scale": 2.0}
    opt = optim.adam(0.1)
    state = opt.init(params)
    grads = tree_map(lambda p: np.ones_like(p), params)
    updates, state = opt.update(grads, state, params)
    new = optim.apply_updates(params, updates)
    assert tree_structure(new) == tree_structure(params)
    np.testing.assert_allclose(new["scale"], 2.0 - 0.1, rtol=1e-7)


# ============================================================================ jit and loops


def test_update_under_jit_matches_eager():
    opt = optim.adamw(1e-2)  # (sgd with momentum under jit: see the test below)
    step = fgrad.jit(opt.update)
    eager_state = jit_state = opt.init(PARAMS)
    for g in GRADS:
        u_eager, eager_state = opt.update(g, eager_state, PARAMS)
        u_jit, jit_state = step(g, jit_state, PARAMS)
        assert_trees_close(u_jit, u_eager, rtol=1e-13)
        assert_trees_close(jit_state, eager_state, rtol=1e-13)
    assert step.trace_count == 1


def quadratic_loss(params):
    return fnp.sum((params["w"] - 1.0) ** 2) + fnp.sum(params["b"] ** 2)


@pytest.mark.parametrize("opt", [optim.sgd(0.05, 0.9, True), optim.adam(0.1),
                                 optim.adamw(0.1, weight_decay=1e-3)],
                         ids=["nesterov", "adam", "adamw"])
def test_training_inside_fori_loop_and_jit(opt):
    def body(i, carry):
        params, state = carry
        grads = fgrad.grad(quadratic_loss)(params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state

    carry = (PARAMS, opt.init(PARAMS))
    for i in range(100):
        carry = body(i, carry)
    looped = lax.fori_loop(0, 100, body, (PARAMS, opt.init(PARAMS)))
    assert_trees_close(looped, carry, rtol=1e-10, atol=1e-12)
    assert quadratic_loss(carry[0]) < 1e-2 * quadratic_loss(PARAMS)


def test_training_inside_jitted_fori_loop():
    opt = optim.adamw(0.1, weight_decay=1e-3)

    def body(i, carry):
        params, state = carry
        grads = fgrad.grad(quadratic_loss)(params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state

    carry = (PARAMS, opt.init(PARAMS))
    for i in range(100):
        carry = body(i, carry)
    jitted = fgrad.jit(lambda p: lax.fori_loop(0, 100, body, (p, opt.init(p))))(PARAMS)
    assert_trees_close(jitted, carry, rtol=1e-10, atol=1e-12)
    # with traced bounds (a while_loop)
    upper = np.int64(100)
    traced = fgrad.jit(lambda p, n: lax.fori_loop(0, n, body, (p, opt.init(p))))(PARAMS, upper)
    assert_trees_close(traced, carry, rtol=1e-10, atol=1e-12)


def test_count_saturates_at_int32_max():
    opt = optim.adam(0.1)
    state = opt.init(PARAMS)
    state = (state[0]._replace(count=np.array(np.iinfo(np.int32).max - 1, np.int32)),) + state[1:]
    for _ in range(3):
        updates, state = opt.update(GRADS[0], state)
        assert np.all(np.isfinite(tree_leaves(updates)[0]))
    assert int(state[0].count) == np.iinfo(np.int32).max and state[0].count.dtype == np.int32


def test_with_an_nn_model():
    init, apply = nn.serial(nn.Dense(4), nn.Tanh, nn.Dense(1))
    params = init(np.random.default_rng(0), (-1, 3))
    x = RNG.normal(size=(16, 3))
    t = np.sin(x.sum(1, keepdims=True))

    def loss(params):
        return nn.mse_loss(apply(params, x), t)

    opt = optim.adam(0.05)
    state = opt.init(params)
    start = loss(params)
    step = fgrad.jit(lambda p, s: opt.update(fgrad.grad(loss)(p), s, p))
    for _ in range(50):
        updates, state = step(params, state)
        params = optim.apply_updates(params, updates)
    assert loss(params) < 0.2 * start


# ============================================================================ building blocks


def test_building_blocks_compose_like_optax():
    lr = 0.01
    composed = optim.chain(optim.scale_by_adam(), optim.scale_by_learning_rate(lr))
    assert_trees_close(run(composed)[-1][0], run(optim.adam(lr))[-1][0], rtol=1e-15)
    momentum = optim.chain(optim.trace(0.9), optim.scale(-0.1))
    assert_trees_close(run(momentum)[-1][0], run(optim.sgd(0.1, 0.9))[-1][0], rtol=1e-15)
    u, state = optim.identity().update(GRADS[0], optim.identity().init(PARAMS))
    assert u is GRADS[0] and state == optim.EmptyState()
    decay = optim.add_decayed_weights(0.5)
    u, _ = decay.update(GRADS[0], decay.init(PARAMS), PARAMS)
    assert_trees_close(u, tree_map(lambda g, p: g + 0.5 * p, GRADS[0], PARAMS))
    up, _ = optim.scale_by_learning_rate(0.5, flip_sign=False).update(GRADS[0], optim.EmptyState())
    assert_trees_close(up, tree_map(lambda g: 0.5 * g, GRADS[0]))


# ============================================================================ bad input


def test_mismatched_structures_name_both():
    bad = {"w": GRADS[0]["w"]}
    for opt, name in ((optim.sgd(0.1), "sgd"), (optim.adam(0.1), "adam"),
                      (optim.adamw(0.1), "adamw")):
        state = opt.init(PARAMS)
        with pytest.raises(ValueError, match=rf"{name}: the gradients have tree structure "
                                             r"PyTreeDef\(\{'w': \*\}\), but the params have "
                                             r"tree structure PyTreeDef\(\{'b': \*, 'w': \*\}\)"):
            opt.update(bad, state, PARAMS)
    opt = optim.adam(0.1)
    with pytest.raises(ValueError, match=r"adam: the gradients have tree structure "
                                         r"PyTreeDef\(\{'w': \*\}\), but the moments in the "
                                         r"state \(from init\) have tree structure"):
        opt.update(bad, opt.init(PARAMS))
    opt = optim.sgd(0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"sgd: the gradients have tree structure .* momentum"):
        opt.update([GRADS[0]["w"], GRADS[0]["b"]], opt.init(PARAMS))
    with pytest.raises(ValueError, match=r"sgd: the gradients .*"):
        fgrad.jit(opt.update)(bad, opt.init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match=r"apply_updates: the updates have tree structure "
                                         r"PyTreeDef\(\{'w': \*\}\), but the params have tree "
                                         r"structure PyTreeDef\(\{'b': \*, 'w': \*\}\)"):
        optim.apply_updates(PARAMS, bad)


def test_mismatched_leaf_shapes():
    opt = optim.adam(0.1)
    bad = {"w": np.ones((4, 3)), "b": np.ones(4)}
    with pytest.raises(ValueError, match=r"adam: leaf 1 of the gradients has shape \(4, 3\), but "
                                         r"the same leaf of the params has shape \(3, 4\)"):
        opt.update(bad, opt.init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match=r"leaf 1 of the gradients has shape \(4, 3\)"):
        opt.update(bad, opt.init(PARAMS))


def test_other_bad_input():
    opt = optim.adamw(0.1)
    with pytest.raises(ValueError, match=r"adamw: weight decay needs the params: call "
                                         r"update\(grads, state, params\)"):
        opt.update(GRADS[0], opt.init(PARAMS))
    with pytest.raises(TypeError, match="adam: b1 must be a number, got str"):
        optim.adam(0.1, b1="0.9")
    with pytest.raises(TypeError, match="sgd: momentum must be a number"):
        optim.sgd(0.1, momentum="0.9")
    with pytest.raises(TypeError, match="lr must be a number"):
        optim.sgd("0.1")
    with pytest.raises(TypeError, match=r"adam: eps must be a number, got ndarray of shape "
                                        r"\(2,\)"):
        optim.adam(0.1, eps=np.ones(2))


def test_hyperparameters_may_be_traced_arguments():
    """A learning rate (or momentum) passed into a jitted step, as optax allows."""

    @fgrad.jit
    def step(params, grads, lr, momentum):
        opt = optim.sgd(lr, momentum)
        updates, _ = opt.update(grads, opt.init(params), params)
        return optim.apply_updates(params, updates)

    new = step(PARAMS, GRADS[0], np.float64(0.1), np.float64(0.9))
    assert_trees_close(new, tree_map(lambda p, g: p - 0.1 * g, PARAMS, GRADS[0]))
