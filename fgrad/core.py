"""Primitives, interpreters and tracers: how a call to a primitive finds its meaning.

Dispatch is by context ("stackless"): one context variable names the current
interpreter. `prim.bind(*args)` hands the call to it. An interpreter
that needs to run ordinary computation on the values it wraps (a JVP rule
computing `cos(x)`) does so with its *parent* made current. A value that belongs
to no interpreter, or to an ancestor, is lifted in as a constant; a tracer whose
interpreter has finished has escaped, and using it is an error.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import dtypes
from .errors import (
    MissingRuleError,
    TracerArrayConversionError,
    UnexpectedTracerError,
    concretization_error,
)
from .ir import ClosedJaxpr, Jaxpr, Literal, ShapedArray, Var

# ----------------------------------------------------------------------------- primitives


class Primitive:
    """A named operation and the rules that give it meaning under each interpreter.

    Rules (each set beside the primitive's definition in `fgrad.lax`):
      impl(*arrays, **params)                    evaluate on NumPy arrays
      abstract_eval(*avals, **params)            shape and dtype of the result
      jvp(primals, tangents, **params)           forward-mode derivative
      transpose(cts, *args, **params)            for primitives linear in some inputs
      batch(args, dims, axis_size, **params)     vmap
      partial_eval(interp, args, unknown, **ps)  split known/unknown work (control flow)
      dce(eqn, used_outputs)                     drop unused outputs (control flow)
      lowering                                   Numba code generation (a later issue)
    """

    def __init__(self, name: str, multiple_results: bool = False):
        self.name = name
        self.multiple_results = multiple_results
        self.impl: Callable | None = None
        self.abstract_eval_rule: Callable | None = None
        self.jvp: Callable | None = None
        self.transpose: Callable | None = None
        self.batch: Callable | None = None
        self.partial_eval: Callable | None = None
        self.dce: Callable | None = None
        self.lowering: Callable | None = None

    def __repr__(self) -> str:
        return self.name

    def bind(self, *args: Any, **params: Any) -> Any:
        return current_interpreter().process_primitive(self, args, params)

    def abstract_eval(self, *avals: ShapedArray, **params: Any):
        if self.abstract_eval_rule is None:
            raise MissingRuleError(f"primitive '{self.name}' has no abstract evaluation rule")
        return self.abstract_eval_rule(*avals, **params)

    def missing(self, transform: str) -> MissingRuleError:
        return MissingRuleError(f"primitive '{self.name}' has no {transform} rule")


# ----------------------------------------------------------------------------- values


def get_aval(x: Any) -> ShapedArray:
    """The abstract value of a concrete value or a tracer."""
    if isinstance(x, Tracer):
        return x.aval
    if isinstance(x, (np.ndarray, np.generic)):
        return ShapedArray(x.shape, x.dtype)
    dtype = dtypes.python_scalar_dtype(x)
    if dtype is not None:
        return ShapedArray((), dtype, weak_type=dtype.kind != "b")
    raise TypeError(
        f"a value of type {type(x).__name__} is not an array: fgrad functions take NumPy "
        "arrays, Python scalars and (through fgrad.numpy.asarray) nested lists of numbers"
    )


def is_concrete(x: Any) -> bool:
    return not isinstance(x, Tracer)


# ----------------------------------------------------------------------------- interpreters


class Interpreter:
    """Gives primitives their meaning. Each has a parent, the one that was current
    when it was created; the root (`EvalInterpreter`) has none."""

    transform = "evaluation"

    def __init__(self, parent: Interpreter | None):
        self.parent = parent
        self.active = True

    def process_primitive(self, prim: Primitive, args: Sequence[Any], params: dict) -> Any:
        raise NotImplementedError

    def owns(self, x: Any) -> bool:
        return isinstance(x, Tracer) and x._interp is self

    def check_foreign(self, tracer: Tracer) -> None:
        """A foreign tracer is fine if it belongs to an ancestor; otherwise it escaped."""
        owner = tracer._interp
        interp = self.parent
        while interp is not None:
            if interp is owner:
                return
            interp = interp.parent
        raise UnexpectedTracerError(
            f"a traced value {tracer.aval} created inside `{owner.transform}` was used "
            f"{'after that transform finished' if not owner.active else 'outside it'}.\n"
            "A traced value escaped its transform, for example by being stored in a global, "
            "a list or an object attribute. Return values out of the transformed function "
            "instead of storing them."
        )


class EvalInterpreter(Interpreter):
    """The root: evaluate each primitive on concrete NumPy values."""

    def __init__(self):
        super().__init__(None)

    def process_primitive(self, prim, args, params):
        for x in args:
            if isinstance(x, Tracer):
                self.check_foreign(x)
        if prim.impl is None:
            raise prim.missing("evaluation (impl)")
        # The shape and dtype rule runs eagerly too, so that eager and traced code accept
        # and reject the same calls.
        prim.abstract_eval(*[get_aval(x) for x in args], **params)
        return prim.impl(*args, **params)


_ROOT = EvalInterpreter()
_current: contextvars.ContextVar[Interpreter] = contextvars.ContextVar(
    "fgrad_interpreter", default=_ROOT
)


def current_interpreter() -> Interpreter:
    return _current.get()


@contextlib.contextmanager
def using(interp: Interpreter) -> Iterator[Interpreter]:
    """Make `interp` current for the duration of the block."""
    token = _current.set(interp)
    try:
        yield interp
    finally:
        _current.reset(token)


@contextlib.contextmanager
def new_interpreter(cls: type, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Create an interpreter whose parent is the current one; retire it on exit."""
    interp = cls(current_interpreter(), *args, **kwargs)
    try:
        yield interp
    finally:
        interp.active = False


# ----------------------------------------------------------------------------- tracers


class Tracer:
    """A stand-in for an array while an interpreter records or transforms a function.

    Operators and array methods (`+`, `@`, `x[i]`, `.sum()`, ...) are attached by
    `fgrad.numpy`, which defines what they mean.
    """

    __slots__ = ("_interp",)
    __array_priority__ = 1000
    __hash__ = None  # type: ignore[assignment]  # like arrays: mutable-looking, unhashable

    @property
    def aval(self) -> ShapedArray:
        raise NotImplementedError

    def to_concrete(self) -> Any:
        """The concrete value behind this tracer if it has one (under jvp/grad), else None."""
        return None

    shape = property(lambda self: self.aval.shape)
    dtype = property(lambda self: self.aval.dtype)
    ndim = property(lambda self: self.aval.ndim)
    size = property(lambda self: self.aval.size)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d traced value")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d traced value")
        return (self[i] for i in range(self.shape[0]))

    def _concrete(self, operation: str) -> np.ndarray:
        value = self.to_concrete()
        if value is None:
            raise concretization_error(operation, self.aval, self._interp.transform)
        return np.asarray(value)

    def __bool__(self) -> bool:
        return bool(self._concrete("bool() (an `if`, `while`, `and`/`or` or `assert`)"))

    def __float__(self) -> float:
        return float(self._concrete("float()"))

    def __int__(self) -> int:
        return int(self._concrete("int()"))

    def __complex__(self) -> complex:
        return complex(self._concrete("complex()"))

    def __index__(self) -> int:
        value = self._concrete("use as an index (__index__)")
        if value.dtype.kind not in "iub":
            raise TypeError(f"only integer values can be used as an index, got {self.aval}")
        return int(value)

    def item(self) -> Any:
        return self._concrete(".item()").item()

    def tolist(self) -> Any:
        return self._concrete(".tolist()").tolist()

    def __array__(self, dtype=None, copy=None):
        raise TracerArrayConversionError(
            f"a traced value {self.aval} inside `{self._interp.transform}` was converted to a "
            "NumPy array (np.asarray / np.array or a NumPy function without fgrad support).\n"
            "That would silently drop it from the transform. Use the fgrad.numpy function "
            "of the same name instead (import fgrad.numpy as fnp). To index a NumPy array "
            "with a traced index, write fgrad.numpy.take(x, i) or fgrad.numpy.at(x)[i].get()."
        )

    def __repr__(self) -> str:
        value = self.to_concrete()
        shown = "" if value is None else f" = {np.array2string(np.asarray(value), precision=6)}"
        return f"Traced<{self.aval.str_short()}>{shown} (inside {self._interp.transform})"


# ----------------------------------------------------------------------------- evaluation


def eval_jaxpr(jaxpr: Jaxpr, consts: Sequence[Any], *args: Any) -> list[Any]:
    """Run a jaxpr by binding each equation's primitive under the current interpreter."""
    env: dict[Var, Any] = {}

    def read(atom):
        return atom.val if isinstance(atom, Literal) else env[atom]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        outs = eqn.primitive.bind(*[read(a) for a in eqn.invars], **eqn.params)
        if not eqn.primitive.multiple_results:
            outs = [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(a) for a in jaxpr.outvars]


def eval_closed_jaxpr(closed: ClosedJaxpr, *args: Any) -> list[Any]:
    return eval_jaxpr(closed.jaxpr, closed.consts, *args)
