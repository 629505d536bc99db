"""The kernel cache: generated source, stored by content on disk and imported.

Numba's `cache=True` cannot cache functions made by `exec` (numba#3501): it needs a
source file. So a kernel module's source is written once to
`$FGRAD_CACHE_DIR/k_<sha256>.py` (default `~/.cache/fgrad`) and imported from there,
registered in `sys.modules` before `exec_module`; Numba then keeps the machine code
next to it (`__pycache__/*.nbi, *.nbc`) and the next process loads it in milliseconds.

* The name is the SHA-256 of the source, and the source's first line names the
  fgrad, Numba and NumPy versions and a hash of `runtime.py`: a version bump is a
  different file, never a stale kernel.
* Writes are atomic (a private temporary file, then `os.replace`), so two processes
  compiling the same kernel at once both end with a complete file.
* A file whose content does not hash to its name (truncated, corrupted) is rewritten;
  a Numba cache entry that fails to load is deleted and the kernel recompiled.
* An unwritable or missing cache directory falls back to a private temporary
  directory for this process, with one warning.
* Within a process, the same source always gives the same module (no recompiling).

`stats()` counts what happened: `compiled` (Numba compilations), `loaded` (functions
loaded from Numba's disk cache), `memory_hits` and `rewritten` files.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from types import ModuleType

_modules: dict[str, ModuleType] = {}
_lock = threading.RLock()
_counters = {"compiled": 0, "loaded": 0, "memory_hits": 0, "rewritten": 0}
_fallback: dict[str, str] = {}  # configured directory -> the temporary one used instead


class CacheWarning(UserWarning):
    """The kernel cache directory could not be used (kernels still compile and run)."""


def stats() -> dict[str, int]:
    """A copy of the counters: compiled, loaded, memory_hits, rewritten."""
    return dict(_counters)


def reset_stats() -> None:
    for key in _counters:
        _counters[key] = 0


def salt() -> str:
    """The versions a compiled kernel depends on, written into every kernel's source."""
    import numba
    import numpy

    from .. import __version__ as fgrad_version
    from . import runtime

    return (f"fgrad {fgrad_version}, numba {numba.__version__}, numpy {numpy.__version__}, "
            f"runtime {runtime.source_hash()}")


def cache_dir() -> str:
    """The configured directory: `$FGRAD_CACHE_DIR`, else `~/.cache/fgrad`."""
    configured = os.environ.get("FGRAD_CACHE_DIR")
    return configured or os.path.join(os.path.expanduser("~"), ".cache", "fgrad")


def digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def load(source: str) -> ModuleType:
    """The module for this kernel source: from memory, else from (or written to) disk
    and imported, which compiles its functions or loads them from Numba's cache."""
    key = digest(source)
    module = _modules.get(key)
    if module is not None:
        _counters["memory_hits"] += 1
        return module
    with _lock:
        module = _modules.get(key)
        if module is None:
            path = _write(key, source)
            module = _import(key, path)
            _modules[key] = module
        return module


def is_compiled(source: str) -> bool:
    """Whether this kernel source is in the disk cache with Numba's machine code (so
    loading it compiles nothing)."""
    directory = _fallback.get(cache_dir(), cache_dir())
    path = os.path.join(directory, f"k_{digest(source)}.py")
    return _intact(path, digest(source)) and bool(_numba_cache_files(path))


# ----------------------------------------------------------------------------- files


def _intact(path: str, key: str) -> bool:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == key
    except OSError:
        return False


def _write_atomically(directory: str, name: str, data: bytes) -> str:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        path = os.path.join(directory, name)
        os.replace(tmp, path)
        return path
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write(key: str, source: str) -> str:
    """The path of an intact file holding `source`, writing it if needed."""
    name = f"k_{key}.py"
    configured = cache_dir()
    directory = _fallback.get(configured, configured)
    path = os.path.join(directory, name)
    if _intact(path, key):
        return path
    existed = os.path.exists(path)
    try:
        path = _write_atomically(directory, name, source.encode())
    except OSError as err:
        if directory != configured:
            raise
        fallback = tempfile.mkdtemp(prefix="fgrad-kernels-")
        atexit.register(shutil.rmtree, fallback, ignore_errors=True)
        _fallback[configured] = fallback
        from .executor import warn

        warn(f"fgrad: cannot write the kernel cache directory {configured!r} ({err}); "
             f"compiled kernels go to {fallback!r} for this process only. Set "
             "FGRAD_CACHE_DIR to a writable directory to keep them across runs.",
             CacheWarning)
        return _write_atomically(fallback, name, source.encode())
    _counters["rewritten"] += existed
    return path


def _numba_cache_files(path: str) -> list[str]:
    directory, filename = os.path.split(path)
    stem = os.path.splitext(filename)[0]
    return glob.glob(os.path.join(directory, "__pycache__", f"{stem}.*.nb[ic]"))


# ----------------------------------------------------------------------------- import


def _exec(key: str, path: str) -> ModuleType:
    name = f"fgrad_kernel_{key[:40]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Numba's cache finds functions through their module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import(key: str, path: str) -> ModuleType:
    """Import the kernel module (its functions compile eagerly, or load from Numba's
    cache). A broken Numba cache entry is removed and the import retried once."""
    from numba.core.errors import NumbaError

    try:
        module = _exec(key, path)
    except NumbaError:
        raise  # a real compile error: not the cache's business
    except Exception:
        stale = _numba_cache_files(path)
        if not stale:
            raise
        for f in stale:
            with contextlib.suppress(OSError):
                os.unlink(f)
        module = _exec(key, path)
    _count(module)
    return module


def _count(module: ModuleType) -> None:
    for value in vars(module).values():
        stats_ = getattr(value, "stats", None)
        if getattr(value, "__module__", None) != module.__name__ or stats_ is None:
            continue
        _counters["compiled"] += sum(stats_.cache_misses.values())
        _counters["loaded"] += sum(stats_.cache_hits.values())
