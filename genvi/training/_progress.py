"""The progress display of :func:`genvi.fit`: a "compiling..." line while the step
compiles, then a progress bar (tqdm: a widget in Jupyter, text in a terminal)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator


def interactive() -> bool:
    """Whether a person is likely watching: a Jupyter kernel, or a terminal on stderr.

    Off under CI (the ``CI`` or ``GENVI_CI`` environment variables) and when stderr is
    redirected to a file or pipe.
    """
    if os.environ.get("CI") or os.environ.get("GENVI_CI"):
        return False
    shell = sys.modules.get("IPython")
    if shell is not None:
        ip = shell.get_ipython()
        if ip is not None and "IPKernelApp" in getattr(ip, "config", {}):
            return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A progress bar over steps, or nothing (``enabled=False``)."""

    def __init__(self, enabled: bool | None, total: int, initial: int, desc: str = "fit"):
        self.bar = None
        if enabled is None:
            enabled = interactive()
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    def update(self, n: int, objective: float | None) -> None:
        if self.bar is None:
            return
        if objective is not None:
            self.bar.set_postfix_str(f"objective {objective:.4g}", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def compiling(enabled: bool, desc: str = "fit", every: float = 0.5) -> Iterator[None]:
    """While the block runs (a compilation), rewrite ``desc: compiling... N s`` on stderr
    every ``every`` seconds from a background thread, and end with one line saying how
    long it took. Nothing at all when ``enabled`` is false or the block ends before the
    first tick (a compiled program found in the cache)."""
    if not enabled:
        yield
        return
    t0 = time.perf_counter()
    stop = threading.Event()
    shown = threading.Event()

    def write(text: str) -> None:
        with contextlib.suppress(Exception):
            sys.stderr.write(text)
            sys.stderr.flush()

    def tick() -> None:
        while not stop.wait(every):
            write(f"\r{desc}: compiling... {time.perf_counter() - t0:.0f} s")
            shown.set()

    thread = threading.Thread(target=tick, name="genvi-compiling", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if shown.is_set():
            write(f"\r{desc}: compiled in {time.perf_counter() - t0:.1f} s   \n")
