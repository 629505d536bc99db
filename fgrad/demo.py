"""`python -m fgrad demo`: five PyTorch autograd tutorials, rewritten functionally.

Each step prints the PyTorch lines of a tutorial on the left and, on the right,
the fgrad code that replaces them followed by the values it gives. The fgrad
code shown is exactly the code that runs: every step's right-hand column is
executed (in one namespace per tutorial) and its printed output and result
expressions are shown, so every number on screen is computed by fgrad here
and now.

Seed 002's MLP is trained twice (a jitted step called from Python, and the whole loop as one
jitted `lax.fori_loop`) and timed, and its per-example gradients come from `vmap` (checked
against a loop); a section beyond the tutorials runs Newton's method with `fgrad.hessian`.
The demo ends by saying where jit's kernel cache is. `--plot FILE` saves the MLP's loss
curve (with matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import linecache
import os
import pprint
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

LEFT = 45  # width of the PyTorch column
RIGHT = 50  # width of the fgrad column
WIDTH = 2 + LEFT + 3 + RIGHT

_ASCII = str.maketrans({"│": "|", "─": "-", "┼": "+", "━": "=", "→": "->", "▸": ">",
                        "·": "-", "…": "...", "µ": "u", "±": "+-"})


# ============================================================================ the script


@dataclass
class Raises:
    """A result expression that is expected to raise; the demo shows the error's first line."""

    expr: str


@dataclass
class Step:
    """One step: PyTorch lines (left), fgrad code (right, executed), what to show of it."""

    title: str
    torch: str
    code: str
    show: Sequence[str | Raises] = ()
    note: str = ""


@dataclass
class Section:
    """One tutorial: a heading and its steps, run in a namespace of their own."""

    seed: str
    topic: str
    steps: list[Step] = field(default_factory=list)
    intro: str = ""


SEED_000 = Section(
    "000", "Autograd basics: grad, sums, non-scalar outputs, detach, control flow",
    intro="A function of x in, its gradient out: no requires_grad, no .grad, nothing to zero.",
    steps=[
        Step(
            "The gradient of y = 2 x.x",
            """
            x = torch.arange(4.0)
            x.requires_grad_(True)
            y = 2 * torch.dot(x, x)
            y.backward()
            x.grad
            x.grad == 4 * x
            """,
            """
            x = np.arange(4.0)
            g = fgrad.grad(lambda x: 2 * fnp.dot(x, x))(x)
            """,
            ["g", "g == 4 * x"],
        ),
        Step(
            "Another function: y = x.sum()",
            """
            x.grad.zero_()
            y = x.sum()
            print('y:', y)
            y.backward()
            print('x.grad:', x.grad)
            """,
            """
            # nothing to zero: gradients are return values
            y, g = fgrad.value_and_grad(lambda x: x.sum())(x)
            """,
            ["y", "g"],
        ),
        Step(
            "Non-scalar output: backward of y.sum(), or a VJP",
            """
            x.grad.zero_()
            y = x * x
            y.sum().backward()
            print('x.grad:', x.grad)
            """,
            """
            g = fgrad.grad(lambda x: (x * x).sum())(x)
            # the same, as a vector-Jacobian product:
            y, pullback = fgrad.vjp(lambda x: x * x, x)
            (g_vjp,) = pullback(np.ones_like(y))
            """,
            ["g", "y", "g_vjp"],
        ),
        Step(
            "Detaching: u = y.detach() is stop_gradient",
            """
            x.grad.zero_()
            y = x * x
            u = y.detach()
            z = u * x
            z.sum().backward()
            x.grad == u
            """,
            """
            u = x * x
            def z(x):
                return (fgrad.stop_gradient(x * x) * x).sum()
            g = fgrad.grad(z)(x)
            """,
            ["g", "g == u"],
        ),
        Step(
            "...while y itself still depends on x",
            """
            x.grad.zero_()
            y.sum().backward()
            x.grad == 2 * x
            """,
            """
            g = fgrad.grad(lambda x: (x * x).sum())(x)
            """,
            ["g", "g == 2 * x"],
        ),
        Step(
            "Python control flow: an ordinary function",
            """
            def f(a):
                b = a * 2
                while b.norm() < 1000:
                    b = b * 2
                if b.sum() > 0:
                    c = b
                else:
                    c = 100 * b
                return c
            """,
            """
            def f(a):
                b = a * 2
                while fnp.linalg.norm(b) < 1000:
                    b = b * 2
                if b.sum() > 0:
                    c = b
                else:
                    c = 100 * b
                return c
            """,
        ),
        Step(
            "...differentiated through its loop and branch",
            """
            a = torch.tensor(2.0)
            a.requires_grad_(True)
            d = f(a)
            print('d:', d)
            d.backward()
            print('a.grad:', a.grad)
            """,
            """
            d, a_grad = fgrad.value_and_grad(f)(2.0)
            """,
            ["d", "a_grad"],
        ),
        Step(
            "Beyond the tutorial: the else branch; float32",
            """
            # a < 0 takes `c = 100 * b`
            """,
            """
            d, a_grad = fgrad.value_and_grad(f)(-2.0)
            g32 = fgrad.grad(f)(np.float32(2.0))
            """,
            ["d", "a_grad", "g32", "g32.dtype"],
            note="grad(f) runs f on concrete values, so `while` and `if` just run; each call "
                 "differentiates the path that call took.",
        ),
    ],
)

SEED_001 = Section(
    "001", "backward() and its grad_tensor argument: vector-Jacobian products",
    steps=[
        Step(
            "The graph X2 = W1 X1, y = W2 X2, L = mean(Y - y)",
            """
            x1 = torch.tensor([2, 3, 4, 5],
                              dtype=torch.float,
                              requires_grad=True)
            w1 = torch.ones(4)
            w1.requires_grad = True
            w2 = torch.Tensor([1, 2, 3, 4])
            w2.requires_grad_(True)
            x2 = x1 * w1
            y = x2 * w2
            Y = torch.ones(2, 2, requires_grad=True)
            L = (Y - y).mean()
            L.backward()
            print(x1.grad)
            """,
            """
            x1 = np.array([2.0, 3.0, 4.0, 5.0])
            w1 = np.ones(4)
            w2 = np.array([1.0, 2.0, 3.0, 4.0])
            Y = np.ones(4)  # not ones((2, 2)): see the note
            def L(x1, w1, w2, Y):
                x2 = x1 * w1
                y = x2 * w2
                return (Y - y).mean()
            dL = fgrad.grad(L, argnums=(0, 1, 2, 3))
            dx1, dw1, dw2, dY = dL(x1, w1, w2, Y)
            """,
            ["L(x1, w1, w2, Y)", "dx1", "dw1", "dw2", "dY",
             Raises("L(x1, w1, w2, np.ones((2, 2)))")],
            note="The tutorial's Y = torch.ones(2, 2) cannot broadcast against the 4-vector y "
                 "(PyTorch raises too), so Y here is the N-vector of ones the text describes, "
                 "and L is the code's mean(Y - y), not the text's sum of squares.",
        ),
        Step(
            "z.backward(grad_tensor) is a VJP",
            """
            x = torch.tensor([0.0, 2.0, 8.0],
                             requires_grad=True)
            y = torch.tensor([5.0, 1.0, 7.0],
                             requires_grad=True)
            z = x * y
            z.backward(
                torch.FloatTensor([1.0, 1.0, 1.0]))
            x.grad, y.grad
            """,
            """
            x = np.array([0.0, 2.0, 8.0])
            y = np.array([5.0, 1.0, 7.0])
            z, pullback = fgrad.vjp(lambda x, y: x * y, x, y)
            dz_dx, dz_dy = pullback(np.ones(3))
            """,
            ["z", "dz_dx", "dz_dy"],
        ),
        Step(
            "grad_tensor v weights the outputs: v^T J",
            """
            z.backward(v)  # = sum(v * z).backward()
            x.grad.data.zero_()
            """,
            """
            v = np.array([1.0, 0.1, 0.01])
            vjp_x, vjp_y = pullback(v)  # nothing to zero
            J = fgrad.jacrev(lambda x: x * y)(x)
            """,
            ["vjp_x", "J", "v @ J"],
        ),
    ],
)

SEED_002 = Section(
    "002", "A small MLP: Linear(10, 20), relu, Linear(20, 1), MSE loss, SGD",
    intro="fgrad.nn makes the net a pair of pure functions, init and apply, with its "
          "parameters a list of dicts; fgrad.optim makes the optimizer a pair too: init builds "
          "its state, update turns gradients into updates.",
    steps=[
        Step(
            "The net, the loss and the optimizer",
            """
            class Net(nn.Module):
                def __init__(self):
                    super(Net, self).__init__()
                    self.fc1 = nn.Linear(10, 20)
                    self.fc2 = nn.Linear(20, 1)
                def forward(self, x):
                    x = self.fc1(x)
                    x = torch.relu(x)
                    x = self.fc2(x)
                    return x
            net = Net()
            criterion = nn.MSELoss()
            optimizer = optim.SGD(net.parameters(),
                                  lr=0.01)
            x = torch.randn(100, 10)
            y = torch.randn(100, 1)
            """,
            """
            init, net = nn.serial(nn.Dense(20), nn.Relu,
                                  nn.Dense(1))
            rng = np.random.default_rng(0)
            params = init(rng, (100, 10))
            def loss(p, x, y):  # criterion(net(x), y)
                return nn.mse_loss(net(p, x), y)
            opt = optim.sgd(0.01)
            x = rng.standard_normal((100, 10))
            y = rng.standard_normal((100, 1))
            """,
            ["tree_map(np.shape, params)", "loss(params, x, y)"],
            note="Dense initialises its weights as nn.Linear does (uniform in ±1/sqrt(fan_in)); "
                 "Relu has no parameters, hence the empty tuple.",
        ),
        Step(
            "1000 steps, each a call to a jitted step function",
            """
            for epoch in range(1000):
                y_pred = net(x)
                loss = criterion(y_pred, y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            """,
            """
            @fgrad.jit
            def step(p, s, x, y):
                l, g = fgrad.value_and_grad(loss)(p, x, y)
                updates, s = opt.update(g, s, p)
                return optim.apply_updates(p, updates), s, l
            p, s = params, opt.init(params)
            losses, ts = [], []
            for epoch in progress(range(1000)):
                t0 = time.perf_counter()
                p, s, l = step(p, s, x, y)
                ts.append(time.perf_counter() - t0)
                losses.append(l)
            for e in (1, 10, 100, 1000):
                l = losses[e - 1]
                print(f"epoch {e:4}: loss = {l:.4f}")
            print(f"call 1: {ts[0]:.2f} s")
            us = np.median(ts[1:]) * 1e6
            print(f"then {us:.0f} µs/step (median)")
            """,
            ["loss(p, x, y)"],
            note="Nothing to zero: value_and_grad returns fresh gradients, and opt.update "
                 "returns the updates and the optimizer's next state. Call 1 traces step and "
                 "compiles it (or loads it from the kernel cache, below; in a fresh process it "
                 "also imports Numba); the other 999 calls run the compiled code.",
        ),
        Step(
            "...or the whole loop in one jitted call: lax.fori_loop",
            """
            for epoch in range(1000):
                ...  # the same loop, but run as one
                     # compiled program: no Python
                     # between the steps
            """,
            """
            @fgrad.jit
            def train(p, s, x, y):
                def body(i, carry):
                    p, s, _ = step(*carry, x, y)
                    return p, s
                return lax.fori_loop(0, 1000, body, (p, s))
            t0 = time.perf_counter()
            p2, _ = train(params, opt.init(params), x, y)
            t1 = time.perf_counter()
            p2, _ = train(params, opt.init(params), x, y)
            t2 = time.perf_counter()
            print(f"call 1: {t1 - t0:.2f} s")
            us = (t2 - t1) / 1000 * 1e6
            print(f"then {us:.0f} µs/step (total/1000)")
            """,
            ["loss(p2, x, y)", "np.isclose(loss(p2, x, y), loss(p, x, y))",
             "tree_map(np.allclose, p2, p)"],
            note="Both ways give the same parameters, so the same final loss. The time a "
                 "step is, above, the median of the 999 calls after the first, and here the "
                 "second call's time divided by its 1000 steps.",
        ),
        Step(
            "Beyond the tutorial: per-example gradients",
            """
            grads = []
            for i in range(100):
                net.zero_grad()
                criterion(net(x[i]), y[i]).backward()
                grads.append([q.grad.clone()
                              for q in net.parameters()])
            """,
            """
            per_example = fgrad.vmap(fgrad.grad(loss),
                                     in_axes=(None, 0, 0))
            pg = per_example(p, x, y)
            looped = [fgrad.grad(loss)(p, x[i], y[i])
                      for i in range(100)]
            stack = tree_map(lambda *g: np.stack(g), *looped)
            batch_g = fgrad.grad(loss)(p, x, y)
            mean_g = tree_map(lambda g: g.mean(axis=0), pg)
            """,
            ["tree_map(np.shape, pg)", "tree_map(np.allclose, pg, stack)",
             "tree_map(np.allclose, mean_g, batch_g)"],
            note="in_axes=(None, 0, 0): the same params for every example, x and y split along "
                 "their first axis. One batched call gives the 100 gradients the loop computes "
                 "one by one; their mean is the gradient of the batch's mean loss.",
        ),
    ],
)

SEED_003 = Section(
    "003", "The autograd module: gradient descent on w**2 + 20, regression gradients",
    steps=[
        Step(
            "Gradient descent on loss = w**2 + 20",
            """
            w = torch.tensor(10.0, requires_grad=True,
                             dtype=torch.float)
            lr = 0.01
            for i in range(100):
                loss = w ** 2 + 20
                if w.grad is not None:
                    w.grad.zero_()
                loss.sum().backward()
                w.data -= lr * w.grad.data
                print(f'Iteration {i+1}: '
                      f'w = {w.item():.4f}, '
                      f'loss = {loss.item():.4f}')
            """,
            """
            step = fgrad.value_and_grad(lambda w: w**2 + 20)
            w, lr = 10.0, 0.01
            for i in range(100):
                loss, dw = step(w)
                w = w - lr * dw
                if i < 2 or i == 99:
                    print(f"Iteration {i+1}: w = {w:.4f},"
                          f" loss = {loss:.4f}")
                elif i == 2:
                    print("...")
            """,
            note="As in the tutorial, w is printed after its update and loss before it. "
                 "The tutorial's comment for iteration 2 reads loss = 116.0000, a slip: "
                 "that loss is 9.8**2 + 20.",
        ),
        Step(
            "Multiple linear regression: grads of w and b",
            """
            x = torch.ones(2, 5)
            y = torch.zeros(2, 3)
            w = torch.randn(5, 3, requires_grad=True)
            b = torch.randn(3, requires_grad=True)
            z = torch.matmul(x, w) + b
            criterion = torch.nn.MSELoss()
            loss = criterion(z, y)
            loss.backward()
            print(f'Gradient w.r.t w:\\n{w.grad}')
            print(f'Gradient w.r.t b:\\n{b.grad}')
            """,
            """
            rng = np.random.default_rng(0)
            x, y = np.ones((2, 5)), np.zeros((2, 3))
            w = rng.standard_normal((5, 3))
            b = rng.standard_normal(3)
            def mse(w, b):
                z = fnp.matmul(x, w) + b
                return fnp.mean((z - y) ** 2)
            dw, db = fgrad.grad(mse, argnums=(0, 1))(w, b)
            """,
            ["mse(w, b)", "dw", "db",
             "np.allclose(dw, x.T @ (x @ w + b - y) / 3)"],
            note="The check is MSE's gradient by hand, x^T 2(z - y) / 6. With x all ones, "
                 "every row of dw equals db.",
        ),
    ],
)

SEED_004 = Section(
    "004", "Variable and autograd: z = (2x) * x, and control flow again",
    steps=[
        Step(
            "z = y * x with y = x * 2, differentiated through sum",
            """
            x = Variable(torch.arange(1, 5)
                         .resize_(2, 2),
                         requires_grad=True)
            y = x * 2
            z = y * x
            print(z)
            torch.sum(z).backward()
            print(x.grad)
            """,
            """
            x = np.array([[1.0, 2.0], [3.0, 4.0]])
            def total(x):
                y = x * 2
                z = y * x
                return fnp.sum(z)
            g = fgrad.grad(total)(x)
            """,
            ["(x * 2) * x", "g"],
        ),
        Step(
            "Control flow on a random vector",
            """
            def f(a):
                b = a * 2
                while torch.norm(b.data) < 1000:
                    b = b * 2
                if torch.sum(b.data) > 0:
                    c = b
                else:
                    c = 100 * b
                return c
            x = Variable(torch.randn(3),
                         requires_grad=True)
            c = f(x)
            torch.sum(c).backward()
            print(x.grad == c/x)
            """,
            """
            def f(a):
                b = a * 2
                while fnp.linalg.norm(b) < 1000:
                    b = b * 2
                if fnp.sum(b) > 0:
                    c = b
                else:
                    c = 100 * b
                return c
            x = np.random.default_rng(1).standard_normal(3)
            c = f(x)
            g = fgrad.grad(lambda x: fnp.sum(f(x)))(x)
            """,
            ["x", "g", "g == c / x"],
            note="f(x) = k x for a k fixed by x's path through the loop, so the gradient is "
                 "k = c / x in every component.",
        ),
    ],
)

NEWTON = Section(
    "Newton", "Beyond the tutorials: a Hessian and Newton's method",
    intro="Transforms compose: hessian(f) is jacfwd(jacrev(f)), and a Newton step solves "
          "H(v) d = g(v) for d.",
    steps=[
        Step(
            "Newton's method on Rosenbrock's function",
            """
            from torch.func import grad, hessian
            def f(v):
                x, y = v[0], v[1]
                return (1 - x)**2 + 100 * (y - x**2)**2
            v = torch.tensor([-1.2, 1.0],
                             dtype=torch.float64)
            for i in range(6):
                g, H = grad(f)(v), hessian(f)(v)
                v = v - torch.linalg.solve(H, g)
            """,
            """
            def f(v):
                x, y = v[0], v[1]
                return (1 - x)**2 + 100 * (y - x**2)**2
            g, H = fgrad.grad(f), fgrad.hessian(f)
            v = np.array([-1.2, 1.0])
            print("step  f(v)     max |v - 1|")
            for i in range(1, 7):
                v = v - fnp.linalg.solve(H(v), g(v))
                e = np.abs(v - 1).max()
                print(f"{i:4}  {f(v):.1e}  {e:.1e}")
            """,
            ["v", "g(v)", "H(v)"],
            note="The minimum is at v = (1, 1), where f is 0. "
                 "Newton's method is not a descent method (step 2 goes uphill), but near the "
                 "minimum it converges quadratically: the error about squares at every step.",
        ),
        Step(
            "On a quadratic, one Newton step is exact",
            """
            A = torch.tensor([[3.0, 1.0], [1.0, 2.0]])
            b = torch.tensor([1.0, -1.0])
            q = lambda v: v @ A @ v / 2 - b @ v
            v = torch.zeros(2)
            v = v - torch.linalg.solve(hessian(q)(v),
                                       grad(q)(v))
            """,
            """
            A = np.array([[3.0, 1.0], [1.0, 2.0]])
            b = np.array([1.0, -1.0])
            q = lambda v: v @ A @ v / 2 - b @ v
            v = np.zeros(2)
            Hq = fgrad.hessian(q)(v)
            v = v - fnp.linalg.solve(Hq, fgrad.grad(q)(v))
            """,
            ["Hq", "np.allclose(Hq, A)", "v", "np.allclose(A @ v, b)"],
        ),
    ],
)

RECORDED = Section(
    "IR", "What fgrad recorded: make_jaxpr",
    intro="make_jaxpr traces a function on shapes and dtypes alone and returns the IR every "
          "transform reads and writes.",
    steps=[
        Step(
            "Seed 004's total(x), and its gradient",
            "",
            """
            x = np.array([[1.0, 2.0], [3.0, 4.0]])
            def total(x):
                return fnp.sum((x * 2) * x)
            """,
            ["fgrad.make_jaxpr(total)(x)", "fgrad.make_jaxpr(fgrad.grad(total))(x)"],
        ),
        Step(
            "Seed 000's f has a value-dependent `while`",
            "",
            """
            def f(a):
                b = a * 2
                while fnp.linalg.norm(b) < 1000:
                    b = b * 2
                return b
            """,
            [Raises("fgrad.make_jaxpr(f)(2.0)")],
            note="Traced values are abstract, so the loop cannot run on them.",
        ),
        Step(
            "...lax.while_loop records such a loop in the IR",
            "",
            """
            def f(a):
                return lax.while_loop(lambda b: fnp.linalg.norm(b) < 1000,
                                      lambda b: b * 2, a * 2)
            """,
            ["fgrad.make_jaxpr(f)(2.0)", "fgrad.jvp(f, (2.0,), (1.0,))"],
            note="The loop is one `while` equation holding its condition and body; the IR "
                 "can be differentiated (here in forward mode: f(2) = 1024, f'(2) = 512), "
                 "batched and compiled.",
        ),
    ],
)

SECTIONS = [SEED_000, SEED_001, SEED_002, SEED_003, SEED_004, NEWTON, RECORDED]


# ============================================================================ running


def _namespace(stream: TextIO) -> dict[str, Any]:
    """The names the fgrad column uses (the banner lists them). `progress` draws its bar on
    the demo's own output stream (when that is a terminal), not on the captured stdout."""
    import fgrad
    import fgrad.numpy as fnp
    from fgrad import lax, nn, optim
    from fgrad._progress import progress
    from fgrad.tree_util import tree_leaves, tree_map

    return {"__name__": "__fgrad_demo__", "time": time, "np": np, "fgrad": fgrad, "fnp": fnp,
            "lax": lax, "nn": nn, "optim": optim, "tree_leaves": tree_leaves,
            "tree_map": tree_map, "progress": functools.partial(progress, live=stream)}


def _run_code(code: str, ns: dict[str, Any], filename: str) -> list[str]:
    """Execute `code` in `ns`; return what it printed, line by line."""
    if not code:
        return []
    lines = code.splitlines(keepends=True)
    linecache.cache[filename] = (len(code), None, lines, filename)  # readable tracebacks
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, filename, "exec"), ns)
    return out.getvalue().splitlines()


def _format_value(value: Any) -> str:
    """NumPy's formatting (arrays as NumPy prints them, 0-d values like `1024.`); lists and
    dicts (pytrees of shapes or booleans) pretty-printed to the column's width."""
    if isinstance(value, (np.ndarray, np.generic)):
        return np.array2string(np.asarray(value))
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    if isinstance(value, (list, dict)):
        return pprint.pformat(value, width=RIGHT - 2)
    return str(value)


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"


def _results(step: Step, ns: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(expression, formatted value, is it prose) for each of the step's result expressions."""
    results = []
    for item in step.show:
        if isinstance(item, Raises):
            try:
                eval(item.expr, ns)
            except Exception as exc:  # the point of a Raises item
                results.append((item.expr, "raises " + _first_line(exc), True))
                continue
            raise AssertionError(f"demo: {item.expr} was expected to raise")
        results.append((item, _format_value(eval(item, ns)), False))
    return results


# ============================================================================ printing


class _Style:
    """ANSI styling, or none."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def _sgr(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def bold(self, t: str) -> str:
        return self._sgr("1", t)

    def head(self, t: str) -> str:
        return self._sgr("1;36", t)

    def dim(self, t: str) -> str:
        return self._sgr("2", t)

    def value(self, t: str) -> str:
        return self._sgr("32", t)

    def note(self, t: str) -> str:
        return self._sgr("3;33", t)


def _right_lines(code: str, printed: list[str], results: list[tuple[str, str, bool]],
                 width: int) -> list[tuple[str, str]]:
    """The fgrad column as (kind, text) rows, kind "code" or "value", `width` wide.

    Results print as `expr → value`, arrows aligned among short expressions; a value
    that does not fit (a matrix, an IR listing, an error message) goes below its
    expression, indented.
    """
    rows = [("code", line) for line in code.splitlines()]
    rows += [("value", "→ " + line) for line in printed]
    pad = max((len(e) for e, v, _ in results if "\n" not in v and len(e) <= 16), default=0)
    for expr, val, is_text in results:
        one_line = f"{expr:<{pad}} → {val}"
        if "\n" not in val and len(one_line) <= width:
            rows.append(("value", one_line))
            continue
        rows.append(("value", f"{expr} →"))
        if is_text:
            lines = textwrap.wrap(val, width - 2, subsequent_indent="  ")
        else:
            lines = val.splitlines()
        rows += [("value", "  " + line) for line in lines]
    return rows


class _Printer:
    def __init__(self, stream: TextIO, color: bool):
        self.stream = stream
        self.style = _Style(color)
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            "│─┼━→▸·…µ±".encode(encoding)
            self.unicode = True
        except (UnicodeEncodeError, LookupError):
            self.unicode = False

    def emit(self, line: str = "") -> None:
        if not self.unicode:
            line = line.translate(_ASCII)
        self.stream.write(line.rstrip() + "\n")

    def paragraph(self, text: str, indent: str = "  ",
                  style: Callable[[str], str] | None = None) -> None:
        # never break a word (a path) or at its hyphens
        for line in textwrap.wrap(text, WIDTH - len(indent), break_long_words=False,
                                  break_on_hyphens=False):
            self.emit(indent + (style(line) if style else line))

    def banner(self) -> None:
        s = self.style
        self.emit(s.bold("fgrad demo: five PyTorch autograd tutorials, rewritten functionally"))
        self.paragraph("Left, the PyTorch lines of each tutorial; right, the fgrad code that "
                       "replaces them, then what it printed and the value of each result "
                       "expression. The right column is run as shown, with:", indent="")
        self.emit("    import time, numpy as np, fgrad, fgrad.numpy as fnp")
        self.emit("    from fgrad import lax, nn, optim")
        self.emit("    from fgrad.tree_util import tree_leaves, tree_map")
        self.emit("    from fgrad._progress import progress  # a bar while a loop runs")

    def section(self, sec: Section) -> None:
        s = self.style
        label = f"Seed {sec.seed}" if sec.seed.isdigit() else sec.seed
        title = f"━━ {label} · {sec.topic} "
        self.emit()
        self.emit(s.head(title + "━" * max(3, WIDTH - len(title))))
        if sec.intro:
            self.paragraph(sec.intro, style=s.note)

    def step_title(self, step: Step) -> None:
        """The step's title, printed before its code runs (a progress bar shows below it)."""
        self.emit()
        self.emit(self.style.bold(f"  ▸ {step.title}"))
        self.stream.flush()

    def step(self, step: Step, printed: list[str], results: list[tuple[str, str, bool]]
             ) -> None:
        s = self.style
        left = textwrap.dedent(step.torch).strip("\n").splitlines()
        code = textwrap.dedent(step.code).strip("\n")
        right = _right_lines(code, printed, results, RIGHT if left else WIDTH - 4)
        if not left:  # fgrad only: full width
            for kind, text in right:
                self.emit("    " + (s.value(text) if kind == "value" else text))
        else:
            self.emit(s.dim(f"  {'PyTorch':<{LEFT}} │ ") + s.dim("fgrad"))
            self.emit(s.dim("  " + "─" * LEFT + "─┼─" + "─" * RIGHT))
            for i in range(max(len(left), len(right))):
                l_text = left[i] if i < len(left) else ""
                kind, r_text = right[i] if i < len(right) else ("code", "")
                r_text = s.value(r_text) if kind == "value" else r_text
                self.emit("  " + s.dim(f"{l_text:<{LEFT}}") + s.dim(" │ ") + r_text)
        if step.note:
            self.paragraph(step.note, indent="    ", style=s.note)


# ============================================================================ after the sections


def kernel_cache_dir() -> str:
    """Where jit keeps its compiled kernels: `$FGRAD_CACHE_DIR`, else `~/.cache/fgrad`.

    The backend's answer when it gives one (importing its cache module does not import
    Numba); otherwise the same rule, computed here.
    """
    try:
        from fgrad.backend import cache

        return cache.cache_dir()
    except (ImportError, AttributeError):
        configured = os.environ.get("FGRAD_CACHE_DIR")
        return configured or os.path.join(os.path.expanduser("~"), ".cache", "fgrad")


def _kernel_stats() -> dict[str, int]:
    """The backend's kernel counters (compiled, loaded, ...), or {} when it has none."""
    try:
        from fgrad import backend

        return dict(backend.stats())
    except (ImportError, AttributeError):
        return {}


def save_loss_plot(path: str, losses: Sequence[float]) -> tuple[bool, str]:
    """Plot seed 002's training loss to `path` with matplotlib (when it is installed).

    Returns (saved, message); not having matplotlib is not an error, just a message
    saying how to install it.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        return False, (f"--plot: matplotlib is not installed, so {path} was not written. "
                       "Install it with: pip install matplotlib")
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(losses) + 1), np.asarray(losses, dtype=float))
    ax.set_xlabel("step")
    ax.set_ylabel("MSE loss")
    ax.set_title("Seed 002: Dense(20), Relu, Dense(1), trained with optim.sgd(0.01)")
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=100)
    return True, f"Saved the loss curve of seed 002's training to {path}"


def _footer(printer: _Printer, seconds: float, stats_before: dict[str, int],
            plot_message: str | None) -> None:
    s = printer.style
    printer.section(Section("Done", "the kernel cache"))
    printer.emit()
    if plot_message:
        printer.paragraph(plot_message)
    from fgrad.jit import backend_name

    where = kernel_cache_dir()
    source = ("$FGRAD_CACHE_DIR" if os.environ.get("FGRAD_CACHE_DIR")
              else "the default; set FGRAD_CACHE_DIR to move it")
    printer.emit(f"  The demo ran in {seconds:.1f} s. jit's compiled kernels are cached in")
    printer.emit("    " + s.value(where))
    printer.emit(f"  ({source}).")
    if backend_name() == "numpy":
        printer.paragraph("FGRAD_BACKEND=numpy: jit ran its programs with the NumPy "
                          "interpreter, so nothing was compiled or cached.")
        return
    after = _kernel_stats()
    compiled = after.get("compiled", 0) - stats_before.get("compiled", 0)
    loaded = after.get("loaded", 0) - stats_before.get("loaded", 0)
    kernels = lambda n: f"{n} kernel{'s' * (n != 1)}"
    if compiled:
        printer.paragraph(f"This run compiled {kernels(compiled)} and loaded {loaded} from the "
                          "cache; the next run loads them all instead of compiling.")
    elif loaded:
        printer.paragraph(f"This run loaded {kernels(loaded)} from the cache and compiled none.")
    else:
        printer.paragraph("This run needed no kernel it did not already have.")


# ============================================================================ entry point


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared with `python -m fgrad demo`)."""
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the output (default: when writing to a terminal)")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="save the MLP's loss curve to FILE (e.g. loss.png; needs "
                             "matplotlib)")


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run every section, printing to `stream` (standard output by default)."""
    start = time.perf_counter()
    stream = sys.stdout if stream is None else stream
    if args.color == "auto":
        color = stream.isatty() and "NO_COLOR" not in os.environ
    else:
        color = args.color == "always"
    printer = _Printer(stream, color)
    stats_before = _kernel_stats()
    status = 0
    try:
        printer.banner()
        spaces: dict[str, dict[str, Any]] = {}
        with np.printoptions(precision=4, suppress=True, linewidth=RIGHT - 4):
            for sec in SECTIONS:
                printer.section(sec)
                ns = spaces[sec.seed] = _namespace(stream)
                for k, step in enumerate(sec.steps):
                    printer.step_title(step)
                    code = textwrap.dedent(step.code).strip("\n")
                    printed = _run_code(code + "\n" if code else "", ns,
                                        f"<fgrad demo {sec.seed}.{k + 1}>")
                    printer.step(step, printed, _results(step, ns))
        plot_message = None
        plot = getattr(args, "plot", None)
        if plot:
            losses = spaces.get("002", {}).get("losses")
            if losses is None:
                plot_message = "--plot: seed 002 did not run, so there is no loss curve."
            else:
                try:
                    _, plot_message = save_loss_plot(plot, losses)
                except (OSError, ValueError) as exc:  # unwritable path, unknown format
                    plot_message = f"--plot: could not save {plot}: {exc}"
                    status = 1
        _footer(printer, time.perf_counter() - start, stats_before, plot_message)
        printer.emit()
        stream.flush()
    except BrokenPipeError:  # `python -m fgrad demo | head`
        if stream is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Print the demo; `argv` are the demo's own options (see `add_arguments`)."""
    parser = argparse.ArgumentParser(prog="python -m fgrad demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
