"""Pytrees: nested containers of arrays, flattened to a list of leaves and a structure.

A *pytree* is a value built from containers (tuple, list, dict, namedtuple, None and
classes registered with :func:`register_pytree_node`) whose non-container parts are the
*leaves*.  Everything that is not a container is a leaf: arrays, scalars, strings and
objects of any unregistered class (including subclasses of list or dict).

``tree_flatten`` splits a pytree into its leaves (left to right, dict entries in sorted
key order) and a :class:`PyTreeDef` describing the containers; ``tree_unflatten`` puts
them back together.  Transforms use this to accept and return arbitrary pytrees while
working internally on flat lists of arrays.

``None`` is a container with no children, so it has no leaves: ``tree_leaves([1, None])``
is ``[1]``.  Pass ``is_leaf=lambda x: x is None`` to treat it as a leaf instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

__all__ = [
    "PyTreeDef",
    "all_leaves",
    "broadcast_prefix",
    "register_pytree_node",
    "register_pytree_node_class",
    "tree_all",
    "tree_flatten",
    "tree_leaves",
    "tree_map",
    "tree_structure",
    "tree_unflatten",
    "treedef_is_leaf",
]

IsLeaf = Callable[[Any], bool]


# --------------------------------------------------------------------------------------
# The registry: node type -> how to take it apart and put it back together.


class _NodeHandler(NamedTuple):
    flatten: Callable[[Any], tuple[Iterable[Any], Any]]  # x -> (children, aux_data)
    unflatten: Callable[[Any, Iterable[Any]], Any]  # (aux_data, children) -> x


def _flatten_dict(d: dict) -> tuple[list, tuple]:
    try:
        keys = sorted(d)
    except TypeError:
        raise TypeError(
            f"tree_flatten: dict keys must be sortable to flatten a dict as a pytree, "
            f"got keys {list(d)!r}"
        ) from None
    return [d[k] for k in keys], tuple(keys)


_registry: dict[type, _NodeHandler] = {
    tuple: _NodeHandler(lambda t: (t, None), lambda _, children: tuple(children)),
    list: _NodeHandler(lambda l: (l, None), lambda _, children: list(children)),
    dict: _NodeHandler(_flatten_dict, lambda keys, children: dict(zip(keys, children))),
    type(None): _NodeHandler(lambda _: ((), None), lambda _, children: None),
}


def _is_namedtuple_class(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def register_pytree_node(
    cls: type,
    flatten_fn: Callable[[Any], tuple[Iterable[Any], Any]],
    unflatten_fn: Callable[[Any, Iterable[Any]], Any],
) -> None:
    """Make instances of ``cls`` pytree nodes (JAX's signatures).

    ``flatten_fn(x)`` returns ``(children, aux_data)``; ``unflatten_fn(aux_data, children)``
    rebuilds the object.  ``aux_data`` is kept in the treedef and compared with ``==``; it
    should be hashable (a ``PyTreeDef`` holding unhashable aux data raises ``TypeError``
    when hashed, e.g. as a ``jit`` cache key).
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_pytree_node: expected a class, got {cls!r}")
    if cls in _registry:
        raise ValueError(
            f"register_pytree_node: {cls.__qualname__} is already registered as a pytree node"
        )
    _registry[cls] = _NodeHandler(flatten_fn, unflatten_fn)


def register_pytree_node_class(cls: type) -> type:
    """Class decorator: register ``cls`` using its ``tree_flatten`` method and its
    ``tree_unflatten(aux_data, children)`` classmethod (as in JAX)."""
    register_pytree_node(cls, lambda x: x.tree_flatten(), cls.tree_unflatten)
    return cls


def _children_and_aux(x: Any) -> tuple[type, Iterable[Any], Any] | None:
    """Take one level of ``x`` apart: ``(node_type, children, aux)``, or None for a leaf."""
    cls = type(x)
    handler = _registry.get(cls)
    if handler is not None:
        children, aux = handler.flatten(x)
        return cls, children, aux
    if isinstance(x, tuple) and hasattr(cls, "_fields"):  # a namedtuple
        return cls, x, None
    return None


def _make_node(node_type: type, aux: Any, children: list) -> Any:
    handler = _registry.get(node_type)
    if handler is not None:
        return handler.unflatten(aux, children)
    return node_type(*children)  # a namedtuple


# --------------------------------------------------------------------------------------
# PyTreeDef: the structure of a pytree, without its leaves.


class PyTreeDef:
    """The structure of a pytree: an immutable, hashable tree of nodes.

    Each node is a leaf (``node_type is None``) or a container given by its type, its aux
    data (dict keys, or what a registered class's flatten function returned) and its child
    treedefs.  Two treedefs are equal when their node types, aux data and children are.
    """

    __slots__ = ("_node_type", "_aux", "_children", "_num_leaves", "_num_nodes", "_hash")

    # Immutable by construction: every attribute is a private slot set only here, the
    # public ones are read-only properties, and __slots__ forbids new attributes.
    # (Overriding __setattr__ instead would make flattening twice as slow.)
    def __init__(self, node_type: type | None, aux: Any, children: tuple[PyTreeDef, ...]):
        self._node_type = node_type
        self._aux = aux
        self._children = children
        num_leaves, num_nodes = (1, 1) if node_type is None else (0, 1)
        for child in children:
            num_leaves += child._num_leaves
            num_nodes += child._num_nodes
        self._num_leaves = num_leaves
        self._num_nodes = num_nodes
        self._hash = None  # computed on first use

    def __reduce__(self):  # pickle and copy rebuild through __init__
        return PyTreeDef, (self._node_type, self._aux, self._children)

    @property
    def num_leaves(self) -> int:
        """Number of leaves in the tree."""
        return self._num_leaves

    @property
    def num_nodes(self) -> int:
        """Number of nodes in the tree, leaves and containers (including None) alike."""
        return self._num_nodes

    @property
    def node_type(self) -> type | None:
        """The container type at the root, or None if this treedef is a single leaf."""
        return self._node_type

    @property
    def node_data(self) -> Any:
        """The aux data of the root node (dict keys, registered aux data, else None)."""
        return self._aux

    def children(self) -> list[PyTreeDef]:
        """The treedefs of the root's children."""
        return list(self._children)

    def unflatten(self, leaves: Iterable[Any]) -> Any:
        """Build a pytree with this structure from ``leaves``."""
        leaves = list(leaves)
        if len(leaves) != self._num_leaves:
            raise ValueError(
                f"tree_unflatten: {self!r} expects {self._num_leaves} leaves, got {len(leaves)}"
            )
        return self._build(iter(leaves))

    def _build(self, leaves: Iterable[Any]) -> Any:
        if self._node_type is None:
            return next(leaves)
        return _make_node(self._node_type, self._aux, [c._build(leaves) for c in self._children])

    def flatten_up_to(self, tree: Any) -> list[Any]:
        """Flatten ``tree`` down to this structure: one subtree of ``tree`` per leaf here.

        ``tree`` must have this treedef's containers, but may have whole subtrees where
        this treedef has leaves.  Raises ``ValueError`` where the containers differ.
        """
        out: list[Any] = []
        mismatch = self._flatten_up_to(tree, out)
        if mismatch is not None:
            want, got = mismatch
            raise ValueError(
                f"flatten_up_to: the tree {tree_structure(tree)!r} does not have the prefix "
                f"{self!r}: where the prefix has {want} the tree has {got}"
            )
        return out

    def _flatten_up_to(self, x: Any, out: list) -> tuple[str, str] | None:
        """Append the subtrees of ``x``; on a mismatch return (expected, found) as text."""
        if self._node_type is None:
            out.append(x)
            return None
        node = _children_and_aux(x)
        if node is not None:
            node_type, children, aux = node
            children = list(children)
            if (
                node_type is self._node_type
                and len(children) == len(self._children)
                and aux == self._aux
            ):
                for child_def, child in zip(self._children, children):
                    mismatch = child_def._flatten_up_to(child, out)
                    if mismatch is not None:
                        return mismatch
                return None
        return _repr(self), _repr(tree_structure(x))

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, PyTreeDef):
            return NotImplemented
        if self._hash is not None and other._hash is not None and self._hash != other._hash:
            return False
        return (
            self._node_type is other._node_type
            and self._num_leaves == other._num_leaves
            and self._aux == other._aux
            and self._children == other._children
        )

    def __hash__(self) -> int:
        if self._hash is None:
            try:
                aux_hash = hash(self._aux)
            except TypeError:
                name = getattr(self._node_type, "__qualname__", self._node_type)
                raise TypeError(
                    f"PyTreeDef is unhashable: the aux data of a {name} node, "
                    f"{self._aux!r}, is unhashable; register_pytree_node flatten "
                    f"functions must return hashable aux data"
                ) from None
            self._hash = hash((self._node_type, aux_hash, self._children))
        return self._hash

    def __repr__(self) -> str:
        return f"PyTreeDef({_repr(self)})"


def _repr(td: PyTreeDef) -> str:
    """JAX-style text of a treedef: ``*`` for leaves, Python syntax for containers."""
    node_type, aux = td._node_type, td._aux
    kids = [_repr(c) for c in td._children]
    if node_type is None:
        return "*"
    if node_type is type(None):
        return "None"
    if node_type is tuple:
        return f"({kids[0]},)" if len(kids) == 1 else f"({', '.join(kids)})"
    if node_type is list:
        return f"[{', '.join(kids)}]"
    if node_type is dict:
        return "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(aux, kids)) + "}"
    if node_type not in _registry and _is_namedtuple_class(node_type):
        fields = ", ".join(f"{f}={v}" for f, v in zip(node_type._fields, kids))
        return f"{node_type.__name__}({fields})"
    return f"CustomNode({node_type.__name__}[{aux!r}], [{', '.join(kids)}])"


_LEAF = PyTreeDef(None, None, ())  # every leaf shares this one treedef


# --------------------------------------------------------------------------------------
# Flattening, unflattening and mapping.


def _flatten(x: Any, is_leaf: IsLeaf | None, leaves: list) -> PyTreeDef:
    if is_leaf is not None and is_leaf(x):
        leaves.append(x)
        return _LEAF
    # This is _children_and_aux, inlined because it runs on every node and leaf.
    cls = type(x)
    handler = _registry.get(cls)
    if handler is not None:
        children, aux = handler.flatten(x)
    elif isinstance(x, tuple) and hasattr(cls, "_fields"):  # a namedtuple
        children, aux = x, None
    else:
        leaves.append(x)
        return _LEAF
    return PyTreeDef(cls, aux, tuple([_flatten(c, is_leaf, leaves) for c in children]))


def tree_flatten(tree: Any, is_leaf: IsLeaf | None = None) -> tuple[list[Any], PyTreeDef]:
    """Split ``tree`` into its list of leaves and its structure.

    ``is_leaf(x)``, if given, is asked about every subtree; where it returns True the
    subtree is kept whole as a leaf.
    """
    leaves: list[Any] = []
    treedef = _flatten(tree, is_leaf, leaves)
    return leaves, treedef


def tree_unflatten(treedef: PyTreeDef, leaves: Iterable[Any]) -> Any:
    """Inverse of :func:`tree_flatten`: build a pytree of ``treedef``'s shape from ``leaves``."""
    return treedef.unflatten(leaves)


def tree_leaves(tree: Any, is_leaf: IsLeaf | None = None) -> list[Any]:
    """The leaves of ``tree``, in flattening order."""
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree: Any, is_leaf: IsLeaf | None = None) -> PyTreeDef:
    """The :class:`PyTreeDef` of ``tree``."""
    return tree_flatten(tree, is_leaf)[1]


def tree_map(f: Callable[..., Any], tree: Any, *rest: Any, is_leaf: IsLeaf | None = None) -> Any:
    """Apply ``f`` leafwise: ``f(leaf, *corresponding_leaves_of_rest)``.

    Every tree in ``rest`` must have exactly the structure of ``tree``.
    """
    leaves, treedef = tree_flatten(tree, is_leaf)
    if not rest:
        return treedef.unflatten([f(x) for x in leaves])
    all_leaves = [leaves]
    for position, other in enumerate(rest, start=1):
        other_leaves, other_def = tree_flatten(other, is_leaf)
        if other_def != treedef:
            raise ValueError(
                f"tree_map: the tree at position {position} has structure {other_def!r} "
                f"but the first tree has {treedef!r}"
            )
        all_leaves.append(other_leaves)
    return treedef.unflatten([f(*xs) for xs in zip(*all_leaves)])


def tree_all(tree: Any, is_leaf: IsLeaf | None = None) -> bool:
    """True if every leaf of ``tree`` is truthy."""
    return all(tree_leaves(tree, is_leaf))


def treedef_is_leaf(treedef: PyTreeDef) -> bool:
    """True if ``treedef`` is a single leaf (``*``).  Unlike JAX, ``None``'s treedef is not."""
    return treedef.node_type is None


def all_leaves(iterable: Iterable[Any], is_leaf: IsLeaf | None = None) -> bool:
    """True if every element of ``iterable`` is a leaf (not a container)."""
    if is_leaf is None:
        return all(_children_and_aux(x) is None for x in iterable)
    return all(is_leaf(x) or _children_and_aux(x) is None for x in iterable)


def broadcast_prefix(prefix_tree: Any, full_tree: Any, is_leaf: IsLeaf | None = None) -> list:
    """Repeat each leaf of ``prefix_tree`` once per leaf of the matching subtree of
    ``full_tree``; the result is a list as long as ``tree_leaves(full_tree)``.

    Used for arguments like ``vmap``'s ``in_axes`` (pass ``is_leaf=lambda x: x is None``
    so that a None there stands for a whole subtree).  ``ValueError`` if ``prefix_tree``
    is not a prefix of ``full_tree``.
    """
    prefix_leaves, prefix_def = tree_flatten(prefix_tree, is_leaf)
    subtrees = prefix_def.flatten_up_to(full_tree)
    result: list = []
    for leaf, subtree in zip(prefix_leaves, subtrees):
        result.extend([leaf] * tree_structure(subtree).num_leaves)
    return result
