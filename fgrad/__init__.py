"""fgrad: composable function transforms (grad, jvp, vjp, vmap, jit) over NumPy arrays."""

from . import (  # noqa: F401
    lax,
    nn,
    numpy,  # noqa: F401,E402  (attaches array methods to tracers)
    optim,
    tree_util,
)
from .api import (  # noqa: F401
    grad,
    hessian,
    jacfwd,
    jacrev,
    jvp,
    linearize,
    make_jaxpr,
    value_and_grad,
    vjp,
    vmap,
)
from .checkpoint import checkpoint, remat  # noqa: F401
from .custom_derivatives import custom_jvp, custom_vjp  # noqa: F401
from .jit import disable_jit, jit  # noqa: F401
from .lax import stop_gradient  # noqa: F401

__version__ = "0.1.0"
