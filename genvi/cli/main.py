"""Entry point of the ``genvi`` command: ``genvi [quickstart | vae | air | cone] [options]``.

The arguments are parsed first (:mod:`genvi.cli._parser`, standard library only); only
then is the subcommand's module imported and run, under the command's Ctrl-C policy
(:mod:`genvi.training._interrupt`): a clean stop with exit code 130 while ``gv.fit``
trains, an immediate exit with code 130 at any other moment, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading

from genvi.cli._parser import parse


def _exit_on_interrupt(command: str) -> None:
    """Ctrl-C while the libraries load (importing JAX takes seconds): nothing exists yet
    to keep, so end at once with exit code 130, before Python could raise
    ``KeyboardInterrupt`` inside JAX's import-time callbacks (where it is swallowed)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        os.write(2, f"genvi {command}: interrupted\n".encode())
        os._exit(130)

    signal.signal(signal.SIGINT, handler)


def main(argv=None) -> int:
    """Run the ``genvi`` command with ``argv`` (default ``sys.argv[1:]``); returns the
    exit code (0 done; 1 a run stopped by a non-finite value or an error; 2 bad input;
    130 interrupted)."""
    args = parse(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        _exit_on_interrupt(args.command)  # until the full policy below is in place
    from genvi.training import _interrupt

    loaded = []

    def exit_message() -> str:
        """The line printed when Ctrl-C ends the command at once: the subcommand's
        ``interrupted_message(args)`` if it has one (it says what was kept)."""
        describe = getattr(loaded[0], "interrupted_message", None) if loaded else None
        return describe(args) if describe else f"genvi {args.command}: interrupted"

    guard = _interrupt.Guard(command=True, exit_message=exit_message)
    guard.install()
    try:
        loaded.append(importlib.import_module(f"genvi.cli.{args.command}"))
        code = loaded[0].command(args)
    except KeyboardInterrupt:  # only if a handler other than ours was in place
        print(exit_message(), file=sys.stderr)
        code = _interrupt.EXIT_CODE
    finally:
        if argv is not None:  # called from Python: leave the process as it was
            guard.uninstall()
    # Run as the command: keep the handler until the process ends. A Ctrl-C during the
    # interpreter's teardown would raise inside JAX's exit hooks ("Exception ignored in
    # atexit callback"); instead it ends the process at once with the code of the run.
    guard.exit_message = lambda: ""
    guard.exit_code = code if code else _interrupt.EXIT_CODE
    return code


if __name__ == "__main__":
    sys.exit(main())
