"""The `doorbell` command line: parse, run the command's handler, and turn expected failures
into one sentence.

Exit codes: 0 success, 1 failure, 2 usage error. Errors go to stderr.
"""

import importlib
import sys

from .errors import USER_ERRORS
from .parsers import build_parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, function_name = args.handler
    handler = getattr(importlib.import_module(f"doorbell.commands.{module_name}"), function_name)
    try:
        return handler(args)
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
