"""`python -m fgrad demo`: five PyTorch autograd tutorials, rewritten functionally.

Each step prints the PyTorch lines of a tutorial on the left and, on the right,
the fgrad code that replaces them followed by the values it gives. The fgrad
code shown is exactly the code that runs: every step's right-hand column is
executed (in one namespace per tutorial) and its printed output and result
expressions are shown, so every number on screen is computed by fgrad here
and now.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import linecache
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

LEFT = 45  # width of the PyTorch column
RIGHT = 50  # width of the fgrad column
WIDTH = 2 + LEFT + 3 + RIGHT

_ASCII = str.maketrans({"│": "|", "─": "-", "┼": "+", "━": "=", "→": "->", "▸": ">",
                        "·": "-", "…": "..."})


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
    intro="nn.Module and optim.SGD arrive later as fgrad.nn / fgrad.optim; here the net is "
          "written by hand, its parameters a dict.",
    steps=[
        Step(
            "Training with value_and_grad on a params dict",
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
            for epoch in range(1000):
                y_pred = net(x)
                loss = criterion(y_pred, y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            """,
            """
            rng = np.random.default_rng(0)
            x = rng.standard_normal((100, 10))
            y = rng.standard_normal((100, 1))
            def linear(n_in, n_out):  # nn.Linear's init
                k = 1 / np.sqrt(n_in)
                return (rng.uniform(-k, k, (n_in, n_out)),
                        rng.uniform(-k, k, n_out))
            W1, b1 = linear(10, 20)
            W2, b2 = linear(20, 1)
            params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
            def net(p, x):
                h = fnp.maximum(x @ p["W1"] + p["b1"], 0.0)
                return h @ p["W2"] + p["b2"]
            def loss(p):
                return fnp.mean((net(p, x) - y) ** 2)
            step = fgrad.value_and_grad(loss)
            for epoch in range(100):
                l, g = step(params)
                params = tree_map(lambda p, d: p - 0.01 * d,
                                  params, g)
                if epoch % 25 == 0:
                    print(f"epoch {epoch+1}: loss = {l:.4f}")
            """,
            ["loss(params)"],
            note="100 epochs instead of the tutorial's 1000, to keep the demo quick.",
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
            note="Traced values are abstract, so the loop cannot run on them; lax.while_loop "
                 "(a later issue) records such a loop in the IR.",
        ),
    ],
)

SECTIONS = [SEED_000, SEED_001, SEED_002, SEED_003, SEED_004, RECORDED]


# ============================================================================ running


def _namespace() -> dict[str, Any]:
    import fgrad
    import fgrad.numpy as fnp
    from fgrad.tree_util import tree_map

    return {"__name__": "__fgrad_demo__", "np": np, "fgrad": fgrad, "fnp": fnp,
            "tree_map": tree_map}


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
    """NumPy's formatting (arrays as NumPy prints them, 0-d values like `1024.`)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return np.array2string(np.asarray(value))
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
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
            "│─┼━→▸·…".encode(encoding)
            self.unicode = True
        except (UnicodeEncodeError, LookupError):
            self.unicode = False

    def emit(self, line: str = "") -> None:
        if not self.unicode:
            line = line.translate(_ASCII)
        self.stream.write(line.rstrip() + "\n")

    def paragraph(self, text: str, indent: str = "  ",
                  style: Callable[[str], str] | None = None) -> None:
        for line in textwrap.wrap(text, WIDTH - len(indent)):
            self.emit(indent + (style(line) if style else line))

    def banner(self) -> None:
        s = self.style
        self.emit(s.bold("fgrad demo: five PyTorch autograd tutorials, rewritten functionally"))
        self.paragraph("Left, the PyTorch lines of each tutorial; right, the fgrad code that "
                       "replaces them, then what it printed and the value of each result "
                       "expression. The right column is run as shown, with:", indent="")
        self.emit("    import numpy as np, fgrad, fgrad.numpy as fnp")
        self.emit("    from fgrad.tree_util import tree_map")

    def section(self, sec: Section) -> None:
        s = self.style
        label = f"Seed {sec.seed}" if sec.seed.isdigit() else sec.seed
        title = f"━━ {label} · {sec.topic} "
        self.emit()
        self.emit(s.head(title + "━" * max(3, WIDTH - len(title))))
        if sec.intro:
            self.paragraph(sec.intro, style=s.note)

    def step(self, step: Step, printed: list[str], results: list[tuple[str, str, bool]]
             ) -> None:
        s = self.style
        self.emit()
        self.emit(s.bold(f"  ▸ {step.title}"))
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


# ============================================================================ entry point


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared with `python -m fgrad demo`)."""
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the output (default: when writing to a terminal)")


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run every section, printing to `stream` (standard output by default)."""
    stream = sys.stdout if stream is None else stream
    if args.color == "auto":
        color = stream.isatty() and "NO_COLOR" not in os.environ
    else:
        color = args.color == "always"
    printer = _Printer(stream, color)
    try:
        printer.banner()
        with np.printoptions(precision=4, suppress=True, linewidth=RIGHT - 4):
            for sec in SECTIONS:
                printer.section(sec)
                ns = _namespace()
                for k, step in enumerate(sec.steps):
                    code = textwrap.dedent(step.code).strip("\n")
                    printed = _run_code(code + "\n" if code else "", ns,
                                        f"<fgrad demo {sec.seed}.{k + 1}>")
                    printer.step(step, printed, _results(step, ns))
        printer.emit()
        stream.flush()
    except BrokenPipeError:  # `python -m fgrad demo | head`
        if stream is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Print the demo; `argv` are the demo's own options (see `add_arguments`)."""
    parser = argparse.ArgumentParser(prog="python -m fgrad demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
