"""`python -m fgrad demo`: runs, prints the tutorials' numbers, and computes them."""

import io
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fgrad
from fgrad import demo
from fgrad._progress import progress
from fgrad.tree_util import tree_map

ROOT = Path(__file__).resolve().parents[1]


def run_fgrad(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run([sys.executable, "-m", "fgrad", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


@dataclass
class DemoRun:
    proc: subprocess.CompletedProcess
    cache_dir: Path
    plot: Path

    @property
    def out(self) -> str:
        return self.proc.stdout

    def section(self, heading: str) -> str:
        """The output from the section whose heading starts with `heading` to the next one."""
        start = self.out.index(f"━━ {heading}")
        end = self.out.find("\n━━ ", start + 1)
        return self.out[start:] if end < 0 else self.out[start:end]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One run of `python -m fgrad demo --plot ...`, shared by the tests below, with a fresh
    (cold) kernel cache."""
    tmp = tmp_path_factory.mktemp("demo")
    cache_dir, plot = tmp / "kernels", tmp / "loss.png"
    proc = run_fgrad("demo", "--plot", str(plot), env={"FGRAD_CACHE_DIR": str(cache_dir)})
    return DemoRun(proc, cache_dir, plot)


def _compiled_backend() -> bool:
    return os.environ.get("FGRAD_BACKEND", "numba").lower() != "numpy"


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
    # seed 002: the net, training two ways, per-example gradients
    "init, net = nn.serial(nn.Dense(20), nn.Relu,",
    "[{'b': (20,), 'w': (10, 20)},",
    "{'b': (1,), 'w': (20, 1)}]",
    "loss(params, x, y) → 1.123",
    "→ epoch    1: loss = 1.1230",
    "→ epoch 1000: loss = 0.5008",
    "→ 1000/1000 steps in ",
    "µs/step (median)",
    "µs/step (total/1000)",
    "return lax.fori_loop(0, 1000, body, (p, s))",
    "loss(p, x, y) → 0.5006",
    "loss(p2, x, y) → 0.5006",
    "np.isclose(loss(p2, x, y), loss(p, x, y)) → True",
    "per_example = fgrad.vmap(fgrad.grad(loss),",
    "in_axes=(None, 0, 0))",
    "[{'b': (100, 20), 'w': (100, 10, 20)},",
    "{'b': (100, 1), 'w': (100, 20, 1)}]",
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
    # Newton
    "g, H = fgrad.grad(f), fgrad.hessian(f)",
    "→    1  4.7e+00  2.2e+00",
    "→    2  1.4e+03  4.2e+00",
    "v    → [1. 1.]",
    "[[ 802. -400.]",
    "[-400.  200.]]",
    "np.allclose(Hq, A) → True",
    "v → [ 0.6 -0.8]",
    "np.allclose(A @ v, b) → True",
    # the IR
    "{ lambda a:f64[2,2]. let",
    "e:f64[] = reduce_sum[axes=(0, 1)] d",
    "raises ConcretizationError",
    "d:f64[] = while[body_jaxpr=",
    "fgrad.jvp(f, (2.0,), (1.0,)) → (1024., 512.)",
]


def test_demo_exits_zero_on_a_cold_cache(demo_run):
    # A fresh FGRAD_CACHE_DIR: every kernel is compiled. (Its run time is measured by
    # hand, never asserted here.)
    assert demo_run.proc.returncode == 0, demo_run.proc.stderr
    assert demo_run.proc.stderr == ""


@pytest.mark.parametrize("line", KEY_LINES)
def test_demo_prints_key_numbers(demo_run, line):
    assert line in demo_run.out, f"{line!r} is missing from the demo's output"


def test_demo_has_one_section_per_tutorial(demo_run):
    for seed in ("000", "001", "002", "003", "004"):
        assert f"Seed {seed} · " in demo_run.out
    assert "━━ Newton · " in demo_run.out
    assert "make_jaxpr" in demo_run.out


def test_demo_checks_all_hold(demo_run):
    # every `==` / allclose / isclose comparison the demo shows comes out True
    for line in demo_run.out.splitlines():
        if " → " in line and ("==" in line or "close" in line):
            assert "False" not in line, line


def test_demo_mlp_sections_have_no_false_check(demo_run):
    # the pytrees of allclose results (printed below their expression) are all True
    for heading in ("Seed 002", "Newton"):
        text = demo_run.section(heading)
        assert "False" not in text
    assert demo_run.section("Seed 002").count("{'b': True, 'w': True}") == 6


def test_demo_mlp_loss_falls(demo_run):
    losses = [float(line.rsplit("=", 1)[1]) for line in demo_run.out.splitlines()
              if "→ epoch" in line]
    assert len(losses) == 4 and losses == sorted(losses, reverse=True)
    assert losses[-1] < losses[0] - 0.5


def _value_after(out: str, expr: str) -> str:
    line = next(line for line in out.splitlines() if f"│ {expr} → " in line)
    return line.split(" → ", 1)[1]


def test_demo_mlp_both_ways_reach_the_same_final_loss(demo_run):
    section = demo_run.section("Seed 002")
    step_by_step = float(_value_after(section, "loss(p, x, y)"))
    whole_loop = float(_value_after(section, "loss(p2, x, y)"))
    assert step_by_step == whole_loop
    epoch_1000 = [line for line in section.splitlines() if "→ epoch 1000" in line]
    assert len(epoch_1000) == 1 and step_by_step < float(epoch_1000[0].rsplit("=", 1)[1])


def test_demo_mlp_reports_both_times_per_step(demo_run):
    section = demo_run.section("Seed 002")
    found = re.findall(r"→ then (\d+) µs/step \((median|total/1000)\)", section)
    assert [how for _, how in found] == ["median", "total/1000"]
    assert all(int(us) >= 0 for us, _ in found)
    calls = re.findall(r"→ call 1: (\d+\.\d+) s", section)
    assert len(calls) == 2
    assert "the median of the 999 calls after the first" in " ".join(section.split())


def test_demo_newton_converges_quadratically(demo_run):
    rows = re.findall(r"→ +(\d) +(\S+) +(\S+)$", demo_run.section("Newton"), re.MULTILINE)
    assert [int(i) for i, _, _ in rows] == [1, 2, 3, 4, 5, 6]
    errors = [float(e) for _, _, e in rows]
    assert errors[-1] < 1e-8
    for before, after in zip(errors[2:], errors[3:]):  # from step 3 on: about squared
        assert after < 10 * before**2


def test_demo_progress_bar_prints_one_line_when_not_a_terminal(demo_run):
    assert "\r" not in demo_run.out
    assert demo_run.out.count("→ 1000/1000 steps in ") == 1


def test_demo_prints_the_kernel_cache_dir(demo_run):
    assert str(demo_run.cache_dir) in demo_run.out
    assert "($FGRAD_CACHE_DIR)" in demo_run.out
    assert "The demo ran in " in demo_run.out
    if _compiled_backend():
        # a cold cache: this run compiled the kernels, and left them there
        match = re.search(r"This run compiled (\d+) kernels? and loaded 0", demo_run.out)
        assert match and int(match.group(1)) >= 1, demo_run.out[-400:]
        assert list(demo_run.cache_dir.glob("k_*.py"))


def test_kernel_cache_dir_follows_fgrad_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FGRAD_CACHE_DIR", str(tmp_path))
    assert demo.kernel_cache_dir() == str(tmp_path)
    monkeypatch.delenv("FGRAD_CACHE_DIR")
    assert demo.kernel_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "fgrad")


def test_demo_plot_saves_a_png(demo_run):
    pytest.importorskip("matplotlib")
    out = " ".join(demo_run.out.split())
    assert f"Saved the loss curve of seed 002's training to {demo_run.plot}" in out
    assert demo_run.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_output_fits_100_columns(demo_run):
    for line in demo_run.out.splitlines():
        assert len(line) <= 100, line


def test_demo_output_has_an_ascii_spelling_for_every_character(demo_run):
    # what the ASCII fallback translates covers everything the demo prints
    for ch in set(demo_run.out):
        assert ch.isascii() or ord(ch) in demo._ASCII, repr(ch)


def test_demo_code_fits_its_column():
    for sec in demo.SECTIONS:
        for step in sec.steps:
            torch = textwrap.dedent(step.torch).strip("\n").splitlines()
            for line in torch:
                assert len(line) <= demo.LEFT, (sec.seed, line)
            width = demo.RIGHT if torch else demo.WIDTH - 4
            for line in textwrap.dedent(step.code).strip("\n").splitlines():
                assert len(line) <= width, (sec.seed, line)


@pytest.fixture
def quick_sections(monkeypatch):
    """In-process runs of the demo: seeds 000 and 003 only (the subprocess run above covers
    the rest, including the training and its compilation)."""
    monkeypatch.setattr(demo, "SECTIONS", [demo.SEED_000, demo.SEED_003])


def test_demo_numbers_are_computed_by_fgrad(monkeypatch, capsys, quick_sections):
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


def test_demo_color_option(capsys, quick_sections):
    assert demo.main(["--color", "always"]) == 0
    assert "\x1b[" in capsys.readouterr().out
    assert demo.main(["--color", "never"]) == 0
    assert "\x1b[" not in capsys.readouterr().out
    assert demo.main([]) == 0  # auto: captured output is not a terminal
    assert "\x1b[" not in capsys.readouterr().out


def test_demo_ascii_fallback(quick_sections):
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


def test_demo_leaves_numpy_print_options_alone(quick_sections):
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


def test_demo_help_lists_plot():
    proc = run_fgrad("demo", "--help")
    assert proc.returncode == 0
    assert "--plot FILE" in proc.stdout and "--color" in proc.stdout


# ============================================================================ --plot


FAKE_002 = demo.Section("002", "a stand-in for seed 002: a loss curve, no training", steps=[
    demo.Step("Losses", "", "losses = [3.0, 2.0, 1.5, 1.25]"),
])


def test_save_loss_plot_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curve.png"
    saved, message = demo.save_loss_plot(str(path), [3.0, 2.0, 1.0])
    assert saved and str(path) in message
    assert path.read_bytes()[:4] == b"\x89PNG"


def _block_matplotlib(monkeypatch):
    # A None entry in sys.modules makes `import matplotlib...` raise ImportError.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)


def test_save_loss_plot_without_matplotlib(monkeypatch, tmp_path):
    _block_matplotlib(monkeypatch)
    path = tmp_path / "curve.png"
    saved, message = demo.save_loss_plot(str(path), [3.0, 2.0, 1.0])
    assert not saved and not path.exists()
    assert "matplotlib is not installed" in message
    assert "pip install matplotlib" in message


def test_demo_plot_without_matplotlib_says_how_to_install_it_and_exits_0(
        monkeypatch, capsys, tmp_path):
    _block_matplotlib(monkeypatch)
    monkeypatch.setattr(demo, "SECTIONS", [FAKE_002])
    path = tmp_path / "loss.png"
    assert demo.main(["--color", "never", "--plot", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "matplotlib is not installed" in out and "pip install matplotlib" in out
    assert not path.exists()


def test_demo_plot_with_matplotlib_in_process(monkeypatch, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(demo, "SECTIONS", [FAKE_002])
    path = tmp_path / "loss.png"
    assert demo.main(["--color", "never", "--plot", str(path)]) == 0
    assert f"to {path}" in " ".join(capsys.readouterr().out.split())
    assert path.stat().st_size > 0


def test_demo_plot_to_an_unwritable_path_fails_clearly(monkeypatch, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(demo, "SECTIONS", [FAKE_002])
    path = tmp_path / "no-such-dir" / "loss.png"
    assert demo.main(["--color", "never", "--plot", str(path)]) == 1
    assert f"--plot: could not save {path}" in " ".join(capsys.readouterr().out.split())


def test_demo_plot_needs_seed_002(monkeypatch, capsys, tmp_path, quick_sections):
    assert demo.main(["--color", "never", "--plot", str(tmp_path / "loss.png")]) == 0
    assert "seed 002 did not run" in capsys.readouterr().out


# ============================================================================ the progress bar


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_without_a_terminal_prints_only_a_final_line(capsys):
    live = io.StringIO()  # not a terminal
    assert list(progress(range(5), live=live)) == [0, 1, 2, 3, 4]
    assert live.getvalue() == ""
    out = capsys.readouterr().out
    assert re.fullmatch(r"5/5 steps in \d+\.\d\d s\n", out)


def test_progress_on_a_terminal_draws_then_erases_the_bar(capsys):
    live = FakeTerminal()
    for _ in progress(range(3), live=live, interval=0.0):
        pass
    drawn = live.getvalue()
    assert drawn.startswith("\r[>")
    assert "] 3/3 " in drawn
    assert drawn.endswith("\r") and drawn.rsplit("\r", 2)[1].strip() == ""  # erased
    assert capsys.readouterr().out.startswith("3/3 steps in ")


def test_progress_default_stream_is_stdout(capsys):
    # sys.stdout (captured here) is not a terminal: no bar, one line
    list(progress([1, 2], unit="items"))
    out = capsys.readouterr().out
    assert "\r" not in out and out.startswith("2/2 items in ")


def test_progress_without_len_and_after_break(capsys):
    list(progress(iter("abc")))
    assert capsys.readouterr().out.startswith("3 steps in ")
    bar = progress(range(10))
    for i in bar:
        if i == 3:
            break
    bar.close()
    assert capsys.readouterr().out.startswith("3/10 steps in ")  # 3 completed


# ============================================================================ README


def test_readme_tour_runs_and_says_what_it_gives():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## A tour"):]
    code = tour[tour.index("```python\n") + 10:tour.index("```\n", tour.index("```python"))]
    ns: dict = {}
    exec(compile(code, "README.md tour", "exec"), ns)
    assert ns["g"].shape == (3,) and ns["per_example"].shape == (4, 3)
    assert [sorted(p) for p in ns["params"]] == [["b", "w"], [], ["b", "w"]]
    assert f"{ns['l']:.3f}" == "0.501"  # "l falls from 1.123 to 0.501"
    losses = [ns["nn"].mse_loss(ns["net"](p, ns["x"]), ns["y"]) for p in (ns["params"], ns["p"])]
    assert f"{losses[0]:.3f}" == "1.123"
    for a, b in zip(fgrad.tree_util.tree_leaves(ns["p2"]), fgrad.tree_util.tree_leaves(ns["p"])):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_readme_keeps_its_two_commands_and_links_the_notebooks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
            "python -m fgrad demo") in readme
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -e \".[test]\" && "
            "python -m pytest") in readme
    for name in ("01_from_pytorch", "02_higher_order", "03_inside_jit"):
        assert f"(notebooks/{name}.ipynb)" in readme
        assert (ROOT / "notebooks" / f"{name}.ipynb").exists()
