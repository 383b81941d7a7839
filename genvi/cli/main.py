"""Entry point of the ``genvi`` command: ``genvi quickstart | vae | cone``."""

from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit code 2 with a clear message, never a traceback
        self.print_usage(sys.stderr)
        print(f"genvi: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="genvi", description="genvi: programmable variational inference in JAX")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    q = sub.add_parser("quickstart", help="a small model: posterior by importance sampling and VI")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--particles", type=int, default=20_000)
    q.add_argument("--steps", type=int, default=500)
    for register in _extra_commands():
        register(sub)
    return p


def _extra_commands():
    out = []
    try:
        from genvi.cli import vae

        out.append(vae.register)
    except ImportError:
        pass
    try:
        from genvi.cli import cone

        out.append(cone.register)
    except ImportError:
        pass
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "quickstart":
        from genvi.cli import quickstart

        return quickstart.main(args)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
