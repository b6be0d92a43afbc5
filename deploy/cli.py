"""`songda`: the command line. The operator's commands (`deploy/ops`) work against any deployment; `run` and
`demo` (`deploy/local`) are the one-machine stack, and import its parts only when called."""

from __future__ import annotations

import argparse
import sys

from deploy.local import cli as local_cli
from deploy.ops import cli as ops_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="songda", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    local_cli.add_commands(sub)
    ops_cli.add_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
