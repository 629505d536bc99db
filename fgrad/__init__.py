"""fgrad: composable function transforms (grad, jvp, vjp, vmap, jit) over NumPy arrays."""

from . import lax, tree_util  # noqa: F401
from .api import (  # noqa: F401
    grad, hessian, jacfwd, jacrev, jvp, linearize, make_jaxpr, value_and_grad, vjp,
)
from .lax import stop_gradient  # noqa: F401

__version__ = "0.1.0"
