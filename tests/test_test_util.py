"""Tests for fgrad.test_util.check_grads: it passes on correct derivatives and fails on
deliberately wrong JVP rules, transpose rules, second derivatives, primals and dtypes."""

import numpy as np
import pytest

import fgrad
from fgrad import lax
from fgrad.core import Primitive
from fgrad.lax.lax import defjvp, deflinear
from fgrad.test_util import check_grads, default_tolerance, numerical_jvp

# --------------------------------------------------------------------------------------
# Helpers


def _rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _matmul(a, b):
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())))


def _same_aval(x):
    return x


# Primitives with deliberately wrong rules (defined once, at import, like lax's own).

# Value sin(x), but the JVP claims the derivative is sin(x) (should be cos(x)).
bad_sin_p = Primitive("bad_sin")
bad_sin_p.impl = np.sin
bad_sin_p.abstract_eval_rule = _same_aval
defjvp(bad_sin_p, lambda g, ans, x: lax.mul(g, lax.sin(x)))

# Linear x -> 2x whose JVP is right but whose transpose gives 3 * ct.
bad_scale_p = Primitive("bad_scale")
bad_scale_p.impl = lambda x: 2 * x
bad_scale_p.abstract_eval_rule = _same_aval
deflinear(bad_scale_p, lambda ct, x: [lax.mul(ct, 3.0)])

# Value cos(x), derivative claimed +sin(x) (should be -sin(x)).
bad_cos_p = Primitive("bad_cos")
bad_cos_p.impl = np.cos
bad_cos_p.abstract_eval_rule = _same_aval
defjvp(bad_cos_p, lambda g, ans, x: lax.mul(g, lax.sin(x)))

# sin(x) with a right first derivative cos(x), computed by bad_cos: wrong second derivative.
sin2_p = Primitive("sin_wrong_second_derivative")
sin2_p.impl = np.sin
sin2_p.abstract_eval_rule = _same_aval
defjvp(sin2_p, lambda g, ans, x: lax.mul(g, bad_cos_p.bind(x)))

# The JVP rule returns a wrong primal value.
bad_primal_p = Primitive("bad_primal")
bad_primal_p.impl = np.sin
bad_primal_p.abstract_eval_rule = _same_aval
bad_primal_p.jvp = lambda primals, tangents: (
    lax.add(lax.sin(primals[0]), 1.0), lax.mul(tangents[0], lax.cos(primals[0])))

# The JVP's tangent is float64 whatever the primal's dtype.
upcast_p = Primitive("upcast_tangent")
upcast_p.impl = np.sin
upcast_p.abstract_eval_rule = _same_aval
defjvp(upcast_p, lambda g, ans, x: lax.convert_element_type(lax.mul(g, lax.cos(x)), np.float64))


# --------------------------------------------------------------------------------------
# Correct functions pass


SMOOTH = {
    "sin": (lambda x: lax.sin(x), [(3,)]),
    "sin_times_x": (lambda x: lax.mul(lax.sin(x), x), [(2, 3)]),
    "exp": (lambda x: lax.exp(x), [(4,)]),
    "tanh_sum": (lambda x: lax.reduce_sum(lax.tanh(x), (0, 1)), [(3, 4)]),
    "matmul": (_matmul, [(3, 4), (4, 2)]),
    "mlp": (lambda w, x: lax.reduce_sum(lax.tanh(_matmul(x, w)), (0, 1)), [(5, 3), (4, 5)]),
    "quotient": (lambda x, y: lax.div(lax.sin(x), lax.add(lax.mul(y, y), 1.0)), [(3,), (3,)]),
    "scalar": (lambda x: lax.cos(lax.mul(x, lax.exp(x))), [()]),
}


@pytest.mark.parametrize("name", sorted(SMOOTH))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", [1, 2])
def test_passes_on_smooth_functions(name, dtype, order):
    f, shapes = SMOOTH[name]
    args = tuple(_rand(s, dtype, seed=i) for i, s in enumerate(shapes))
    check_grads(f, args, order=order)


@pytest.mark.parametrize("modes", [("fwd",), ("rev",), ["rev", "fwd"], "rev"])
def test_single_modes_pass(modes):
    check_grads(lambda x: lax.mul(lax.sin(x), x), (_rand((3,)),), order=2, modes=modes)


def test_order_three_float64():
    check_grads(lambda x: lax.reduce_sum(lax.mul(lax.exp(x), lax.sin(x)), (0,)),
                (_rand((3,)),), order=3)


def test_python_float_and_numpy_scalar_arguments():
    check_grads(lambda x: lax.sin(lax.mul(x, x)), (0.7,), order=2)
    check_grads(lambda x: lax.sin(lax.mul(x, x)), (np.float32(0.7),), order=2)
    check_grads(lambda x: lax.sin(lax.mul(x, x)), (np.float64(-1.3),), order=2)


def test_pytree_inputs_and_outputs():
    def f(params, xs):
        h = lax.tanh(lax.add(_matmul(xs[0], params["w"]), params["b"]))
        return {"out": lax.mul(h, xs[1]), "aux": (lax.reduce_sum(h, (0, 1)), lax.exp(params["b"]))}

    params = {"w": _rand((3, 2), seed=1), "b": _rand((4, 2), seed=2)}
    xs = (_rand((4, 3), seed=3), _rand((4, 2), seed=4))
    check_grads(f, (params, xs), order=2)
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    xs32 = tuple(x.astype(np.float32) for x in xs)
    check_grads(f, (params32, xs32), order=2)


def test_list_arguments_and_list_of_args():
    check_grads(lambda xs: lax.mul(xs[0], lax.sin(xs[1])), ([1.0, 2.0],), order=2)
    check_grads(lambda x, y: lax.mul(x, y), [_rand((2,)), _rand((2,), seed=1)])


def test_integer_leaves_are_held_fixed():
    def f(x, n):
        return lax.mul(lax.sin(x), lax.convert_element_type(n, np.float64))

    check_grads(f, (_rand((3,)), np.array([1, 2, 3])), order=2)
    check_grads(lambda x, k: lax.mul(x, float(k)), (_rand((2,)), 3), order=2)


def test_integer_outputs_are_ignored():
    check_grads(lambda x: (lax.sin(x), lax.argmax(x, 0)), (_rand((4,)),), order=2)


def test_mixed_precision_uses_float32_tolerances():
    def f(x32, y64):
        return lax.sin(x32), lax.mul(lax.sin(y64), y64)

    args = (_rand((3,), np.float32), _rand((3,), np.float64))
    check_grads(f, args, order=2)
    with pytest.raises(AssertionError, match="float32 tolerances"):
        check_grads(lambda x, y: (bad_sin_p.bind(x), y), args)


def test_nested_grad_order_two():
    g = fgrad.grad(lambda x: lax.reduce_sum(lax.mul(lax.sin(x), x), (0,)))
    check_grads(g, (_rand((3,)),), order=2)
    check_grads(g, (_rand((3,), np.float32),), order=2)


def test_nested_vjp_and_jvp():
    def f(x):
        out, vjp_fn = fgrad.vjp(lambda y: lax.mul(lax.tanh(y), y), x)
        _, t = fgrad.jvp(lax.exp, (x,), (out,))
        return lax.add(vjp_fn(t)[0], out)

    check_grads(f, (_rand((3,)),), order=2)


def test_large_float64_inputs():
    x = _rand((6,)) * 1000
    check_grads(lambda x: lax.mul(lax.tanh(lax.mul(x, 1e-3)), 1000.0), (x,), order=2)


def test_nans_in_the_same_places_are_accepted():
    check_grads(lax.sqrt, (np.array([-1.0, 2.0]),), order=2)


def test_float16():
    check_grads(lambda x: lax.mul(lax.tanh(x), x), (_rand((4,), np.float16),), order=2)
    with pytest.raises(AssertionError, match="float16 tolerances"):
        check_grads(bad_sin_p.bind, (_rand((4,), np.float16) + 1,))


def test_zero_sized_and_constant_outputs():
    check_grads(lambda x: lax.sin(x), (np.zeros((0, 3)),), order=2)
    check_grads(lambda x: (lax.sin(x), np.ones(2)), (_rand((2,)),), order=2)


def test_custom_tolerances_and_eps():
    x = _rand((3,))
    f = lambda x: bad_sin_p.bind(x)
    check_grads(f, (x,), atol=10.0, rtol=10.0)  # loose enough to accept anything finite
    with pytest.raises(AssertionError, match=r"eps=1\b"):
        check_grads(lax.exp, (x,), eps=1.0, modes=("fwd",))
    check_grads(lax.exp, (x,), eps=1e-3)


# --------------------------------------------------------------------------------------
# Wrong derivatives fail


def test_wrong_jvp_fails_in_forward_mode():
    x = _rand((4,))
    with pytest.raises(AssertionError) as info:
        check_grads(bad_sin_p.bind, (x,), modes=("fwd",))
    msg = str(info.value)
    assert "mode 'fwd'" in msg and "order 1" in msg
    assert "max abs error" in msg and "max rel error" in msg
    assert "expected:" in msg and "got:" in msg
    with pytest.raises(AssertionError, match="mode 'fwd'"):
        check_grads(bad_sin_p.bind, (x,))


def test_wrong_jvp_message_shows_values():
    x = np.array([0.1, 0.2, 0.3], np.float64)
    with pytest.raises(AssertionError) as info:
        check_grads(bad_sin_p.bind, (x,), modes=("fwd",))
    msg = str(info.value)
    # v is random but fixed; expected (finite differences) = cos(x) v and got = sin(x) v.
    got_line = next(line for line in msg.splitlines() if "got:" in line)
    expected_line = next(line for line in msg.splitlines() if "expected:" in line)
    assert got_line.count("[") == 1 and expected_line.count("[") == 1
    ratio = np.fromstring(got_line.split("[")[1].rstrip("]"), sep=" ") / np.fromstring(
        expected_line.split("[")[1].rstrip("]"), sep=" ")
    np.testing.assert_allclose(ratio, np.tan(x), rtol=1e-4)


def test_wrong_jvp_fails_in_reverse_mode_alone():
    # The transpose is consistent with the wrong JVP, so only finite differences catch it.
    with pytest.raises(AssertionError) as info:
        check_grads(bad_sin_p.bind, (_rand((4,)),), modes=("rev",))
    msg = str(info.value)
    assert "mode 'rev'" in msg and "finite differences" in msg and "order 1" in msg


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wrong_jvp_fails_in_both_dtypes_and_shapes(dtype):
    for shape in [(), (5,), (2, 3)]:
        with pytest.raises(AssertionError):
            check_grads(bad_sin_p.bind, (_rand(shape, dtype) + 1.0,))


def test_wrong_jvp_inside_a_pytree_function():
    def f(d):
        return {"a": lax.sin(d["x"]), "b": (lax.mul(bad_sin_p.bind(d["y"]), d["x"]),)}

    with pytest.raises(AssertionError, match="output leaf 1 of 2"):
        check_grads(f, ({"x": _rand((3,)), "y": _rand((3,), seed=1)},), modes=("fwd",))


def test_wrong_transpose_fails_in_reverse_mode_only():
    x = _rand((3,))
    check_grads(bad_scale_p.bind, (x,), modes=("fwd",), order=2)
    with pytest.raises(AssertionError) as info:
        check_grads(bad_scale_p.bind, (x,))
    msg = str(info.value)
    assert "mode 'rev'" in msg and "transpose of the JVP" in msg
    assert "max abs error" in msg and "max rel error" in msg
    with pytest.raises(AssertionError, match="finite differences"):
        check_grads(bad_scale_p.bind, (x,), modes=("rev",))
    with pytest.raises(AssertionError, match="mode 'rev'"):
        check_grads(bad_scale_p.bind, (x.astype(np.float32),))


def test_wrong_transpose_inside_composite():
    f = lambda x, y: lax.reduce_sum(lax.mul(lax.sin(bad_scale_p.bind(x)), y), (0,))
    with pytest.raises(AssertionError, match="mode 'rev'"):
        check_grads(f, (_rand((4,)), _rand((4,), seed=1)))


def test_wrong_second_derivative_fails_only_at_order_two():
    x = _rand((3,))
    check_grads(sin2_p.bind, (x,), order=1)
    for modes in [("fwd",), ("rev",), ("fwd", "rev")]:
        with pytest.raises(AssertionError) as info:
            check_grads(sin2_p.bind, (x,), order=2, modes=modes)
        assert "order 2" in str(info.value)
    with pytest.raises(AssertionError, match=r"mode 'fwd' failed at order 2 \(JVP of JVP\)"):
        check_grads(sin2_p.bind, (x,), order=2, modes=("fwd",))
    with pytest.raises(AssertionError, match=r"order 2 \(\w+ of VJP\)"):
        check_grads(sin2_p.bind, (x,), order=2, modes=("rev",))


def test_wrong_primal_of_jvp_fails():
    with pytest.raises(AssertionError, match="primal output of jvp"):
        check_grads(bad_primal_p.bind, (_rand((3,)),))


def test_wrong_tangent_dtype_fails():
    # A rule that returns a float64 tangent for a float32 primal is caught at order 1.
    x = _rand((3,), np.float32)
    with pytest.raises(AssertionError, match="expected dtype float32, got float64"):
        check_grads(upcast_p.bind, (x,), order=1, modes=("fwd",))


def test_deterministic():
    messages = []
    for _ in range(2):
        with pytest.raises(AssertionError) as info:
            check_grads(bad_sin_p.bind, (_rand((5,)),))
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_long_outputs_are_summarised():
    with pytest.raises(AssertionError) as info:
        check_grads(bad_sin_p.bind, (_rand((1000,)),), modes=("fwd",))
    assert "..." in str(info.value) and len(str(info.value)) < 1500


# --------------------------------------------------------------------------------------
# Arguments, helpers


def test_bad_arguments():
    f, x = lax.sin, (_rand((2,)),)
    with pytest.raises(ValueError, match="order"):
        check_grads(f, x, order=0)
    with pytest.raises(ValueError, match="modes"):
        check_grads(f, x, modes=("bwd",))
    with pytest.raises(ValueError, match="modes"):
        check_grads(f, x, modes=())
    with pytest.raises(TypeError, match="tuple"):
        check_grads(f, _rand((2,)))


def test_numerical_jvp_and_defaults():
    x, v = _rand((3,)), _rand((3,), seed=1)
    for stencil in (2, 4):
        np.testing.assert_allclose(numerical_jvp(np.sin, (x,), (v,), 1e-5, stencil),
                                   np.cos(x) * v, rtol=1e-8)
    x32, v32 = x.astype(np.float32), v.astype(np.float32)
    d = numerical_jvp(lambda a: {"s": np.sin(a)}, (x32,), (v32,), 3e-3)
    assert d["s"].dtype == np.float32
    np.testing.assert_allclose(d["s"], np.cos(x) * v, rtol=1e-3, atol=1e-3)
    assert default_tolerance(np.float64) == (1e-4, 1e-5)
    assert default_tolerance(np.float32) == (3e-3, 2e-2)
