"""The IR (fgrad/ir.py) and dispatch (fgrad/core.py): printing, type checking,
evaluation, tracers' Python protocols, escaped tracers."""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fgrad.core import Primitive, eval_jaxpr
from fgrad.errors import ConcretizationError, TracerArrayConversionError, UnexpectedTracerError
from fgrad.ir import ClosedJaxpr, Eqn, Jaxpr, JaxprTypeError, ShapedArray, Var, check_jaxpr


def test_listing_is_readable():
    def f(x, y):
        return fnp.sum(fnp.sin(x) * y, axis=0)

    listing = str(fgrad.make_jaxpr(f)(np.ones((2, 3)), np.float32(2.0)))
    assert listing.splitlines()[0] == "{ lambda a:f64[2,3] b:f32[]. let"
    assert "    c:f64[2,3] = sin a" in listing
    assert "convert_element_type[new_dtype=f64, weak_type=False] b" in listing
    assert "reduce_sum[axes=(0,)]" in listing
    assert listing.splitlines()[-1].startswith("  in (")


def test_listing_shows_constants_and_literals():
    c = np.arange(3.0)
    closed = fgrad.make_jaxpr(lambda x: x * c + 1.0)(np.ones(3))
    assert isinstance(closed, ClosedJaxpr)
    listing = str(closed)
    assert listing.startswith("{ lambda a:f64[3]; b:f64[3]. let")  # constvar; then argument
    assert "1.0:f64[]" in listing
    np.testing.assert_array_equal(closed.consts[0], c)


def test_eval_jaxpr_matches_eager():
    def f(x):
        return fnp.tanh(x @ x.T).sum(axis=1) / 3.0

    x = np.random.default_rng(0).normal(size=(3, 2))
    closed = fgrad.make_jaxpr(f)(x)
    check_jaxpr(closed.jaxpr)
    (out,) = eval_jaxpr(closed.jaxpr, closed.consts, x)
    np.testing.assert_allclose(out, f(x))
    assert closed.out_avals[0] == ShapedArray((3,), np.float64)


def test_dead_code_is_dropped():
    def f(x):
        fnp.exp(x)  # unused
        return fnp.sin(x)

    assert "exp" not in str(fgrad.make_jaxpr(f)(1.0))


def test_check_jaxpr_catches_errors():
    a, b = Var(ShapedArray((3,), np.float64)), Var(ShapedArray((3,), np.float64))
    undefined = Var(ShapedArray((3,), np.float64))
    with pytest.raises(JaxprTypeError, match="before it is defined"):
        check_jaxpr(Jaxpr([], [a], [b], [Eqn(lax.lax.sin_p, [undefined], {}, [b])]))
    wrong = Var(ShapedArray((4,), np.float64))
    with pytest.raises(JaxprTypeError, match="f64\\[3\\]"):
        check_jaxpr(Jaxpr([], [a], [wrong], [Eqn(lax.lax.sin_p, [a], {}, [wrong])]))
    with pytest.raises(JaxprTypeError, match="defined twice"):
        check_jaxpr(Jaxpr([], [a], [a], [Eqn(lax.lax.sin_p, [a], {}, [a])]))


def test_shape_mismatch_at_trace_time_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"add.*\(3,\) \(4,\)"):
        fgrad.make_jaxpr(lambda x, y: x + y)(np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match=r"lax.mul.*f64\[3\], f64\[4\]"):
        fgrad.make_jaxpr(lambda x, y: lax.mul(x, y))(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4,\)"):
        fgrad.make_jaxpr(lambda x, y: x @ y)(np.ones((2, 3)), np.ones(4))


# ---------------------------------------------------------------------------- concreteness


def branchy(x):
    if x > 0:  # the line the error must point at
        return x
    return -x


@pytest.mark.parametrize("operation, call", [
    ("bool", lambda x: bool(x)),
    ("float", lambda x: float(x)),
    ("int", lambda x: int(x)),
    ("item", lambda x: x.item()),
    ("index", lambda x: [1, 2][x]),
])
def test_abstract_values_refuse_concretization(operation, call):
    with pytest.raises(ConcretizationError) as info:
        fgrad.make_jaxpr(call)(np.int64(1) if operation == "index" else 1.0)
    assert isinstance(info.value, TypeError)
    assert "make_jaxpr" in str(info.value) and "static_argnums" in str(info.value)


def test_concretization_error_names_user_line_and_fix():
    with pytest.raises(ConcretizationError) as info:
        fgrad.make_jaxpr(branchy)(1.0)
    message = str(info.value)
    assert "test_core.py" in message and "if x > 0:" in message
    assert "lax.cond" in message and "bool[]" in message


def test_concrete_values_work_under_grad():
    def f(x):
        n = int(x)  # concrete primal: fine under grad, as in PyTorch
        return x * float(x) * n if bool(x > 0) and x.item() > 0 else x

    assert fgrad.grad(f)(2.0) == 2.0 * 2.0


def test_numpy_conversion_of_tracer_raises():
    with pytest.raises(TracerArrayConversionError, match="fgrad.numpy"):
        fgrad.grad(lambda x: np.asarray(x).sum())(np.ones(2))


def test_numpy_functions_dispatch_to_fgrad_numpy():
    x = np.array([0.1, 0.2])
    np.testing.assert_allclose(fgrad.grad(lambda x: np.sum(np.sin(x)))(x), np.cos(x))
    np.testing.assert_allclose(fgrad.grad(lambda x: np.mean(np.exp(x) * x))(x),
                               (np.exp(x) * (1 + x)) / 2)
    with pytest.raises(TracerArrayConversionError, match="np.fft"):
        fgrad.grad(lambda x: np.fft.fft(x).real.sum())(x)


def test_escaped_tracer_names_transform():
    leaked = []

    def f(x):
        leaked.append(x)
        return x * 2.0

    fgrad.grad(f)(1.0)
    with pytest.raises(UnexpectedTracerError, match="grad"):
        fnp.sin(leaked[0])
    fgrad.make_jaxpr(f)(1.0)
    with pytest.raises(UnexpectedTracerError, match="make_jaxpr"):
        leaked[-1] + 1.0


def test_missing_rule_names_primitive_and_transform():
    no_jvp = Primitive("no_jvp")
    no_jvp.impl = lambda x: x
    no_jvp.abstract_eval_rule = lambda x: x
    assert no_jvp.bind(np.float64(3.0)) == 3.0
    with pytest.raises(NotImplementedError, match="'no_jvp'.*jvp"):
        fgrad.grad(lambda x: no_jvp.bind(x))(1.0)


def test_tracer_repr_shows_type_and_value():
    seen = []
    fgrad.grad(lambda x: seen.append(repr(x * 2.0)) or x)(1.5)
    assert "f64[]" in seen[0] and "3." in seen[0]


def test_tracers_are_unhashable_and_iterable():
    def f(x):
        with pytest.raises(TypeError):
            hash(x)
        parts = list(x)
        assert len(parts) == len(x) == 3
        return parts[0] + parts[2]

    assert fgrad.grad(lambda x: f(x))(np.ones(3)).tolist() == [1.0, 0.0, 1.0]
