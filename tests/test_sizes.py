"""Sizes written in terms of a kernel's dimension parameters (fgrad/backend/sizes.py)."""

from __future__ import annotations

import operator

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fgrad.backend import cache, executor
from fgrad.backend.sizes import Dim, Sizes
from fgrad.ir import ShapedArray

VALUES = {"dim0": 7, "dim1": 3, "dim2": 12}
DIMS = [Dim(v, name) for name, v in VALUES.items()]
OPS = [operator.add, operator.sub, operator.mul, operator.floordiv]


def expressions() -> st.SearchStrategy:
    leaves = st.sampled_from(DIMS) | st.integers(-3, 20)

    def combine(children: st.SearchStrategy) -> st.SearchStrategy:
        return st.tuples(st.sampled_from(OPS), children, children)

    return st.recursive(leaves, combine, max_leaves=8)


def build(tree):
    if not isinstance(tree, tuple):
        return tree
    op, a, b = tree
    a, b = build(a), build(b)
    if op is operator.floordiv and (int(b) <= 0 or int(a) < 0):
        return op(a, 1)  # sizes are never divided by zero or negative numbers
    return op(a, b)


@given(expressions())
def test_a_dim_writes_an_expression_equal_to_its_value(tree):
    n = build(tree)
    assert int(n) == eval(f"{n}", {}, dict(VALUES))
    # ... also as the operand of the operators the code generator writes around it.
    assert eval(f"2 * {n} * 5", {}, dict(VALUES)) == 10 * int(n)
    assert eval(f"100 - {n} - 1", {}, dict(VALUES)) == 99 - int(n)


def test_sizes_name_the_distinct_dimensions_of_the_parameters():
    sizes = Sizes([ShapedArray((100, 10), np.float64), ShapedArray((10, 1), np.float64),
                   ShapedArray((), np.float64)])
    assert sizes.params == ["dim0", "dim1"] and sizes.values == [100, 10]
    assert f"{sizes.dim(100) * sizes.dim(10)}" == "dim0 * dim1"
    assert sizes.dim(1) == 1 and not isinstance(sizes.dim(1), Dim)
    assert not isinstance(sizes.dim(37), Dim)  # not a parameter: written as a number


def _kernel(fn, *args) -> str:
    return executor.kernel_source(fgrad.jit(fn).lower(*args).jaxpr)


def test_mean_and_its_gradient_divide_by_the_sizes():
    f = fgrad.value_and_grad(lambda x: fnp.mean(fnp.sin(x) ** 2))
    source = _kernel(f, np.ones((6, 5)))
    assert "float(dim0 * dim1)" in source
    assert source == _kernel(f, np.ones((9, 5)))


def test_scan_over_rows_reuses_the_kernel_for_another_length():
    def f(xs):
        return lax.scan(lambda c, x: (c + x.sum(), c * x), 0.0, xs, reverse=True)

    rng = np.random.default_rng(1)
    jitted = fgrad.jit(f)
    before = None
    for rows in (5, 8):
        xs = rng.normal(size=(rows, 3))
        np.testing.assert_allclose(jitted(xs)[1], f(xs)[1], rtol=1e-12)
        if before is None:
            before = cache.stats()["compiled"]
    assert cache.stats()["compiled"] == before
    assert _kernel(f, np.ones((5, 3))) == _kernel(f, np.ones((8, 3)))
