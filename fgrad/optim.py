"""fgrad.optim: optax-style gradient transformations.

An optimizer is a `GradientTransformation`, a pair of pure functions::

    opt = optim.adam(1e-3)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = optim.apply_updates(params, updates)

`init(params)` builds the state, a pytree of arrays (NamedTuples, with the step count
as an int32 array), so `update` can run inside `jit` and in the carry of
`lax.fori_loop` / `lax.scan`. The numbers follow optax's definitions and defaults:
`sgd` is `chain(trace(momentum, nesterov), scale_by_learning_rate(lr))`, `adam` is
`chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr))` and `adamw` adds
`add_decayed_weights(weight_decay)` between the two. The learning rate may be a
number or a schedule, `lr(count) -> number`, with `count` the number of updates made
so far (0 at the first). State leaves keep the dtype of the params they were made
from (float32 params give float32 moments), and so do the updates of float32 grads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import numpy as fnp
from .core import Tracer
from .tree_util import tree_flatten, tree_map, tree_structure

__all__ = [
    "GradientTransformation", "EmptyState", "TraceState", "ScaleByAdamState",
    "ScaleByScheduleState", "chain", "identity", "scale", "scale_by_schedule",
    "scale_by_learning_rate", "trace", "scale_by_adam", "add_decayed_weights",
    "sgd", "adam", "adamw", "apply_updates",
]

Params = Any  # a pytree of arrays
Updates = Any  # a pytree of arrays with the params' structure
OptState = Any  # a pytree of arrays
Schedule = Callable[[Any], Any]
ScalarOrSchedule = float | Schedule

_INT32_MAX = np.iinfo(np.int32).max


class GradientTransformation(NamedTuple):
    """`init(params) -> state` and `update(grads, state, params=None) -> (updates, state)`."""

    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


class TraceState(NamedTuple):
    """The momentum of `trace`."""

    trace: Params


class ScaleByAdamState(NamedTuple):
    """`count` (int32, updates made so far) and the first and second moments."""

    count: Any
    mu: Updates
    nu: Updates


class ScaleByScheduleState(NamedTuple):
    """The number of updates made so far (int32), the argument of the schedule."""

    count: Any


# ============================================================================ helpers


def _check_like(fname: str, grads: Any, reference: Any, what: str) -> None:
    """`grads` must have the tree structure and leaf shapes of `reference`."""
    g_leaves, g_tree = tree_flatten(grads)
    r_leaves, r_tree = tree_flatten(reference)
    if g_tree != r_tree:
        raise ValueError(f"{fname}: the gradients have tree structure {g_tree}, but {what} "
                         f"have tree structure {r_tree}; they must match")
    for i, (g, r) in enumerate(zip(g_leaves, r_leaves)):
        if fnp.shape(g) != fnp.shape(r):
            raise ValueError(f"{fname}: leaf {i} of the gradients has shape {fnp.shape(g)}, "
                             f"but the same leaf of {what} has shape {fnp.shape(r)} (tree "
                             f"structure {r_tree})")


def _cast(x: Any, like: Any) -> Any:
    """`x` in the dtype of `like` (so state and updates keep their types across steps)."""
    dtype = fnp.asarray(like).dtype
    x = fnp.asarray(x)
    return x if x.dtype == dtype else x.astype(dtype)


def _zeros_like(x: Any) -> Any:
    return fnp.zeros_like(fnp.asarray(x))


def _safe_increment(count: Any) -> Any:
    """`count + 1`, saturating at the largest int32 (as optax's safe_increment)."""
    return fnp.where(count < _INT32_MAX, count + 1, count)


def _check_hyper(fname: str, **values: Any) -> None:
    """Hyperparameters are numbers (or 0-d arrays, possibly traced: e.g. a learning rate
    passed as an argument of a jitted function)."""
    for name, v in values.items():
        if isinstance(v, (Tracer, np.ndarray)):
            ok = v.shape == () and v.dtype.kind in "iuf"
        else:
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        if not ok:
            raise TypeError(f"{fname}: {name} must be a number, got {type(v).__name__}"
                            + (f" of shape {v.shape}" if hasattr(v, "shape") else ""))


# ============================================================================ building blocks


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply `transforms` one after another; the state is the tuple of their states."""

    def init_fn(params: Params) -> tuple:
        return tuple(t.init(params) for t in transforms)

    def update_fn(updates: Updates, state: tuple, params: Params = None
                  ) -> tuple[Updates, tuple]:
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(f"chain: the state must be a tuple of {len(transforms)} states "
                             "(as init returned it)")
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init_fn, update_fn)


def identity() -> GradientTransformation:
    """Leave the updates as they are."""
    return GradientTransformation(lambda params: EmptyState(),
                                  lambda updates, state, params=None: (updates, state))


def scale(step_size: float) -> GradientTransformation:
    """Multiply the updates by `step_size`."""

    def update_fn(updates: Updates, state: EmptyState, params: Params = None
                  ) -> tuple[Updates, EmptyState]:
        return tree_map(lambda g: _cast(step_size * g, g), updates), state

    return GradientTransformation(lambda params: EmptyState(), update_fn)


def scale_by_schedule(step_size_fn: Schedule) -> GradientTransformation:
    """Multiply the updates by `step_size_fn(count)`, `count` the updates made so far."""

    def init_fn(params: Params) -> ScaleByScheduleState:
        return ScaleByScheduleState(count=np.zeros((), np.int32))

    def update_fn(updates: Updates, state: ScaleByScheduleState, params: Params = None
                  ) -> tuple[Updates, ScaleByScheduleState]:
        step_size = step_size_fn(state.count)
        updates = tree_map(lambda g: _cast(step_size * g, g), updates)
        return updates, ScaleByScheduleState(count=_safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(lr: ScalarOrSchedule, flip_sign: bool = True
                           ) -> GradientTransformation:
    """Multiply by `-lr` (or `lr` with `flip_sign=False`); `lr` a number or a schedule."""
    sign = -1.0 if flip_sign else 1.0
    if callable(lr):
        return scale_by_schedule(lambda count: sign * lr(count))
    _check_hyper("scale_by_learning_rate", lr=lr)
    return scale(sign * lr)


def _trace(decay: float, nesterov: bool, fname: str) -> GradientTransformation:
    def init_fn(params: Params) -> TraceState:
        return TraceState(trace=tree_map(_zeros_like, params))

    def update_fn(updates: Updates, state: TraceState, params: Params = None
                  ) -> tuple[Updates, TraceState]:
        _check_like(fname, updates, state.trace, "the momentum in the state (from init)")
        new_trace = tree_map(lambda g, t: _cast(g + decay * t, t), updates, state.trace)
        if nesterov:
            updates = tree_map(lambda g, t: _cast(g + decay * t, g), updates, new_trace)
        else:
            updates = tree_map(_cast, new_trace, updates)
        return updates, TraceState(trace=new_trace)

    return GradientTransformation(init_fn, update_fn)


def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum: `t = g + decay * t`, updates `t` (or `g + decay * t` with nesterov)."""
    _check_hyper("trace", decay=decay)
    return _trace(decay, nesterov, "trace")


def _scale_by_adam(b1: float, b2: float, eps: float, eps_root: float, fname: str
                   ) -> GradientTransformation:
    def init_fn(params: Params) -> ScaleByAdamState:
        return ScaleByAdamState(count=np.zeros((), np.int32),
                                mu=tree_map(_zeros_like, params),
                                nu=tree_map(_zeros_like, params))

    def update_fn(updates: Updates, state: ScaleByAdamState, params: Params = None
                  ) -> tuple[Updates, ScaleByAdamState]:
        _check_like(fname, updates, state.mu, "the moments in the state (from init)")
        mu = tree_map(lambda g, m: _cast((1 - b1) * g + b1 * m, m), updates, state.mu)
        nu = tree_map(lambda g, v: _cast((1 - b2) * (g * g) + b2 * v, v), updates, state.nu)
        count = _safe_increment(state.count)
        c1 = 1 - b1 ** count  # bias corrections, with the count starting at 1
        c2 = 1 - b2 ** count

        def step(g, m, v):
            m_hat = m / _cast(c1, m)
            v_hat = v / _cast(c2, v)
            return _cast(m_hat / (fnp.sqrt(v_hat + eps_root) + eps), g)

        updates = tree_map(step, updates, mu, nu)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  eps_root: float = 0.0) -> GradientTransformation:
    """Adam's rescaling: `m_hat / (sqrt(v_hat + eps_root) + eps)` with bias-corrected
    moments `m_hat = m / (1 - b1**count)`, `v_hat = v / (1 - b2**count)`, count from 1."""
    _check_hyper("scale_by_adam", b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return _scale_by_adam(b1, b2, eps, eps_root, "scale_by_adam")


def _add_decayed_weights(weight_decay: float, mask: Any, fname: str
                         ) -> GradientTransformation:
    def update_fn(updates: Updates, state: EmptyState, params: Params = None
                  ) -> tuple[Updates, EmptyState]:
        if params is None:
            raise ValueError(f"{fname}: weight decay needs the params: call "
                             "update(grads, state, params)")
        _check_like(fname, updates, params, "the params")
        if mask is None:
            return tree_map(lambda g, p: _cast(g + weight_decay * p, g), updates, params), state
        m = mask(params) if callable(mask) else mask
        m_leaves, m_tree = tree_flatten(m)
        if m_tree != tree_structure(params) or not all(isinstance(b, (bool, np.bool_))
                                                       for b in m_leaves):
            raise ValueError(f"{fname}: mask must be a pytree of bools with the params' tree "
                             f"structure {tree_structure(params)}, got {m_tree}")
        decayed = tree_map(lambda g, p, keep: _cast(g + weight_decay * p, g) if keep else g,
                           updates, params, m)
        return decayed, state

    return GradientTransformation(lambda params: EmptyState(), update_fn)


def add_decayed_weights(weight_decay: float = 0.0, mask: Any = None) -> GradientTransformation:
    """Add `weight_decay * params` to the updates (where `mask`, a pytree of bools like the
    params or a function of the params returning one, is True)."""
    _check_hyper("add_decayed_weights", weight_decay=weight_decay)
    return _add_decayed_weights(weight_decay, mask, "add_decayed_weights")


# ============================================================================ optimizers


def _named(fname: str, inner: GradientTransformation) -> GradientTransformation:
    """`inner`, checking the gradients against the params when they are given."""

    def update_fn(grads: Updates, state: OptState, params: Params = None
                  ) -> tuple[Updates, OptState]:
        if params is not None:
            _check_like(fname, grads, params, "the params")
        return inner.update(grads, state, params)

    return GradientTransformation(inner.init, update_fn)


def sgd(lr: ScalarOrSchedule, momentum: float | None = 0.0, nesterov: bool = False
        ) -> GradientTransformation:
    """Stochastic gradient descent: updates `-lr * g`; with momentum (optax's `trace`)
    `t = g + momentum * t` and updates `-lr * t`, or `-lr * (g + momentum * t)` with
    `nesterov`. With `momentum` 0 or None there is no momentum state."""
    if momentum is not None:
        _check_hyper("sgd", momentum=momentum)
    no_momentum = momentum is None or (isinstance(momentum, (int, float)) and momentum == 0)
    first = identity() if no_momentum else _trace(momentum, nesterov, "sgd")
    return _named("sgd", chain(first, scale_by_learning_rate(lr)))


def adam(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         *, eps_root: float = 0.0) -> GradientTransformation:
    """Adam: updates `-lr * m_hat / (sqrt(v_hat + eps_root) + eps)`, as optax.adam."""
    _check_hyper("adam", b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return _named("adam", chain(_scale_by_adam(b1, b2, eps, eps_root, "adam"),
                                scale_by_learning_rate(lr)))


def adamw(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-4, *, eps_root: float = 0.0, mask: Any = None
          ) -> GradientTransformation:
    """Adam with decoupled weight decay: updates
    `-lr * (m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * params)`, as
    optax.adamw (`update` needs the params). `mask` limits the decay (e.g. to weights)."""
    _check_hyper("adamw", b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, eps_root=eps_root)
    return _named("adamw", chain(_scale_by_adam(b1, b2, eps, eps_root, "adamw"),
                                 _add_decayed_weights(weight_decay, mask, "adamw"),
                                 scale_by_learning_rate(lr)))


def apply_updates(params: Params, updates: Updates) -> Params:
    """`params + updates`, leaf by leaf, each result in its param's dtype."""
    p_tree, u_tree = tree_structure(params), tree_structure(updates)
    if p_tree != u_tree:
        raise ValueError(f"apply_updates: the updates have tree structure {u_tree}, but the "
                         f"params have tree structure {p_tree}; they must match")
    return tree_map(lambda p, u: _cast(fnp.asarray(p) + u, p), params, updates)
