"""One module per command group; each has `add_parser(subparsers)` that sets `args.run`."""
