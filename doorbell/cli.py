"""The `doorbell` command line: parse, dispatch, and turn expected failures into one sentence.

Exit codes: 0 success, 1 failure, 2 usage error. Errors go to stderr.
"""

import argparse
import sys

from .commands import audit, clips, demo, init, keys, record, run, serve, verify
from .errors import USER_ERRORS

COMMAND_MODULES = (init, record, serve, run, demo, keys, clips, verify, audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doorbell",
        description="A privacy-first doorbell camera: clips encrypted on the device, viewed on "
        "the home network only.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as exc:
        message = str(exc).rstrip(".")
        if isinstance(exc, OSError) and exc.strerror:
            where = f": {exc.filename}" if exc.filename else ""
            message = f"{exc.strerror}{where}"
        print(f"doorbell: {message}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("doorbell: interrupted.", file=sys.stderr)
        return 130
