"""`python -m fgrad <command>`: fgrad's command line (for now, `demo`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, one subcommand per tool."""
    from . import demo

    parser = argparse.ArgumentParser(
        prog="python -m fgrad",
        description="fgrad: JAX-style functional autodiff on NumPy arrays.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    demo_parser = commands.add_parser(
        "demo",
        help="the PyTorch autograd tutorials' examples, rewritten with fgrad",
        description="Print the PyTorch autograd tutorials' examples beside their fgrad "
                    "rewrites and the values fgrad computes for them.",
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: `sys.argv[1:]`) and run the command; 2 on a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on an unknown command or option
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a command is required (try: {parser.prog} demo)",
              file=sys.stderr)
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
