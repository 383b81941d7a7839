"""The progress bar of :func:`genvi.fit` (tqdm: a widget in Jupyter, text in a terminal)."""

from __future__ import annotations

import os
import sys


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
