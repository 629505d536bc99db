"""Side-by-side timings: fgrad (eager and jit) against NumPy and Numba written by hand,
and JAX (x64) and PyTorch when they are installed.

    python bench/run.py            # the full table (a few minutes)
    python bench/run.py --quick    # fewer repeats, smaller sizes

Every number is the median of repeated runs of one call, measured in this process,
side by side. Ratios are against NumPy written by hand (and against JAX, when present).
Never used by the tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import fgrad  # noqa: E402
import fgrad.numpy as fnp  # noqa: E402
from fgrad import lax  # noqa: E402

HAVE_JAX = importlib.util.find_spec("jax") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None

if HAVE_JAX:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
if HAVE_TORCH:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)


def median_time(fn: Callable[[], object], repeat: int, min_time: float = 0.05) -> float:
    """Median seconds per call over `repeat` runs, each long enough to time reliably."""
    fn()  # warm up (and compile)
    number, start = 1, time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    if elapsed < min_time:
        number = max(1, int(min_time / max(elapsed, 1e-9)))
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs)


def fmt(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:7.2f} {unit}"
    return f"{seconds / 1e-9:7.1f} ns"


ROWS: list[tuple[str, str, float | None]] = []


def record(workload: str, impl: str, seconds: float | None) -> None:
    ROWS.append((workload, impl, seconds))
    shown = fmt(seconds) if seconds is not None else "   n/a"
    print(f"  {workload:<34} {impl:<22} {shown}", flush=True)


# ============================================================================ workloads


def elementwise_gradient(n: int, repeat: int) -> None:
    name = f"grad of elementwise chain, n={n:.0e}"
    x = np.linspace(-2.0, 2.0, n)

    def f(x):
        return fnp.sum(fnp.sin(x) * fnp.exp(-x * x) + fnp.tanh(x))

    record(name, "fgrad eager", median_time(lambda: fgrad.grad(f)(x), repeat))
    g = fgrad.jit(fgrad.grad(f))
    record(name, "fgrad jit", median_time(lambda: g(x), repeat))

    def numpy_grad(x):
        e = np.exp(-x * x)
        t = np.tanh(x)
        return np.cos(x) * e - 2 * x * np.sin(x) * e + 1 - t * t

    record(name, "numpy by hand", median_time(lambda: numpy_grad(x), repeat))
    try:
        import numba

        @numba.njit(parallel=True, error_model="numpy")
        def numba_grad(x):
            out = np.empty_like(x)
            for i in numba.prange(x.shape[0]):
                v = x[i]
                e = np.exp(-v * v)
                t = np.tanh(v)
                out[i] = np.cos(v) * e - 2 * v * np.sin(v) * e + 1 - t * t
            return out

        record(name, "numba by hand", median_time(lambda: numba_grad(x), repeat))
    except ImportError:
        record(name, "numba by hand", None)
    if HAVE_JAX:
        jg = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(x) * jnp.exp(-x * x) + jnp.tanh(x))))
        xj = jnp.asarray(x)
        record(name, "jax jit", median_time(lambda: jg(xj).block_until_ready(), repeat))
    if HAVE_TORCH:
        xt = torch.tensor(x)

        def torch_grad():
            v = xt.clone().requires_grad_(True)
            (torch.sin(v) * torch.exp(-v * v) + torch.tanh(v)).sum().backward()
            return v.grad

        record(name, "torch eager", median_time(torch_grad, repeat))


def mlp_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 10))
    y = rng.standard_normal((100, 1))
    k1, k2 = 1 / np.sqrt(10), 1 / np.sqrt(20)
    params = {"w1": rng.uniform(-k1, k1, (10, 20)), "b1": rng.uniform(-k1, k1, 20),
              "w2": rng.uniform(-k2, k2, (20, 1)), "b2": rng.uniform(-k2, k2, 1)}
    return params, x, y


def fgrad_mlp_loss(p, x, y):
    h = fnp.maximum(x @ p["w1"] + p["b1"], 0.0)
    return fnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)


def fgrad_step(p, x, y):
    g = fgrad.grad(fgrad_mlp_loss)(p, x, y)
    return fgrad.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, g)


def numpy_step(p, x, y):
    z = x @ p["w1"] + p["b1"]
    h = np.maximum(z, 0.0)
    r = h @ p["w2"] + p["b2"] - y
    d = 2 * r / r.size
    gw2, gb2 = h.T @ d, d.sum(0)
    dh = (d @ p["w2"].T) * (z > 0)
    gw1, gb1 = x.T @ dh, dh.sum(0)
    return {"w1": p["w1"] - 0.01 * gw1, "b1": p["b1"] - 0.01 * gb1,
            "w2": p["w2"] - 0.01 * gw2, "b2": p["b2"] - 0.01 * gb2}


def mlp_step(repeat: int) -> None:
    name = "MLP 10-20-1 SGD step, batch 100"
    params, x, y = mlp_data()
    record(name, "fgrad eager", median_time(lambda: fgrad_step(params, x, y), repeat))
    step = fgrad.jit(fgrad_step)
    record(name, "fgrad jit", median_time(lambda: step(params, x, y), repeat))
    record(name, "numpy by hand", median_time(lambda: numpy_step(params, x, y), repeat))
    if HAVE_JAX:
        def jloss(p, x, y):
            h = jnp.maximum(x @ p["w1"] + p["b1"], 0.0)
            return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

        jstep = jax.jit(lambda p, x, y: jax.tree_util.tree_map(
            lambda a, b: a - 0.01 * b, p, jax.grad(jloss)(p, x, y)))
        pj = jax.tree_util.tree_map(jnp.asarray, params)
        xj, yj = jnp.asarray(x), jnp.asarray(y)
        record(name, "jax jit", median_time(
            lambda: jax.block_until_ready(jstep(pj, xj, yj)), repeat))
    if HAVE_TORCH:
        model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(),
                                    torch.nn.Linear(20, 1)).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        xt, yt = torch.tensor(x), torch.tensor(y)

        def torch_step():
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(xt), yt).backward()
            opt.step()

        record(name, "torch eager", median_time(torch_step, repeat))


def mlp_training_loop(steps: int, repeat: int) -> None:
    name = f"MLP training, {steps} steps"
    params, x, y = mlp_data()

    @fgrad.jit
    def train(p, x, y):
        return lax.fori_loop(0, steps, lambda i, p: fgrad_step(p, x, y), p)

    record(name, "fgrad jit fori_loop", median_time(lambda: train(params, x, y), repeat))
    step = fgrad.jit(fgrad_step)

    def python_loop():
        p = params
        for _ in range(steps):
            p = step(p, x, y)
        return p

    record(name, "fgrad jit step, py loop", median_time(python_loop, repeat))

    def numpy_loop():
        p = params
        for _ in range(steps):
            p = numpy_step(p, x, y)
        return p

    record(name, "numpy by hand", median_time(numpy_loop, repeat))
    if HAVE_JAX:
        def jloss(p, x, y):
            h = jnp.maximum(x @ p["w1"] + p["b1"], 0.0)
            return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

        def jstep(p, x, y):
            return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, jax.grad(jloss)(p, x, y))

        jtrain = jax.jit(lambda p, x, y: jax.lax.fori_loop(0, steps,
                                                           lambda i, p: jstep(p, x, y), p))
        pj = jax.tree_util.tree_map(jnp.asarray, params)
        xj, yj = jnp.asarray(x), jnp.asarray(y)
        record(name, "jax jit fori_loop", median_time(
            lambda: jax.block_until_ready(jtrain(pj, xj, yj)), repeat))


def call_overhead(repeat: int) -> None:
    name = "jit(grad(f)) call, 3-vector"
    x = np.array([0.1, 0.2, 0.3])
    g = fgrad.jit(fgrad.grad(lambda x: fnp.sum(fnp.sin(x) * x)))
    record(name, "fgrad jit", median_time(lambda: g(x), repeat))
    record(name, "numpy by hand", median_time(lambda: np.cos(x) * x + np.sin(x), repeat))
    if HAVE_JAX:
        jg = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(x) * x)))
        xj = jnp.asarray(x)
        record(name, "jax jit", median_time(lambda: jg(xj).block_until_ready(), repeat))


def hessian_50(repeat: int) -> None:
    name = "hessian, 50-dim"
    rng = np.random.default_rng(1)
    a = rng.standard_normal((50, 50)) / 7
    x = rng.standard_normal(50)

    def f(x):
        return fnp.sum(fnp.tanh(a @ x)) + fnp.sum(x ** 4) / 4

    record(name, "fgrad eager", median_time(lambda: fgrad.hessian(f)(x), repeat))
    h = fgrad.jit(fgrad.hessian(f))
    record(name, "fgrad jit", median_time(lambda: h(x), repeat))

    def numpy_hessian(x):
        t = np.tanh(a @ x)
        return a.T @ (a * (-2 * t * (1 - t * t))[:, None]) + np.diag(3 * x * x)

    record(name, "numpy by hand", median_time(lambda: numpy_hessian(x), repeat))
    if HAVE_JAX:
        aj = jnp.asarray(a)
        jh = jax.jit(jax.hessian(lambda x: jnp.sum(jnp.tanh(aj @ x)) + jnp.sum(x ** 4) / 4))
        xj = jnp.asarray(x)
        record(name, "jax jit", median_time(lambda: jh(xj).block_until_ready(), repeat))
    if HAVE_TORCH:
        at, xt = torch.tensor(a), torch.tensor(x)
        record(name, "torch eager", median_time(lambda: torch.autograd.functional.hessian(
            lambda x: torch.tanh(at @ x).sum() + (x ** 4).sum() / 4, xt), repeat))


def per_example_gradients(repeat: int) -> None:
    name = "per-example grads, 100 x 10 linear"
    rng = np.random.default_rng(2)
    w = rng.standard_normal(10)
    xs, ys = rng.standard_normal((100, 10)), rng.standard_normal(100)

    def loss(w, x, y):
        return (fnp.dot(x, w) - y) ** 2

    pe = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))
    record(name, "fgrad eager", median_time(lambda: pe(w, xs, ys), repeat))
    pej = fgrad.jit(pe)
    record(name, "fgrad jit", median_time(lambda: pej(w, xs, ys), repeat))
    record(name, "numpy by hand", median_time(
        lambda: 2 * (xs @ w - ys)[:, None] * xs, repeat))
    if HAVE_JAX:
        jpe = jax.jit(jax.vmap(jax.grad(lambda w, x, y: (jnp.dot(x, w) - y) ** 2),
                               in_axes=(None, 0, 0)))
        wj, xj, yj = map(jnp.asarray, (w, xs, ys))
        record(name, "jax jit", median_time(lambda: jpe(wj, xj, yj).block_until_ready(),
                                            repeat))


STARTUP_SCRIPT = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import numpy as np
    import fgrad, fgrad.numpy as fnp
    def loss(p, x, y):
        h = fnp.maximum(x @ p["w1"] + p["b1"], 0.0)
        return fnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)
    step = fgrad.jit(fgrad.grad(loss))
    rng = np.random.default_rng(0)
    p = {"w1": rng.standard_normal((10, 20)), "b1": np.zeros(20),
         "w2": rng.standard_normal((20, 1)), "b2": np.zeros(1)}
    step(p, rng.standard_normal((100, 10)), rng.standard_normal((100, 1)))
    print(time.perf_counter() - t0)
""")

JAX_STARTUP_SCRIPT = textwrap.dedent("""
    import time, sys
    t0 = time.perf_counter()
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    def loss(p, x, y):
        h = jnp.maximum(x @ p["w1"] + p["b1"], 0.0)
        return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)
    step = jax.jit(jax.grad(loss))
    import numpy as np
    rng = np.random.default_rng(0)
    p = {"w1": rng.standard_normal((10, 20)), "b1": np.zeros(20),
         "w2": rng.standard_normal((20, 1)), "b2": np.zeros(1)}
    jax.block_until_ready(step(p, rng.standard_normal((100, 10)), rng.standard_normal((100, 1))))
    print(time.perf_counter() - t0)
""")


# Numba imports SciPy when it is installed (to look for BLAS, which fgrad does not take
# from it): about 0.2 s of a warm start. JAX depends on SciPy, so wherever JAX is
# installed SciPy is too; this line makes a child process start as on a machine with
# only fgrad's own dependencies (numpy, numba), where `import scipy` fails.
WITHOUT_SCIPY = "import sys; sys.modules['scipy'] = None\n"


def _seconds(run: list[str], env: dict[str, str]) -> float:
    done = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def startup() -> None:
    name = "fresh process: import+jit+1st call"
    # Bytecode caches as after `pip install` (some shells set PYTHONDONTWRITEBYTECODE).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as cache:
        env["FGRAD_CACHE_DIR"] = cache
        run = [sys.executable, "-c", STARTUP_SCRIPT]
        record(name, "fgrad cold cache", _seconds(run, env))
        record(name, "fgrad warm cache", statistics.median(_seconds(run, env) for _ in range(3)))
        if importlib.util.find_spec("scipy") is not None:
            run = [sys.executable, "-c", WITHOUT_SCIPY + STARTUP_SCRIPT]
            record(name, "fgrad warm cache, no SciPy",
                   statistics.median(_seconds(run, env) for _ in range(3)))
    if HAVE_JAX:
        with tempfile.TemporaryDirectory() as cache:
            run = [sys.executable, "-c", JAX_STARTUP_SCRIPT, cache]
            record(name, "jax cold cache", _seconds(run, env))
            record(name, "jax warm cache", statistics.median(_seconds(run, env) for _ in range(3)))


# ============================================================================ the table


def print_table() -> None:
    print()
    print("| workload | implementation | median | vs NumPy by hand | vs JAX |")
    print("|---|---|---|---|---|")
    by_workload: dict[str, dict[str, float | None]] = {}
    for workload, impl, seconds in ROWS:
        by_workload.setdefault(workload, {})[impl] = seconds
    for workload, impls in by_workload.items():
        base = impls.get("numpy by hand")
        jax_time = next((t for k, t in impls.items() if k.startswith("jax") and "cold" not in k
                         and "warm" not in k), None)
        for impl, seconds in impls.items():
            if seconds is None:
                print(f"| {workload} | {impl} | n/a | | |")
                continue
            vs_np = f"{seconds / base:.2f}x" if base else ""
            peer = jax_time
            for start in ("cold", "warm"):  # a process start is compared with JAX's like it
                if start in impl:
                    peer = impls.get(f"jax {start} cache")
            vs_jax = f"{seconds / peer:.2f}x" if peer else ""
            print(f"| {workload} | {impl} | {fmt(seconds).strip()} | {vs_np} | {vs_jax} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}",
                f"fgrad {fgrad.__version__}"]
    try:
        import numba

        versions.append(f"numba {numba.__version__}")
    except ImportError:
        pass
    if HAVE_JAX:
        versions.append(f"jax {jax.__version__}")
    if HAVE_TORCH:
        versions.append(f"torch {torch.__version__}")
    print("versions:", ", ".join(versions), f"| {os.cpu_count()} cores |",
          f"FGRAD_BACKEND={os.environ.get('FGRAD_BACKEND', 'numba')}")
    start = time.perf_counter()
    elementwise_gradient(10**5 if args.quick else 10**6, repeat)
    mlp_step(repeat)
    mlp_training_loop(100 if args.quick else 1000, max(3, repeat // 2))
    call_overhead(repeat)
    hessian_50(repeat)
    per_example_gradients(repeat)
    startup()
    print_table()
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
