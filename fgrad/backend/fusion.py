"""Fusion: partition a jaxpr's equations into loop-nest groups and opaque operations.

A **group** is one loop nest over its *domain* (an array shape). It holds

* elementwise equations whose result has the domain's shape (arithmetic, math,
  comparisons, `select_n`, `convert_element_type`, `integer_pow`, ...);
* indexed loads: `broadcast_in_dim`, `transpose`, `slice` and `rev` of a value the
  group does not compute itself (an array in memory, so any element can be read),
  and `iota`, which reads nothing;
* at most one reduction (`reduce_sum/max/min/prod` over any axes of the domain),
  which ends the group: nothing in the group may use its result.

Groups are grown greedily in program order (tinygrad's rule): an equation joins the
group(s) that computed its operands when the domains agree and the merged group stays
*convex* (no path leaves the group and comes back, so it can run as one unit).
A value computed in a group is written to memory (materialised) only if something
outside the group reads it: another group, an opaque operation, or the program's
outputs. Everything else (`dot_general`, `reshape`, `pad`, `concatenate`, control
flow, ...) is an opaque node of its own.

`fuse(jaxpr)` returns the nodes in an order that respects their dependences.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ..ir import Eqn, Jaxpr, Var

ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "rem", "neg", "max", "min", "pow", "integer_pow", "atan2",
    "exp", "log", "log1p", "expm1", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
    "cosh", "tanh", "sqrt", "rsqrt", "logistic", "abs", "sign", "floor", "ceil", "round",
    "is_finite", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "xor", "not",
    "select_n", "convert_element_type", "stop_gradient",
})
LOADS = frozenset({"broadcast_in_dim", "transpose", "slice", "rev"})
SOURCES = frozenset({"iota"})
REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_prod"})
FUSIBLE = ELEMENTWISE | LOADS | SOURCES | REDUCTIONS

MAX_GROUP_EQNS = 96  # bounds the size of one loop body (Numba compile time)


@dataclass
class Group:
    """One loop nest: `eqns` in program order over `domain`. `reductions` all reduce
    the same axes and nothing in the group reads their results. `inputs` are read
    from outside (arrays, scalars); `outputs` are written to memory (or, for a 0-d
    domain, to scalar variables)."""

    eqns: list[Eqn]
    domain: tuple[int, ...]
    reductions: list[Eqn] = field(default_factory=list)
    inputs: list[Var] = field(default_factory=list)
    outputs: list[Var] = field(default_factory=list)

    def describe(self) -> str:
        prims = " ".join(e.primitive.name for e in self.eqns)
        dims = ",".join(map(str, self.domain))
        return f"group[{dims}]: {prims}"


Node = Group | Eqn


def domain_of(eqn: Eqn) -> tuple[int, ...] | None:
    """The loop domain a fusible equation iterates over, or None if it is opaque."""
    name = eqn.primitive.name
    if name not in FUSIBLE:
        return None
    if name in REDUCTIONS:
        return eqn.invars[0].aval.shape
    return eqn.outvars[0].aval.shape


class _Partition:
    """Union-find over equation indices, with each root's members and ancestry.

    `anc[r]` is a bitmask of node ids the group (or opaque node) `r` depends on,
    transitively; `alias[r]` is the mask of all ids merged into root `r`, so that an
    ancestry recorded before a merge still names the merged group.
    """

    def __init__(self, n: int):
        self.parent = list(range(n))
        self.members: dict[int, list[int]] = {}
        self.anc: dict[int, int] = {}
        self.alias: dict[int, int] = {}
        self.producers: dict[int, set[int]] = {}  # direct producer roots (may be stale)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def add(self, i: int, producers: set[int]) -> None:
        self.members[i] = [i]
        self.alias[i] = 1 << i
        self.producers[i] = set(producers)
        self.anc[i] = self.ancestry(producers)

    def ancestry(self, producers: set[int]) -> int:
        mask = 0
        for p in producers:
            mask |= self.anc[p] | self.alias[p]
        return mask

    def external_producers(self, roots: list[int], extra: set[int]) -> set[int]:
        found = {self.find(p) for r in roots for p in self.producers[r]}
        found |= {self.find(p) for p in extra}
        return found - set(roots)

    def convex(self, roots: list[int], producers: set[int]) -> bool:
        """Would merging `roots` with a new node fed by `producers` stay convex?"""
        inside = 0
        for r in roots:
            inside |= self.alias[r]
        for p in self.external_producers(roots, producers):
            if self.anc[p] & inside:  # a path leaves the group and comes back
                return False
        return True

    def merge(self, roots: list[int], i: int | None = None,
              producers: frozenset[int] = frozenset()) -> int:
        """Merge the groups `roots` (and the new node `i`, fed by `producers`) into one
        group; returns its root."""
        root = roots[0]
        ext = self.external_producers(roots, set(producers))
        for r in roots[1:]:
            self.parent[r] = root
            self.members[root] += self.members.pop(r)
            self.alias[root] |= self.alias.pop(r)
            self.anc.pop(r)
            self.producers.pop(r)
        if i is not None:
            self.parent[i] = root
            self.members[root].append(i)
            self.alias[root] |= 1 << i
        self.producers[root] = ext
        self.anc[root] = self.ancestry(ext)
        # Whatever depended on a merged part now depends on the whole group, and so on
        # everything the group depends on: keep the ancestry of descendants exact.
        inside, group_anc = self.alias[root], self.anc[root]
        for x, mask in self.anc.items():
            if mask & inside and x != root:
                self.anc[x] = mask | group_anc
        return root


@dataclass
class _GroupInfo:
    domain: tuple[int, ...]
    size: int
    reduced_axes: tuple[int, ...] | None = None  # None: no reduction (yet)


def fuse(jaxpr: Jaxpr) -> list[Node]:
    """Partition `jaxpr`'s equations into groups and opaque equations, in a valid order."""
    part = _Partition(len(jaxpr.eqns))
    info: dict[int, _GroupInfo] = {}
    _fuse_vertically(jaxpr, part, info)
    _fuse_siblings(part, info)
    return _ordered_nodes(jaxpr, part, info)


def _fuse_vertically(jaxpr: Jaxpr, part: _Partition, info: dict[int, _GroupInfo]) -> None:
    """Producer-consumer fusion, in program order."""
    producer: dict[Var, int] = {v: i for i, e in enumerate(jaxpr.eqns) for v in e.outvars}
    for i, eqn in enumerate(jaxpr.eqns):
        in_roots = [part.find(producer[a]) for a in eqn.invars
                    if isinstance(a, Var) and a in producer]
        producers = frozenset(in_roots)
        domain = domain_of(eqn)
        if domain is None:  # opaque
            part.add(i, set(producers))
            continue
        candidates = []
        if eqn.primitive.name not in LOADS:  # a load reads memory: never its producer's group
            candidates = [r for r in dict.fromkeys(in_roots)
                          if r in info and info[r].domain == domain
                          and info[r].reduced_axes is None]
        chosen: list[int] = []
        total = 1
        for r in candidates:
            if total + info[r].size <= MAX_GROUP_EQNS and part.convex(chosen + [r], producers):
                chosen.append(r)
                total += info[r].size
        if chosen:
            for r in chosen:
                del info[r]
            root = part.merge(chosen, i, producers)
        else:
            part.add(i, set(producers))
            root = i
        axes = tuple(eqn.params["axes"]) if eqn.primitive.name in REDUCTIONS else None
        info[root] = _GroupInfo(domain, total, axes)


def _fuse_siblings(part: _Partition, info: dict[int, _GroupInfo]) -> None:
    """Horizontal fusion: independent groups over the same domain share one loop nest
    (their reductions, if both reduce, must reduce the same axes)."""
    open_groups: list[int] = []
    for r in _topological(part):
        if r not in info:
            continue
        g = info[r]
        for h in open_groups:
            other = info[h]
            compatible = (other.domain == g.domain
                          and other.size + g.size <= MAX_GROUP_EQNS
                          and (g.reduced_axes is None or other.reduced_axes is None
                               or g.reduced_axes == other.reduced_axes))
            independent = (not part.anc[r] & part.alias[h]
                           and not part.anc[h] & part.alias[r])
            if compatible and independent:
                root = part.merge([h, r])
                assert root == h
                other.size += g.size
                other.reduced_axes = other.reduced_axes or g.reduced_axes
                del info[r]
                break
        else:
            open_groups.append(r)


def _topological(part: _Partition) -> list[int]:
    """The roots in an order respecting dependences (Kahn's algorithm, program order
    preferred)."""
    roots = sorted(part.members)
    deps = {r: {part.find(p) for p in part.producers[r]} - {r} for r in roots}
    users: dict[int, set[int]] = {r: set() for r in roots}
    for r, ds in deps.items():
        for d in ds:
            users[d].add(r)
    waiting = {r: len(ds) for r, ds in deps.items()}
    ready = [(min(part.members[r]), r) for r in roots if waiting[r] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, r = heapq.heappop(ready)
        order.append(r)
        for u in users[r]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (min(part.members[u]), u))
    assert len(order) == len(roots), "fusion produced a cycle"
    return order


def _ordered_nodes(jaxpr: Jaxpr, part: _Partition, info: dict[int, _GroupInfo]) -> list[Node]:
    eqns = jaxpr.eqns
    order = _topological(part)
    # Which values leave their group: read by another node or by the program.
    owner = {v: part.find(i) for i, e in enumerate(eqns) for v in e.outvars}
    read_outside: set[Var] = {a for a in jaxpr.outvars if isinstance(a, Var)}
    for i, e in enumerate(eqns):
        r = part.find(i)
        for a in e.invars:
            if isinstance(a, Var) and owner.get(a, -1) != r:
                read_outside.add(a)

    nodes: list[Node] = []
    for r in order:
        members = sorted(part.members[r])
        if r not in info:
            nodes.append(eqns[members[0]])
            continue
        group_eqns = [eqns[m] for m in members]
        defined = {v for e in group_eqns for v in e.outvars}
        inputs = list(dict.fromkeys(a for e in group_eqns for a in e.invars
                                    if isinstance(a, Var) and a not in defined))
        outputs = [v for e in group_eqns for v in e.outvars if v in read_outside]
        reductions = [e for e in group_eqns if e.primitive.name in REDUCTIONS]
        nodes.append(Group(group_eqns, info[r].domain, reductions, inputs, outputs))
    return nodes


def count_groups(nodes: list[Node]) -> int:
    return sum(isinstance(n, Group) for n in nodes)
