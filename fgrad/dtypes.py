"""dtype rules: NumPy's, with Python scalars weakly typed.

float64 is the default float. A Python scalar (or a traced value that came from
one) is *weak*: it takes the dtype of the array it meets, so `x32 * 2.0` stays
float32, exactly as NumPy 2 does (NEP 50).
"""

from __future__ import annotations

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

# Exemplar Python scalars, one per kind, for asking NumPy what a weak value promotes to.
_WEAK_EXEMPLAR = {"b": False, "i": 0, "u": 0, "f": 0.0, "c": 0j}

_PYTHON_SCALAR_DTYPE = {
    bool: bool_,
    int: int64,
    float: float64,
    complex: np.dtype(np.complex128),
}


def python_scalar_dtype(x: object) -> np.dtype | None:
    """The dtype a Python scalar becomes, or None if `x` is not a Python scalar."""
    return _PYTHON_SCALAR_DTYPE.get(type(x))


def is_float(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def is_differentiable(dtype: np.dtype) -> bool:
    """Only real floating dtypes carry derivatives."""
    return np.dtype(dtype).kind == "f"


def is_integer(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind in "iu"


def result_type(*typed: tuple[np.dtype, bool]) -> tuple[np.dtype, bool]:
    """Promote `(dtype, weak)` pairs with NumPy's rules; weak only if all inputs are weak."""
    exemplars = [_WEAK_EXEMPLAR[np.dtype(d).kind] if weak else d for d, weak in typed]
    all_weak = all(weak for _, weak in typed)
    if all_weak:
        # Two weak scalars: NumPy gives the default dtype of the widest kind.
        widest = max((np.dtype(d).kind for d, _ in typed), key="biufc".index)
        python_type = {"b": bool, "i": int, "u": int, "f": float, "c": complex}[widest]
        return _PYTHON_SCALAR_DTYPE[python_type], True
    return np.result_type(*exemplars), False


def float_dtype_for(dtype: np.dtype) -> np.dtype:
    """The float dtype an operation like `sin` or `mean` computes in for inputs of `dtype`."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else float64
