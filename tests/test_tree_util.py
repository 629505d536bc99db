import collections
import copy
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fgrad.tree_util import (
    all_leaves,
    broadcast_prefix,
    register_pytree_node,
    register_pytree_node_class,
    tree_all,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_structure,
    tree_unflatten,
    treedef_is_leaf,
)

# --------------------------------------------------------------------------------------
# Helpers: containers used by the tests, and a strict structural comparison.

Point = collections.namedtuple("Point", ["x", "y"])
Pair = collections.namedtuple("Pair", ["x", "y"])  # same fields as Point, different class


class Box:
    """A registered container: one child, plus hashable aux data `meta`."""

    def __init__(self, value, meta):
        self.value = value
        self.meta = meta


register_pytree_node(Box, lambda b: ((b.value,), b.meta), lambda meta, ch: Box(ch[0], meta))


@register_pytree_node_class
class Linear:
    """Registered with the decorator: two children, aux data is the name."""

    def __init__(self, w, b, name="linear"):
        self.w, self.b, self.name = w, b, name

    def tree_flatten(self):
        return (self.w, self.b), self.name

    @classmethod
    def tree_unflatten(cls, name, children):
        return cls(*children, name=name)


class Opaque:
    """An unregistered class: always a leaf."""


class MyList(list):
    """A list subclass that is not registered: a leaf."""


class Wrapped:
    """An unregistered wrapper, so a leaf: marks the leaves tree_map produced."""

    def __init__(self, x):
        self.x = x


def assert_same_tree(a, b):
    """Same containers (exact types, dict keys, aux data) and the very same leaf objects."""
    assert type(a) is type(b), (a, b)
    if type(a) in (list, tuple) or hasattr(type(a), "_fields"):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_tree(x, y)
    elif type(a) is dict:
        assert list(sorted(a)) == list(sorted(b))
        for k in a:
            assert_same_tree(a[k], b[k])
    elif type(a) is Box:
        assert a.meta == b.meta
        assert_same_tree(a.value, b.value)
    elif type(a) is Linear:
        assert a.name == b.name
        assert_same_tree(a.w, b.w)
        assert_same_tree(a.b, b.b)
    elif a is None:
        assert b is None
    else:
        assert a is b, (a, b)


# --------------------------------------------------------------------------------------
# Flattening and round trips, container by container.

ARRAY = np.arange(3.0)
OBJ = Opaque()


@pytest.mark.parametrize(
    "tree, expected_leaves",
    [
        (1.5, [1.5]),
        (ARRAY, [ARRAY]),
        ("text", ["text"]),
        (OBJ, [OBJ]),
        ((1, 2), [1, 2]),
        ([1, 2, 3], [1, 2, 3]),
        ({"b": 1, "a": 2, "c": 3}, [2, 1, 3]),  # sorted key order
        (Point(1, 2), [1, 2]),
        (None, []),
        (Box(ARRAY, "m"), [ARRAY]),
        (Linear(1, 2), [1, 2]),
        ((), []),
        ([], []),
        ({}, []),
        ([(), [], {}, None], []),
        ((1, [2, {"z": 3, "y": (4, None)}], Point(5, Box(6, 0))), [1, 2, 4, 3, 5, 6]),
        (MyList([1, 2]), [MyList([1, 2])]),  # unregistered list subclass is a leaf
    ],
)
def test_flatten_and_round_trip(tree, expected_leaves):
    leaves, treedef = tree_flatten(tree)
    assert len(leaves) == len(expected_leaves)
    for got, want in zip(leaves, expected_leaves):
        assert got is want or (type(got) is type(want) and got == want)
    assert treedef.num_leaves == len(expected_leaves)
    assert_same_tree(tree_unflatten(treedef, leaves), tree)
    assert_same_tree(treedef.unflatten(leaves), tree)


def test_leaves_are_not_copied():
    x = np.ones(3)
    (leaf,) = tree_leaves({"a": [x]})
    assert leaf is x


def test_unflatten_builds_new_containers():
    tree = {"a": [1, 2], "b": Point(3, 4)}
    leaves, treedef = tree_flatten(tree)
    new = tree_unflatten(treedef, [10, 20, 30, 40])
    assert new == {"a": [10, 20], "b": Point(30, 40)}
    assert type(new["b"]) is Point
    assert tree == {"a": [1, 2], "b": Point(3, 4)}  # the input is untouched


def test_unflatten_accepts_any_iterable():
    treedef = tree_structure((0, [0, 0]))
    assert tree_unflatten(treedef, iter([1, 2, 3])) == (1, [2, 3])


def test_dict_order_does_not_matter():
    d1 = {"a": 1, "b": 2}
    d2 = {"b": 2, "a": 1}
    assert tree_leaves(d1) == tree_leaves(d2) == [1, 2]
    assert tree_structure(d1) == tree_structure(d2)
    assert hash(tree_structure(d1)) == hash(tree_structure(d2))


def test_dict_with_non_string_keys():
    tree = {2: "b", 1: "a", 3: "c"}
    leaves, treedef = tree_flatten(tree)
    assert leaves == ["a", "b", "c"]
    assert tree_unflatten(treedef, leaves) == tree


def test_unsortable_dict_keys_raise_type_error():
    with pytest.raises(TypeError, match="dict keys must be sortable"):
        tree_flatten({1: "a", "x": "b"})


def test_ordered_dict_and_other_subclasses_are_leaves():
    od = collections.OrderedDict(a=1)
    assert tree_leaves([od]) == [od]
    assert tree_leaves([MyList([1])])[0] == MyList([1])


# --------------------------------------------------------------------------------------
# None


def test_none_is_a_node_without_leaves():
    assert tree_leaves(None) == []
    assert tree_leaves([1, None, 2]) == [1, 2]
    leaves, treedef = tree_flatten({"a": None, "b": 3})
    assert leaves == [3]
    assert treedef.num_leaves == 1
    assert treedef.num_nodes == 3  # the dict, None and the leaf
    assert tree_unflatten(treedef, [7]) == {"a": None, "b": 7}


def test_none_with_is_leaf():
    leaves, treedef = tree_flatten([1, None], is_leaf=lambda x: x is None)
    assert leaves == [1, None]
    assert repr(treedef) == "PyTreeDef([*, *])"
    assert tree_unflatten(treedef, [None, 2]) == [None, 2]


def test_tree_map_keeps_none():
    assert tree_map(lambda x: x * 10, (1, None, [2])) == (10, None, [20])


# --------------------------------------------------------------------------------------
# namedtuples and registered classes


def test_namedtuple_rebuilt_as_same_class():
    out = tree_map(lambda v: v + 1, Point(1, [2]))
    assert type(out) is Point
    assert out == Point(2, [3])


def test_namedtuple_classes_with_same_fields_differ():
    assert tree_structure(Point(1, 2)) != tree_structure(Pair(1, 2))
    assert tree_structure(Point(1, 2)) != tree_structure((1, 2))


def test_registered_class_round_trip_and_aux():
    b = Box([1, 2], meta="tag")
    leaves, treedef = tree_flatten(b)
    assert leaves == [1, 2]
    assert treedef.node_type is Box
    assert treedef.node_data == "tag"
    rebuilt = tree_unflatten(treedef, [3, 4])
    assert type(rebuilt) is Box and rebuilt.meta == "tag" and rebuilt.value == [3, 4]


def test_registered_aux_data_is_part_of_structure():
    assert tree_structure(Box(1, "a")) == tree_structure(Box(2, "a"))
    assert tree_structure(Box(1, "a")) != tree_structure(Box(1, "b"))


def test_register_pytree_node_class_decorator():
    layer = Linear(np.ones(2), np.zeros(1), name="fc")
    out = tree_map(lambda a: a + 1, layer)
    assert type(out) is Linear and out.name == "fc"
    np.testing.assert_array_equal(out.w, [2.0, 2.0])
    np.testing.assert_array_equal(out.b, [1.0])


def test_registered_flatten_may_return_a_generator():
    class Gen:
        def __init__(self, items):
            self.items = items

    register_pytree_node(Gen, lambda g: ((x for x in g.items), None), lambda _, ch: Gen(ch))
    leaves, treedef = tree_flatten(Gen([1, 2, 3]))
    assert leaves == [1, 2, 3]
    assert list(tree_unflatten(treedef, [4, 5, 6]).items) == [4, 5, 6]


def test_registered_namedtuple_uses_its_registration():
    Triple = collections.namedtuple("Triple", ["a", "b", "c"])
    register_pytree_node(
        Triple, lambda t: ((t.a,), (t.b, t.c)), lambda aux, ch: Triple(ch[0], *aux)
    )
    leaves, treedef = tree_flatten(Triple(1, 2, 3))
    assert leaves == [1]
    assert tree_unflatten(treedef, [9]) == Triple(9, 2, 3)


def test_duplicate_registration_raises():
    class Thing:
        pass

    register_pytree_node(Thing, lambda t: ((), None), lambda aux, ch: Thing())
    with pytest.raises(ValueError, match="already registered"):
        register_pytree_node(Thing, lambda t: ((), None), lambda aux, ch: Thing())
    with pytest.raises(ValueError, match="already registered"):
        register_pytree_node(dict, lambda t: ((), None), lambda aux, ch: {})


def test_register_non_class_raises():
    with pytest.raises(TypeError, match="expected a class"):
        register_pytree_node(Box(1, 2), lambda t: ((), None), lambda aux, ch: None)


# --------------------------------------------------------------------------------------
# PyTreeDef: equality, hashing, repr, counts, immutability


def test_treedef_equality_and_hash():
    a = tree_structure((1, {"a": [2, 3], "b": None}))
    b = tree_structure(("x", {"b": None, "a": [np.ones(2), OBJ]}))
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    cache = {a: "compiled"}
    assert cache[b] == "compiled"


@pytest.mark.parametrize(
    "other",
    [
        [1, {"a": [2, 3], "b": None}],  # list instead of tuple
        (1, {"a": (2, 3), "b": None}),  # inner tuple instead of list
        (1, {"a": [2, 3], "c": None}),  # different key
        (1, {"a": [2, 3], "b": 4}),  # leaf instead of None
        (1, {"a": [2, 3, 4], "b": None}),  # more leaves
        (1, {"a": [2, 3]}),  # fewer keys
        (1, {"a": [2, 3], "b": None}, None),  # extra child
        Point(1, {"a": [2, 3], "b": None}),  # namedtuple instead of tuple
    ],
)
def test_treedef_inequality(other):
    base = tree_structure((1, {"a": [2, 3], "b": None}))
    assert base != tree_structure(other)
    assert not (base == tree_structure(other))


def test_treedef_compares_unequal_to_other_types():
    assert tree_structure(1) != "*"
    assert tree_structure(()) != ()


def test_unhashable_aux_data():
    treedef = tree_structure([Box(1, ["unhashable"])])
    assert treedef == tree_structure([Box(2, ["unhashable"])])  # equality still works
    with pytest.raises(TypeError, match=r"aux data of a Box node, \['unhashable'\], is unhashable"):
        hash(treedef)


@pytest.mark.parametrize(
    "tree, text",
    [
        (1, "PyTreeDef(*)"),
        (None, "PyTreeDef(None)"),
        ((1, {"a": 2, "b": None}), "PyTreeDef((*, {'a': *, 'b': None}))"),
        ((1,), "PyTreeDef((*,))"),
        ((), "PyTreeDef(())"),
        ([], "PyTreeDef([])"),
        ({}, "PyTreeDef({})"),
        ([1, [2, 3]], "PyTreeDef([*, [*, *]])"),
        ({1: 1, 2: None}, "PyTreeDef({1: *, 2: None})"),
        (Point(1, 2), "PyTreeDef(Point(x=*, y=*))"),
        (Point((1, 2), None), "PyTreeDef(Point(x=(*, *), y=None))"),
        (Box([1, 2], "m"), "PyTreeDef(CustomNode(Box['m'], [[*, *]]))"),
    ],
)
def test_treedef_repr(tree, text):
    assert repr(tree_structure(tree)) == text
    assert str(tree_structure(tree)) == text


def test_treedef_counts_and_children():
    treedef = tree_structure((1, [2, None], {"k": 3}))
    assert treedef.num_leaves == 3
    # tuple, 1, list, 2, None, dict, 3
    assert treedef.num_nodes == 7
    kids = treedef.children()
    assert [repr(k) for k in kids] == [
        "PyTreeDef(*)",
        "PyTreeDef([*, None])",
        "PyTreeDef({'k': *})",
    ]
    assert treedef.node_type is tuple
    assert tree_structure({"a": 1, "b": 2}).node_data == ("a", "b")
    assert tree_structure(5).node_type is None


def test_treedef_is_immutable():
    treedef = tree_structure([1, 2])
    with pytest.raises(AttributeError):
        treedef.num_leaves = 5
    with pytest.raises(AttributeError):
        treedef.extra = 1
    assert treedef.num_leaves == 2


def test_treedef_pickle_and_copy():
    treedef = tree_structure({"p": Point(1, [2]), "b": Box(3, "m"), "n": None})
    for clone in (pickle.loads(pickle.dumps(treedef)), copy.copy(treedef), copy.deepcopy(treedef)):
        assert clone == treedef
        assert hash(clone) == hash(treedef)
        assert repr(clone) == repr(treedef)
        assert tree_unflatten(clone, [1, 2, 3])["p"] == Point(2, [3])


# --------------------------------------------------------------------------------------
# Errors


def test_unflatten_wrong_number_of_leaves():
    treedef = tree_structure((1, [2]))
    with pytest.raises(ValueError, match=r"expects 2 leaves, got 3"):
        tree_unflatten(treedef, [1, 2, 3])
    with pytest.raises(ValueError, match=r"PyTreeDef\(\(\*, \[\*\]\)\) expects 2 leaves, got 1"):
        tree_unflatten(treedef, [1])


def test_tree_map_structure_mismatch_message():
    with pytest.raises(ValueError) as info:
        tree_map(lambda a, b: a + b, (1, 2), (1, [2]))
    assert str(info.value) == (
        "tree_map: the tree at position 1 has structure PyTreeDef((*, [*])) "
        "but the first tree has PyTreeDef((*, *))"
    )


def test_tree_map_mismatch_names_the_right_position():
    with pytest.raises(ValueError, match=r"position 2 has structure PyTreeDef\(\{'b': \*\}\)"):
        tree_map(lambda *xs: 0, {"a": 1}, {"a": 2}, {"b": 3})


def test_tree_map_requires_exact_match_not_prefix():
    with pytest.raises(ValueError, match="position 1"):
        tree_map(lambda a, b: a, [1, 2], [1, (2, 3)])
    with pytest.raises(ValueError, match="position 1"):
        tree_map(lambda a, b: a, [1, 2], [1, None])


# --------------------------------------------------------------------------------------
# tree_map and friends


def test_tree_map_several_trees():
    out = tree_map(
        lambda a, b, c: a + b * c, {"x": 1, "y": [2]}, {"x": 10, "y": [20]}, {"y": [3], "x": 2}
    )
    assert out == {"x": 21, "y": [62]}


def test_tree_map_with_arrays():
    params = {"w": np.ones((2, 2)), "b": np.zeros(2)}
    grads = {"w": np.full((2, 2), 0.5), "b": np.ones(2)}
    new = tree_map(lambda p, g: p - 0.1 * g, params, grads)
    np.testing.assert_allclose(new["w"], np.full((2, 2), 0.95))
    np.testing.assert_allclose(new["b"], np.full(2, -0.1))


def test_tree_map_is_leaf():
    tree = [(1, 2), (3, 4)]
    out = tree_map(lambda t: sum(t), tree, is_leaf=lambda x: isinstance(x, tuple))
    assert out == [3, 7]


def test_tree_map_calls_f_in_leaf_order():
    seen = []
    tree_map(seen.append, {"b": [1, 2], "a": 0, "c": Point(3, 4)})
    assert seen == [0, 1, 2, 3, 4]


def test_tree_all_and_friends():
    assert tree_all([True, {"a": 1}, None])
    assert not tree_all([True, {"a": 0}])
    assert tree_all([])
    assert treedef_is_leaf(tree_structure(1))
    assert not treedef_is_leaf(tree_structure(None))
    assert not treedef_is_leaf(tree_structure([1]))
    assert all_leaves([1, np.ones(2), OBJ])
    assert not all_leaves([1, (2,)])
    assert not all_leaves([None])
    assert all_leaves([None], is_leaf=lambda x: x is None)


def test_flatten_up_to_and_broadcast_prefix():
    args = ({"w": np.ones(2), "b": np.ones(1)}, [np.ones(3), np.ones(3)], None)
    treedef = tree_structure((0, 0, None))
    subtrees = treedef.flatten_up_to(args)
    assert len(subtrees) == 2
    assert subtrees[0] is args[0] and subtrees[1] is args[1]
    # vmap-style in_axes: None means "this whole argument is not batched".
    none_leaf = lambda x: x is None
    assert broadcast_prefix((0, [1, None], None), args, is_leaf=none_leaf) == [0, 0, 1, None]
    assert broadcast_prefix(0, args) == [0, 0, 0, 0]
    assert broadcast_prefix(({"w": 1, "b": 0}, 2, None), args, is_leaf=none_leaf) == [0, 1, 2, 2]


def test_flatten_up_to_mismatch():
    with pytest.raises(ValueError) as info:
        tree_structure((0, [0, 0])).flatten_up_to((1, (2, 3)))
    message = str(info.value)
    assert "PyTreeDef((*, (*, *)))" in message and "PyTreeDef((*, [*, *]))" in message
    assert "where the prefix has [*, *] the tree has (*, *)" in message
    with pytest.raises(ValueError):
        broadcast_prefix([0, 0, 0], [1, 2])
    with pytest.raises(ValueError):
        broadcast_prefix({"a": 0}, {"b": 1})


# --------------------------------------------------------------------------------------
# Property tests on random nested trees

leaf_values = st.one_of(
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.builds(np.arange, st.integers(0, 4)),
    st.builds(Opaque),
)


def containers(children):
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=3), children, max_size=4),
        st.builds(Point, children, children),
        st.builds(Box, children, st.integers(-3, 3)),
        st.builds(Linear, children, children, st.sampled_from(["fc", "out"])),
    )


trees = st.recursive(st.one_of(leaf_values, st.none()), containers, max_leaves=25)


@given(trees)
def test_random_round_trip(tree):
    leaves, treedef = tree_flatten(tree)
    assert treedef.num_leaves == len(leaves)
    assert_same_tree(tree_unflatten(treedef, leaves), tree)
    assert tree_structure(tree_unflatten(treedef, leaves)) == treedef


@given(trees)
def test_random_tree_map_identity_preserves_structure(tree):
    out = tree_map(lambda x: x, tree)
    assert_same_tree(out, tree)
    assert tree_structure(out) == tree_structure(tree)
    assert hash(tree_structure(out)) == hash(tree_structure(tree))


@given(trees)
def test_random_tree_map_applies_f_to_every_leaf(tree):
    wrapped = tree_map(Wrapped, tree)
    leaves = tree_leaves(tree)
    new_leaves = tree_leaves(wrapped)
    assert len(new_leaves) == len(leaves)
    assert all(type(w) is Wrapped and w.x is x for w, x in zip(new_leaves, leaves))
    assert tree_structure(wrapped) == tree_structure(tree)


@given(trees)
def test_random_relabel_leaves(tree):
    leaves, treedef = tree_flatten(tree)
    relabelled = tree_unflatten(treedef, range(len(leaves)))
    leaves2, treedef2 = tree_flatten(relabelled)
    assert leaves2 == list(range(len(leaves)))
    assert treedef2 == treedef
    assert hash(treedef2) == hash(treedef)


@given(trees, trees)
def test_random_treedef_equality_matches_structure(a, b):
    da, db = tree_structure(a), tree_structure(b)
    same = repr(da) == repr(db)  # the repr spells out every node and key
    assert (da == db) == same
    if same:
        assert hash(da) == hash(db)
        tree_map(lambda x, y: None, a, b)
    else:
        with pytest.raises(ValueError, match="tree_map"):
            tree_map(lambda x, y: None, a, b)


@given(trees)
def test_random_deepcopy_has_equal_structure(tree):
    treedef = tree_structure(tree)
    copied = tree_structure(copy.deepcopy(tree))
    assert copied == treedef
    assert hash(copied) == hash(treedef)
    assert repr(copied) == repr(treedef)
