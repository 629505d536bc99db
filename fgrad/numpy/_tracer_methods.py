"""What operators and array methods mean on a `Tracer`: the fgrad.numpy functions.

Also the NumPy protocols: `np.sin(tracer)` (`__array_ufunc__`) and `np.sum(tracer)`
(`__array_function__`) dispatch to fgrad.numpy, or fail naming what to use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import Tracer
from ..errors import TracerArrayConversionError


def _swap(fn):
    return lambda self, other: fn(other, self)


def _reshape_method(self, *shape, order="C"):
    from . import reshape

    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    return reshape(self, shape, order)


def _transpose_method(self, *axes):
    from . import transpose

    if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
        axes = axes[0]
    return transpose(self, axes or None)


def _setitem(self, index, value):
    raise TypeError(
        "fgrad arrays are immutable under transforms: `x[i] = v` would change a value that "
        "other computations may depend on. Build a new array instead: x = x.at[i].set(v) "
        "(also .add, .multiply), or fgrad.numpy.where."
    )


def _no_ufunc_method(ufunc, method):
    raise TypeError(
        f"np.{ufunc.__name__}.{method} is not supported on traced values; use the fgrad.numpy "
        "reductions (fgrad.numpy.sum, prod, max, ...)"
    )


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    from .. import numpy as fnp

    if method != "__call__":
        _no_ufunc_method(ufunc, method)
    if kwargs.get("out") is not None:
        raise TypeError(f"np.{ufunc.__name__}(..., out=...) cannot write into a traced value; "
                        "drop `out` and use the result")
    fn = getattr(fnp, ufunc.__name__, None)
    if fn is None:
        raise TypeError(f"np.{ufunc.__name__} is not supported on traced values: fgrad.numpy "
                        f"has no {ufunc.__name__}")
    extra = {k: v for k, v in kwargs.items() if k != "out"}
    if extra:
        raise TypeError(f"np.{ufunc.__name__}: keyword arguments {sorted(extra)} are not "
                        f"supported on traced values; call fgrad.numpy.{ufunc.__name__}")
    return fn(*inputs)


def _array_function(self, func, types, args, kwargs):
    from .. import numpy as fnp

    # np.X -> fgrad.numpy.X and np.linalg.X -> fgrad.numpy.linalg.X; nothing else matches.
    sub = func.__module__.removeprefix("numpy").lstrip(".")
    name = f"{sub}.{func.__name__}" if sub else func.__name__
    module = {"": fnp, "linalg": fnp.linalg}.get(sub)
    fn = getattr(module, func.__name__, None) if module is not None else None
    if fn is None:
        raise TracerArrayConversionError(
            f"np.{name} was called on a traced value, and fgrad.numpy has no {name}. "
            "Rewrite it with fgrad.numpy functions."
        )
    return fn(*args, **kwargs)


def attach() -> None:
    from .. import numpy as fnp

    methods: dict[str, Any] = {
        "__add__": fnp.add, "__radd__": _swap(fnp.add),
        "__sub__": fnp.subtract, "__rsub__": _swap(fnp.subtract),
        "__mul__": fnp.multiply, "__rmul__": _swap(fnp.multiply),
        "__truediv__": fnp.divide, "__rtruediv__": _swap(fnp.divide),
        "__floordiv__": fnp.floor_divide, "__rfloordiv__": _swap(fnp.floor_divide),
        "__mod__": fnp.remainder, "__rmod__": _swap(fnp.remainder),
        "__divmod__": fnp.divmod, "__rdivmod__": _swap(fnp.divmod),
        "__pow__": fnp.power, "__rpow__": _swap(fnp.power),
        "__matmul__": fnp.matmul, "__rmatmul__": _swap(fnp.matmul),
        "__neg__": fnp.negative, "__pos__": fnp.positive, "__abs__": fnp.absolute,
        "__lt__": fnp.less, "__le__": fnp.less_equal,
        "__gt__": fnp.greater, "__ge__": fnp.greater_equal,
        "__eq__": fnp.equal, "__ne__": fnp.not_equal,
        "__and__": fnp.bitwise_and, "__rand__": _swap(fnp.bitwise_and),
        "__or__": fnp.bitwise_or, "__ror__": _swap(fnp.bitwise_or),
        "__xor__": fnp.bitwise_xor, "__rxor__": _swap(fnp.bitwise_xor),
        "__invert__": fnp.invert,
        "__getitem__": fnp._indexing.getitem,
        "__setitem__": _setitem,
        "__array_ufunc__": _array_ufunc,
        "__array_function__": _array_function,
        "reshape": _reshape_method,
        "transpose": _transpose_method,
        "sum": fnp.sum, "mean": fnp.mean, "prod": fnp.prod, "max": fnp.max, "min": fnp.min,
        "var": fnp.var, "std": fnp.std, "argmax": fnp.argmax, "argmin": fnp.argmin,
        "all": fnp.all, "any": fnp.any, "clip": fnp.clip, "round": fnp.round,
        "dot": fnp.dot, "squeeze": fnp.squeeze, "ravel": fnp.ravel, "flatten": fnp.ravel,
        "swapaxes": fnp.swapaxes, "copy": fnp.copy,
        "at": property(lambda self: fnp.at(self)),
        "take": fnp.take, "repeat": fnp.repeat, "cumsum": fnp.cumsum, "cumprod": fnp.cumprod,
        "sort": fnp.sort, "argsort": fnp.argsort,  # .sort() returns the sorted array (JAX)
        "diagonal": fnp.diagonal, "trace": fnp.trace, "nonzero": fnp.nonzero,
        "astype": lambda self, dtype: fnp.asarray(self, dtype),
        "T": property(lambda self: fnp.transpose(self)),
        "mT": property(lambda self: fnp.swapaxes(self, -1, -2)),
    }
    for name, fn in methods.items():
        setattr(Tracer, name, fn)
