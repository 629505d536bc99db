"""Fusion: partition a jaxpr's equations into loop-nest groups and opaque operations.

A **group** is one loop nest over its *domain* (an array shape). It holds

* elementwise equations whose result has the domain's shape (arithmetic, math,
  comparisons, `select_n`, `convert_element_type`, `integer_pow`, ...);
* indexed loads: `broadcast_in_dim`, `transpose`, `slice` and `rev` of a value the
  group does not compute itself (an array in memory, so any element can be read),
  and `iota`, which reads nothing;
* reductions (`reduce_sum/max/min/prod` over any axes of the domain), which end the
  group: nothing in the group may use their results.

Groups grow in two passes:

1. *Vertically*, in program order (tinygrad's rule): an equation joins the group(s)
   that computed its operands when the domains agree, the group has no reduction yet,
   and the merged group stays *convex* (no path leaves it and comes back, so it can
   run as one unit). Ancestry is tracked as bitmasks over equations.
2. *Horizontally*: independent groups over the same domain share one loop nest, when
   their reductions (if both reduce) reduce the same axes and neither loses a
   collapsed loop (see `LoopPlan`).

A value computed in a group is written to memory (materialised) only if something
outside the group reads it: another group, an opaque operation, or the program's
outputs. Everything else (`dot_general`, `reshape`, `pad`, `concatenate`, control
flow, ...) is an opaque node of its own.

`fuse(jaxpr)` returns the nodes in an order that respects their dependences. The
loop plans (how a group's domain is iterated over flat buffers) live here too, since
horizontal fusion consults them.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
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
SIBLING_CANDIDATES = 8  # how many earlier groups a group may try to join horizontally


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


def size_of(shape: Sequence[int]) -> int:
    return math.prod(shape)  # a `sizes.Dim` if the shape has one


def strides_of(shape: Sequence[int]) -> list[int]:
    """C-order strides, in elements."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return strides[::-1]


# ================================================================ loop plans (iteration spaces)


@dataclass(frozen=True)
class Term:
    """One axis of an accessed array: its index is `start + step * i[axis]` (or just
    `start` when `axis` is None), and it advances the linear index by `stride`."""

    axis: int | None
    start: int
    step: int
    stride: int


Access = list[Term]


def identity_access(shape: Sequence[int]) -> Access:
    return [Term(d, 0, 1, s) for d, s in enumerate(strides_of(shape))]


def load_access(eqn: Eqn) -> Access:
    """Where a load op (broadcast_in_dim, transpose, slice, rev) reads its operand."""
    name, p = eqn.primitive.name, eqn.params
    src = eqn.invars[0].aval.shape
    strides = strides_of(src)
    if name == "broadcast_in_dim":
        return [Term(None, 0, 0, s) if src[k] == 1 else Term(d, 0, 1, s)
                for k, (d, s) in enumerate(zip(p["broadcast_dimensions"], strides))]
    if name == "transpose":
        terms = [Term(None, 0, 0, 0)] * len(src)
        for j, axis in enumerate(p["permutation"]):
            terms[axis] = Term(j, 0, 1, strides[axis])
        return terms
    if name == "slice":
        return [Term(k, start, step, s) for k, (start, step, s)
                in enumerate(zip(p["start_indices"], p["strides"], strides))]
    if name == "rev":
        return [Term(k, src[k] - 1, -1, s) if k in p["dimensions"] else Term(k, 0, 1, s)
                for k, s in enumerate(strides)]
    raise AssertionError(name)


class LoopPlan:
    """The loops of a group's domain: unit axes dropped, adjacent axes merged into one
    loop whenever every access reads them as one contiguous run (the coefficient of
    the outer axis is the inner one's times the inner extent)."""

    def __init__(self, domain: Sequence[int], accesses: Sequence[Access], collapse: bool = True):
        self.domain = tuple(domain)
        coefs = [self._coefficients(a) for a in accesses]
        self.loops: list[list[int]] = []  # domain axes of each loop, outer to inner
        for d in (d for d in range(len(domain)) if domain[d] != 1):
            if collapse and self.loops:
                inner = self.loops[-1][-1]
                if all(c.get(inner, 0) == c.get(d, 0) * domain[d] for c in coefs):
                    self.loops[-1].append(d)
                    continue
            self.loops.append([d])
        self.extents = [size_of([domain[d] for d in axes]) for axes in self.loops]
        self.vars = [f"j{n}" for n in range(len(self.loops))]

    @staticmethod
    def _coefficients(access: Access) -> dict[int, int]:
        return {t.axis: t.step * t.stride for t in access if t.axis is not None}

    def index(self, access: Access) -> str:
        """The linear index of `access` in terms of the loop variables."""
        coefs = self._coefficients(access)
        const = sum(t.start * t.stride for t in access)
        terms = []
        for var, axes in zip(self.vars, self.loops):
            c = coefs.get(axes[-1], 0)
            if c:
                terms.append(var if c == 1 else f"{c} * {var}")
        if const or not terms:
            terms.append(str(const))
        return " + ".join(terms).replace("+ -", "- ")

    def loop_of(self, axis: int) -> int | None:
        for n, axes in enumerate(self.loops):
            if axis in axes:
                return n
        return None


def reduce_access(domain: Sequence[int], axes: Sequence[int]) -> Access:
    """Where a reduction over `axes` of `domain` writes its result."""
    kept = [d for d in range(len(domain)) if d not in axes]
    strides = strides_of([domain[d] for d in kept])
    return [Term(d, 0, 1, s) for d, s in zip(kept, strides)]


def eqn_accesses(eqn: Eqn) -> list[Access]:
    """The array accesses one fused equation adds to its group's loop nest (besides the
    direct, same-shape reads and stores every group makes)."""
    name = eqn.primitive.name
    if name in LOADS and eqn.invars[0].aval.shape:
        return [load_access(eqn)]
    if name == "iota":
        return [[Term(eqn.params["dimension"], 0, 1, 1)]]
    if name in REDUCTIONS:
        return [reduce_access(eqn.invars[0].aval.shape, eqn.params["axes"])]
    return []


def group_accesses(g: Group) -> list[Access]:
    """Every array access a group makes, for planning its loops."""
    return [identity_access(g.domain), *(a for e in g.eqns for a in eqn_accesses(e))]


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
    accesses: list[Access] = field(default_factory=list)

    def loops(self, extra: Sequence[Access] = ()) -> list[list[int]]:
        return LoopPlan(self.domain, [identity_access(self.domain), *self.accesses,
                                      *extra]).loops


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
        accesses = eqn_accesses(eqn)
        for r in candidates:
            if total + info[r].size <= MAX_GROUP_EQNS and part.convex(chosen + [r], producers):
                chosen.append(r)
                total += info[r].size
                accesses += info[r].accesses
        if chosen:
            for r in chosen:
                del info[r]
            root = part.merge(chosen, i, producers)
        else:
            part.add(i, set(producers))
            root = i
        axes = tuple(eqn.params["axes"]) if eqn.primitive.name in REDUCTIONS else None
        info[root] = _GroupInfo(domain, total, axes, accesses)


def _fuse_siblings(part: _Partition, info: dict[int, _GroupInfo]) -> None:
    """Horizontal fusion: independent groups over the same domain share one loop nest
    if their reductions (when both reduce) reduce the same axes and neither loses a
    collapsed loop (a broadcast read can keep a loop nest from flattening)."""
    open_groups: dict[tuple[int, ...], list[int]] = {}
    for r in _topological(part):
        if r not in info:
            continue
        g = info[r]
        same_domain = open_groups.setdefault(g.domain, [])
        for h in same_domain[-SIBLING_CANDIDATES:]:
            other = info[h]
            compatible = (other.size + g.size <= MAX_GROUP_EQNS
                          and (g.reduced_axes is None or other.reduced_axes is None
                               or g.reduced_axes == other.reduced_axes)
                          and other.loops() == g.loops() == other.loops(g.accesses))
            independent = (not part.anc[r] & part.alias[h]
                           and not part.anc[h] & part.alias[r])
            if compatible and independent:
                part.merge([h, r])
                other.size += g.size
                other.reduced_axes = other.reduced_axes or g.reduced_axes
                other.accesses += g.accesses
                del info[r]
                break
        else:
            same_domain.append(r)


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
