"""fgrad.numpy.einsum and tensordot's axis forms.

einsum is checked against NumPy (values, shapes, dtypes) over many subscripts, its
derivatives at order 2 in both modes, its staged IR (contractions are dot_generals,
never a broadcast multiply and sum), vmap against a loop, and its error messages.
"""

from __future__ import annotations

import numpy as np
import pytest
from _opspec import (
    REDUCTION_TOL,
    OpSpec,
    assert_same,
    cases,
    check_derivatives,
    check_jaxpr,
    check_jaxpr_agrees,
    check_unique_names,
    check_values,
    int_values,
    uniform,
)

import fgrad
import fgrad.numpy as fnp

NORMAL = uniform(-2.0, 2.0)

# (subscripts, operand shapes); the first shape set of each is where order-2 checks run.
EINSUM_CASES = [
    ("ij,jk->ik", [((3, 4), (4, 2)), ((1, 4), (4, 1)), ((3, 1), (4, 2))]),  # size-1 broadcasts
    ("ij,jk", [((3, 4), (4, 2))]),  # implicit output
    ("ij,ij->", [((3, 4), (3, 4))]),
    ("ij,ij->ij", [((3, 4), (3, 4))]),  # a batch (Hadamard) product
    ("i,j->ij", [((3,), (4,))]),
    ("i,i", [((3,), (3,))]),
    ("i,i->i", [((3,), (3,))]),
    ("ij->ji", [((3, 4),)]),
    ("ij->", [((3, 4),)]),
    ("ijk->kij", [((2, 3, 4),)]),
    ("ii->i", [((3, 3),)]),  # a diagonal
    ("ii", [((3, 3),)]),  # the trace
    ("iij,jk->ik", [((3, 3, 4), (4, 2))]),
    ("bij,bjk->bik", [((2, 3, 4), (2, 4, 5))]),
    ("bij,bjk->bki", [((2, 3, 4), (2, 4, 5))]),
    ("...ij,...jk->...ik", [((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)),
                            ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (4, 2))]),
    ("...ij,...jk", [((2, 3, 4), (4, 5))]),
    ("...i,...i->...", [((2, 3), (3,))]),
    ("i,...", [((2,), (3, 4))]),
    ("ij...,jk...->ik...", [((3, 4, 2), (4, 5, 2))]),
    ("...,...", [((2, 3), (3,))]),
    (",ij->ij", [((), (2, 3))]),
    ("ij,jk,kl->il", [((2, 3), (3, 4), (4, 5))]),
    ("ij,kj,lj->ikl", [((2, 3), (4, 3), (5, 3))]),
    ("abc,cd,db->a", [((2, 3, 4), (4, 5), (5, 3))]),
    ("ab,bc,cd,da->", [((2, 3), (3, 4), (4, 5), (5, 2))]),
    ("bA", [((2, 3),)]),  # implicit order: ASCII, uppercase first
    ("i j , j k -> i k", [((3, 4), (4, 2))]),  # spaces are ignored
    ("ijk,ikl->jl", [((2, 3, 4), (2, 4, 5))]),
    ("ij,jk->ijk", [((3, 4), (4, 2))]),  # a shared label kept: batch axis in the middle
]


def _einsum_spec(subscripts, shapes):
    return OpSpec(f"einsum[{subscripts}]", lambda *xs: fnp.einsum(subscripts, *xs),
                  len(shapes[0]), NORMAL, ref=lambda *xs: np.einsum(subscripts, *xs),
                  shapes=shapes, tol=REDUCTION_TOL)


SPECS = [_einsum_spec(s, shapes) for s, shapes in EINSUM_CASES]

TENSORDOT = [
    ("int2", 2, [((2, 3, 4), (3, 4)), ((3, 4), (3, 4, 2))]),
    ("int0", 0, [((3,), (2, 2))]),
    ("npint1", np.int64(1), [((3, 4), (4, 2))]),
    ("pair_ints", (1, 0), [((3, 4), (4, 2))]),
    ("pair_negative_ints", (-1, -2), [((3, 4), (2, 4, 5))]),
    ("pair_sequences", ((0, 2), (1, 0)), [((2, 3, 4), (4, 2, 5))]),
    ("pair_lists", [[1, 0], [0, 1]], [((3, 2), (2, 3, 4))]),
    ("pair_mixed", ([2], 0), [((2, 3, 4), (4, 5))]),
    ("pair_empty", ((), ()), [((2,), (3,))]),
]
SPECS += [OpSpec(f"tensordot_{name}", lambda a, b, axes=axes: fnp.tensordot(a, b, axes), 2,
                 NORMAL, ref=lambda a, b, axes=axes: np.tensordot(a, b, axes), shapes=shapes,
                 tol=REDUCTION_TOL) for name, axes, shapes in TENSORDOT]
SPECS += [
    OpSpec("einsum_int64", lambda a, b: fnp.einsum("ij,jk->ik", a, b), 2,
           int_values(-3, 3, np.int64), ref=lambda a, b: np.einsum("ij,jk->ik", a, b),
           shapes=[((3, 4), (4, 2))], dtypes=(np.dtype(np.int64),), grad=False),
    OpSpec("einsum_mixed_dtypes", lambda a: fnp.einsum("ij,jk", a, np.ones((4, 2))), 1,
           NORMAL, ref=lambda a: np.einsum("ij,jk", a, np.ones((4, 2))), shapes=[((3, 4),)],
           tol=REDUCTION_TOL),
    OpSpec("einsum_dtype_keyword", lambda a: fnp.einsum("ij->i", a, dtype=np.float64), 1,
           NORMAL, ref=lambda a: np.einsum("ij->i", a, dtype=np.float64), shapes=[((3, 4),)],
           tol=REDUCTION_TOL),
    OpSpec("einsum_interleaved", lambda a, b: fnp.einsum(a, [0, 1], b, [1, 2], [0, 2]), 2,
           NORMAL, ref=lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [0, 2]),
           shapes=[((3, 4), (4, 2))], tol=REDUCTION_TOL),
    OpSpec("einsum_interleaved_implicit_ellipsis",
           lambda a, b: fnp.einsum(a, [Ellipsis, 0, 1], b, [1, 2]), 2, NORMAL,
           ref=lambda a, b: np.einsum(a, [Ellipsis, 0, 1], b, [1, 2]),
           shapes=[((2, 3, 4), (4, 2))], tol=REDUCTION_TOL),
]
check_unique_names(SPECS)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(SPECS))
def test_values(spec, shapes, dtype, representative):
    check_values(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(SPECS))
def test_jaxpr(spec, shapes, dtype, representative):
    check_jaxpr(spec, shapes, dtype)


@pytest.mark.parametrize("spec, shapes, dtype, representative", cases(SPECS, grad_only=True))
def test_grads(spec, shapes, dtype, representative):
    check_derivatives(spec, shapes, dtype, representative)


# ============================================================================ lowering


def _primitives(fn, *shapes):
    args = [np.ones(s) for s in shapes]
    closed = fgrad.make_jaxpr(fn)(*args)
    fgrad.ir.check_jaxpr(closed.jaxpr)
    return [e.primitive.name for e in closed.jaxpr.eqns]


@pytest.mark.parametrize("subscripts, shapes, n_dots", [
    ("ij,jk->ik", [(3, 4), (4, 2)], 1),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], 1),
    ("ij,ij->", [(3, 4), (3, 4)], 1),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], 2),
    ("ab,bc,cd,da->", [(2, 3), (3, 4), (4, 5), (5, 2)], 3),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)], 1),
])
def test_contractions_are_dot_generals(subscripts, shapes, n_dots):
    """Every contraction is one dot_general: no elementwise multiply, no broadcast."""
    names = _primitives(lambda *xs: fnp.einsum(subscripts, *xs), *shapes)
    assert names.count("dot_general") == n_dots, names
    assert "mul" not in names and "broadcast_in_dim" not in names, names


def test_unshared_labels_are_summed_first():
    # 'ij,jk->k': i appears once and is summed before the contraction over j.
    names = _primitives(lambda a, b: fnp.einsum("ij,jk->k", a, b), (3, 4), (4, 2))
    assert names == ["reduce_sum", "dot_general"], names


def test_vmap_matches_loop():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3, 4)), rng.normal(size=(4, 2))
    fn = lambda a, b: fnp.einsum("ij,jk->ik", a, b)  # noqa: E731
    want = np.stack([np.einsum("ij,jk->ik", x, b) for x in a])
    assert_same(fgrad.vmap(fn, in_axes=(0, None))(a, b), want, 1e-12)
    c = rng.normal(size=(4, 5, 2))
    want = np.stack([np.einsum("ij,jk->ik", a[0], c[:, i]) for i in range(5)])
    assert_same(fgrad.vmap(fn, in_axes=(None, 1))(a[0], c), want, 1e-12)
    check_jaxpr_agrees(fgrad.vmap(fn, in_axes=(None, 1)), (a[0], c), 1e-12)
    grads = fgrad.vmap(fgrad.grad(lambda x: fnp.einsum("ij,jk,k->", x, b, b[0])))(a)
    assert_same(grads, np.stack([np.outer(np.ones(3), b @ b[0])] * 5), 1e-12)


def test_numpy_einsum_dispatches_on_tracers():
    a, b = np.ones((3, 4)), np.ones((4, 2))
    fn = lambda a, b: np.einsum("ij,jk->ik", a, b)  # noqa: E731
    check_jaxpr_agrees(fn, (a, b), 1e-12)
    out, tangent = fgrad.jvp(fn, (a, b), (a, b))
    assert_same(out, fn(a, b), 0.0)
    assert_same(tangent, 2 * fn(a, b), 0.0)
    check_jaxpr_agrees(lambda a, b: np.tensordot(a, b, 1), (a, b), 1e-12)


# ============================================================================ errors


@pytest.mark.parametrize("args, pattern", [
    (("ij,jk->ik", (2, 3), (4, 5)),
     r"einsum: subscripts 'ij,jk->ik': label 'j' has sizes 3 and 4 \(axis 0 of operand 1\); "
     r"operand shapes \(2, 3\) \(4, 5\)"),
    (("...i,...i", (2, 3), (4, 3)),
     r"subscripts '...i,...i': the ellipsis has sizes 2 and 4 .*\(2, 3\) \(4, 3\)"),
    (("ij,jk->ikl", (2, 3), (3, 5)), r"output label 'l' never appears"),
    (("ij", (2, 3, 4)), r"operand 0 'ij' names 2 axes but the operand has shape \(2, 3, 4\)"),
    (("ij,jk", (2, 3)), r"subscripts 'ij,jk' name 2 operand\(s\), got 1"),
    (("ij->ii", (2, 2)), r"a label repeats in the output"),
    (("ii->i", (2, 3)), r"repeated label 'i' of operand 0 has sizes 2 and 3"),
    (("i1,j->ij", (2, 3), (3,)), r"'1' in operand 0 'i1' is not a letter"),
    (("...ij->ij", (2, 3, 4)), r"the output must have '...' too"),
    (("i.j", (2, 3)), r"invalid ellipsis"),
    (("i->i->i", (2,)), r"more than one '->'"),
])
def test_einsum_errors(args, pattern):
    subscripts, *shapes = args
    with pytest.raises(ValueError, match=pattern):
        fnp.einsum(subscripts, *[np.ones(s) for s in shapes])


def test_einsum_other_errors():
    with pytest.raises(TypeError, match=r"einsum: boolean operands"):
        fnp.einsum("i,i", np.ones(2, bool), np.ones(2, bool))
    with pytest.raises(TypeError, match=r"einsum: out="):
        fnp.einsum("i->i", np.ones(2), out=np.ones(2))
    with pytest.raises(ValueError, match=r"einsum: needs at least one operand"):
        fnp.einsum("")
    # Under a transform too, at trace time.
    with pytest.raises(ValueError, match=r"label 'j' has sizes 3 and 4"):
        fgrad.make_jaxpr(lambda a, b: fnp.einsum("ij,jk", a, b))(np.ones((2, 3)), np.ones((4, 2)))


def test_tensordot_errors():
    a, b = np.ones((2, 3, 4)), np.ones((4, 3))
    with pytest.raises(ValueError, match=r"tensordot: shapes \(2, 3, 4\) and \(3, 4\) not "
                                         r"aligned: 4 \(dim 2 of the first\) != 3"):
        fnp.tensordot(a, b.T, 1)
    with pytest.raises(ValueError, match=r"axes=4 is invalid"):
        fnp.tensordot(a, b, 4)
    with pytest.raises(ValueError, match=r"differ in length"):
        fnp.tensordot(a, b, ((1, 2), (0,)))
    with pytest.raises(np.exceptions.AxisError, match=r"tensordot: axis 3 is out of bounds"):
        fnp.tensordot(a, b, ((3,), (0,)))
    with pytest.raises(ValueError, match=r"repeated axis"):
        fnp.tensordot(a, np.ones((4, 4)), ((2, 2), (0, 1)))
    with pytest.raises(ValueError, match=r"axes must be an int or a pair"):
        fnp.tensordot(a, b, "x")
