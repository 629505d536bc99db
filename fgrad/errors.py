"""Exceptions fgrad raises, and a helper that points at the user's line of code.

Every message follows one anatomy: what happened, which traced value, where it
came from in the user's code, and how to fix it.
"""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_frame_summary() -> str:
    """`file:line: source` of the innermost stack frame outside fgrad itself."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_PACKAGE_DIR) and "importlib" not in filename:
            import linecache

            line = linecache.getline(filename, frame.f_lineno).strip()
            where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
            return f"{where}: {line}" if line else where
        frame = frame.f_back
    return "<unknown location>"


class FgradError(Exception):
    """Base class for fgrad's own errors."""


class ConcretizationError(FgradError, TypeError):
    """A Python operation needed a concrete value, but the value was abstract (traced)."""


class TracerArrayConversionError(FgradError, TypeError):
    """A traced value was passed where a NumPy array was required (`np.asarray(tracer)`)."""


class UnexpectedTracerError(FgradError):
    """A traced value escaped the transform that created it and was used afterwards."""


class MissingRuleError(FgradError, NotImplementedError):
    """A primitive lacks the rule that a transform needs."""


def concretization_error(operation: str, aval: object, transform: str) -> ConcretizationError:
    return ConcretizationError(
        f"{operation} needs a concrete value, but got the abstract traced value {aval} "
        f"inside {transform}.\n"
        f"  at {user_frame_summary()}\n"
        "Under jit, make_jaxpr and vmap, values are abstract: only shapes and dtypes are "
        "known while tracing. To fix it, use fgrad.numpy.where or lax.cond for a "
        "value-dependent branch, lax.while_loop / lax.fori_loop for a value-dependent "
        "loop, or mark the argument static (jit(f, static_argnums=...))."
    )
