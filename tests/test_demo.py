"""`python -m fgrad demo`: runs, prints the tutorials' numbers, and computes them."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fgrad
from fgrad import demo
from fgrad.tree_util import tree_map

ROOT = Path(__file__).resolve().parents[1]


def run_fgrad(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run([sys.executable, "-m", "fgrad", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


@pytest.fixture(scope="module")
def demo_run():
    start = time.perf_counter()
    proc = run_fgrad("demo")
    return proc, time.perf_counter() - start


KEY_LINES = [
    # seed 000
    "g          → [ 0.  4.  8. 12.]",
    "g == 4 * x → [ True  True  True  True]",
    "y → 6.",
    "g → [1. 1. 1. 1.]",
    "g_vjp → [0. 2. 4. 6.]",
    "g == u → [ True  True  True  True]",
    "g == 2 * x → [ True  True  True  True]",
    "d      → 1024.",
    "a_grad → 512.",
    "d         → -102400.",
    "a_grad    → 51200.",
    "g32.dtype → float32",
    # seed 001
    "dx1              → [-0.25 -0.5  -0.75 -1.  ]",
    "dz_dx → [5. 1. 7.]",
    "dz_dy → [0. 2. 8.]",
    "v @ J → [5.   0.1  0.07]",
    # seed 002
    "→ epoch 1: loss = ",
    # seed 003
    "→ Iteration 1: w = 9.8000, loss = 120.0000",
    "→ Iteration 2: w = 9.6040, loss = 116.0400",
    "→ Iteration 100: w = 1.3262, loss = ",
    "np.allclose(dw, x.T @ (x @ w + b - y) / 3) → True",
    # seed 004
    "[[ 2.  8.]",
    "[18. 32.]]",
    "[[ 4.  8.]",
    "[12. 16.]]",
    "g == c / x → [ True  True  True]",
    # the IR
    "{ lambda a:f64[2,2]. let",
    "e:f64[] = reduce_sum[axes=(0, 1)] d",
    "raises ConcretizationError",
]


def test_demo_exits_zero_quickly(demo_run):
    proc, seconds = demo_run
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert seconds < 15, f"the demo took {seconds:.1f} s"  # ~0.5 s; generous for slow CI


@pytest.mark.parametrize("line", KEY_LINES)
def test_demo_prints_key_numbers(demo_run, line):
    out = demo_run[0].stdout
    assert line in out, f"{line!r} is missing from the demo's output"


def test_demo_has_one_section_per_tutorial(demo_run):
    out = demo_run[0].stdout
    for seed in ("000", "001", "002", "003", "004"):
        assert f"Seed {seed} · " in out
    assert "make_jaxpr" in out


def test_demo_checks_all_hold(demo_run):
    # every `==` / allclose comparison the demo shows comes out True
    for line in demo_run[0].stdout.splitlines():
        if " → " in line and ("==" in line or "allclose" in line):
            assert "False" not in line, line


def test_demo_mlp_loss_falls(demo_run):
    losses = [float(line.rsplit("=", 1)[1]) for line in demo_run[0].stdout.splitlines()
              if "→ epoch" in line]
    assert len(losses) >= 3 and losses == sorted(losses, reverse=True)


def test_demo_output_fits_100_columns(demo_run):
    for line in demo_run[0].stdout.splitlines():
        assert len(line) <= 100, line


def test_demo_code_fits_its_column():
    for sec in demo.SECTIONS:
        for step in sec.steps:
            torch = textwrap.dedent(step.torch).strip("\n").splitlines()
            for line in torch:
                assert len(line) <= demo.LEFT, (sec.seed, line)
            width = demo.RIGHT if torch else demo.WIDTH - 4
            for line in textwrap.dedent(step.code).strip("\n").splitlines():
                assert len(line) <= width, (sec.seed, line)


def test_demo_numbers_are_computed_by_fgrad(monkeypatch, capsys):
    # Break fgrad.grad (double every gradient): the demo's output must change with it.
    real_grad = fgrad.grad

    def doubled_grad(fun, *args, **kwargs):
        g = real_grad(fun, *args, **kwargs)
        return lambda *a, **k: tree_map(lambda t: 2 * t, g(*a, **k))

    monkeypatch.setattr(fgrad, "grad", doubled_grad)
    assert demo.main(["--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "g          → [ 0.  8. 16. 24.]" in out
    assert "g == 4 * x → [ True False False False]" in out
    assert "g32       → 1024." in out


def test_demo_color_option(capsys):
    assert demo.main(["--color", "always"]) == 0
    assert "\x1b[" in capsys.readouterr().out
    assert demo.main(["--color", "never"]) == 0
    assert "\x1b[" not in capsys.readouterr().out
    assert demo.main([]) == 0  # auto: captured output is not a terminal
    assert "\x1b[" not in capsys.readouterr().out


def test_demo_ascii_fallback():
    class AsciiStream:
        encoding = "ascii"

        def __init__(self):
            self.parts = []

        def write(self, s):
            s.encode("ascii")  # raises if the demo writes anything else
            self.parts.append(s)

        def flush(self):
            pass

        def isatty(self):
            return False

    stream = AsciiStream()
    assert demo.run(demo.argparse.Namespace(color="never"), stream) == 0
    out = "".join(stream.parts)
    assert "Iteration 1: w = 9.8000, loss = 120.0000" in out
    assert "d      -> 1024." in out


def test_demo_leaves_numpy_print_options_alone():
    before = np.get_printoptions()
    demo.run(demo.argparse.Namespace(color="never"), open(os.devnull, "w", encoding="utf-8"))
    assert np.get_printoptions() == before


def test_no_command_prints_usage_and_exits_2():
    proc = run_fgrad()
    assert proc.returncode == 2
    assert "usage: python -m fgrad" in proc.stderr
    assert "demo" in proc.stderr
    assert proc.stdout == ""


def test_unknown_command_exits_2():
    proc = run_fgrad("no-such-command")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_help_lists_demo():
    proc = run_fgrad("--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout
