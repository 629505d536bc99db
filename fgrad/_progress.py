"""A small progress bar for loops (used by `python -m fgrad demo`; no dependencies).

    for epoch in progress(range(1000)):
        ...

While the loop runs, a bar is redrawn in place (with a carriage return) on `live`,
only if `live` is a terminal, at most every `interval` seconds; it is erased when the
loop ends. Then one line is printed to `sys.stdout` (looked up at that moment):
`1000/1000 steps in 0.62 s`. So a terminal sees the bar animate and end as that line,
and a file or pipe gets the line alone, with no carriage returns in it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

BAR_WIDTH = 24


def _bar(done: int, total: int | None, elapsed: float) -> str:
    if not total:
        return f"{done} steps  {elapsed:.1f} s"
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
    head = ">" if filled < BAR_WIDTH else ""
    bar = "=" * filled + head
    return f"[{bar:<{BAR_WIDTH}}] {done}/{total}  {elapsed:.1f} s"


def summary(done: int, total: int | None, elapsed: float, unit: str = "steps") -> str:
    """The final line: `1000/1000 steps in 0.62 s` (`1000 steps in ...` without a total)."""
    count = f"{done}/{total}" if total is not None else f"{done}"
    return f"{count} {unit} in {elapsed:.2f} s"


def progress(iterable: Iterable[T], total: int | None = None, *, live: TextIO | None = None,
             unit: str = "steps", interval: float = 0.1) -> Iterator[T]:
    """Yield the items of `iterable`, showing a bar on `live` (default: `sys.stdout`) when
    it is a terminal, then print one summary line to `sys.stdout` (see the module doc).
    `total` defaults to `len(iterable)` when it has one."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    stream: Any = sys.stdout if live is None else live
    try:
        animate = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        animate = False
    start = last = time.perf_counter()
    done, drawn = 0, 0

    def draw(text: str) -> None:
        nonlocal drawn
        stream.write("\r" + text + " " * max(0, drawn - len(text)))
        stream.flush()
        drawn = len(text)

    try:
        if animate:
            draw(_bar(0, total, 0.0))
        for item in iterable:
            yield item
            done += 1
            now = time.perf_counter()
            if animate and now - last >= interval:
                draw(_bar(done, total, now - start))
                last = now
    finally:
        elapsed = time.perf_counter() - start
        if animate and drawn:
            stream.write("\r" + " " * drawn + "\r")  # erase the bar
            stream.flush()
        print(summary(done, total, elapsed, unit))
