"""The command line's grammar: every command's arguments, with no product code imported.

Each command names its handler as (module, function) in doorbell.commands; `doorbell.cli`
imports only the handler of the command being run. So `doorbell record` never loads the
decrypting half of storage, and `doorbell clips list` does not load OpenCV.
"""

import argparse
import sys
from importlib import metadata

PACKAGE = "doorbell"  # the import name; the distribution's name may differ (see pyproject.toml)


def installed_version() -> str | None:
    """The version of the installed distribution that provides the `doorbell` package."""
    for distribution in metadata.packages_distributions().get(PACKAGE, []):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


class _VersionAction(argparse.Action):
    """`doorbell --version`: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        version = installed_version()
        if version is None:
            parser.exit(1, "doorbell: this copy is not installed (no package metadata), so it "
                        "has no version: install it with pip.\n")
        sys.stdout.write(f"doorbell {version}\n")
        parser.exit(0)


def _add_init(subparsers) -> None:
    parser = subparsers.add_parser("init", help="create a new doorbell home with its first member")
    parser.add_argument(
        "--home", help="home directory (default: $DOORBELL_HOME or /var/lib/doorbell)"
    )
    parser.add_argument("--user", default="owner", help="the first member's name (default: owner)")
    parser.add_argument("--passphrase-file", help="read the member's passphrase from this file")
    parser.add_argument(
        "--work-factor", type=int, default=None,
        help="scrypt work factor, log2 N (default: calibrated to about 1 s here; at least 15)",
    )
    parser.add_argument(
        "--x25519", action="store_true",
        help="X25519 keys for the member and the recovery key, for an age older than 1.3.0 "
        "(default: post-quantum hybrid ML-KEM-768 + X25519 keys)",
    )
    parser.set_defaults(handler=("init", "run"))


def _add_record(subparsers) -> None:
    parser = subparsers.add_parser("record", help="run the recorder (holds public keys only)")
    parser.add_argument("--home", help="home directory")
    parser.add_argument(
        "--source",
        help="synthetic, picamera2, /dev/videoN, rtsp://HOST/..., or a video file "
        "(default: camera.source from the config)",
    )
    parser.add_argument(
        "--until-eof", action="store_true",
        help="process a video file (or one pass of the synthetic scene) as fast as possible, "
        "then stop; without it files loop in real time",
    )
    parser.set_defaults(handler=("record", "run"))


def _add_serve(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the viewer on the home network")
    parser.add_argument("--home", help="home directory")
    parser.add_argument("--bind", help="HOST:PORT (default: viewer.bind from the config)")
    parser.set_defaults(handler=("serve", "run"))


def _add_run(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run the recorder and the viewer together")
    parser.add_argument("--home", help="home directory")
    parser.set_defaults(handler=("run", "run"))


def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="try it: synthetic camera + viewer on 127.0.0.1")
    parser.add_argument("--dir", default="doorbell-demo",
                        help="demo home (default: ./doorbell-demo)")
    parser.add_argument("--bind", default="127.0.0.1:8080", help="viewer address")
    parser.set_defaults(handler=("demo", "run"))


def _add_keys(subparsers) -> None:
    parser = subparsers.add_parser("keys", help="list, add or remove household keys")
    parser.add_argument("--home", help="home directory")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="list members and their public keys")
    listing.set_defaults(handler=("keys", "run_list"))

    add = actions.add_parser(
        "add", help="add a member: with RECIPIENT (age1pq1... or age1...) for someone who "
        "decrypts elsewhere, without it a new identity protected by a passphrase on this device",
    )
    add.add_argument("name")
    add.add_argument("recipient", nargs="?")
    add.add_argument("--passphrase-file")
    add.add_argument("--work-factor", type=int, default=None)
    add.add_argument(
        "--x25519", action="store_true",
        help="the new identity is an X25519 key, for an age older than 1.3.0 (default: "
        "post-quantum hybrid)",
    )
    add.set_defaults(handler=("keys", "run_add"))

    remove = actions.add_parser("remove", help="stop encrypting new clips to a member")
    remove.add_argument("name")
    remove.set_defaults(handler=("keys", "run_remove"))

    passwd = actions.add_parser("passwd", help="change a member's passphrase")
    passwd.add_argument("name")
    passwd.add_argument("--passphrase-file", help="the current passphrase")
    passwd.add_argument("--new-passphrase-file", help="the new passphrase")
    passwd.set_defaults(handler=("keys", "run_passwd"))

    for sub in (listing, add, remove, passwd):
        sub.add_argument("--home", help="home directory", default=argparse.SUPPRESS)


def _add_clips(subparsers) -> None:
    parser = subparsers.add_parser("clips", help="list, export or delete clips")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="list clips (no key needed: times, states, sizes)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=("clips", "run_list"))

    export = actions.add_parser("export", help="decrypt a clip's video to an MP4 file")
    export.add_argument("clip_id", metavar="ID")
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    export.add_argument("--user", help="the member whose key decrypts it")
    export.add_argument("--passphrase-file")
    export.set_defaults(handler=("clips", "run_export"))

    delete = actions.add_parser("delete", help="delete a clip's files")
    delete.add_argument("clip_id", metavar="ID")
    delete.set_defaults(handler=("clips", "run_delete"))

    for sub in (listing, export, delete):
        sub.add_argument("--home", help="home directory")


def _add_verify(subparsers) -> None:
    parser = subparsers.add_parser("verify", help="check every stored file (no key needed)")
    parser.add_argument("--home", help="home directory")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--user", help="also authenticate every chunk with this member's key")
    parser.add_argument("--passphrase-file")
    parser.set_defaults(handler=("verify", "run"))


def _add_audit(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="show the audit log or verify its hash chain")
    parser.add_argument("--home", help="home directory")
    parser.add_argument("--verify", action="store_true", help="check the chain; exit 1 if broken")
    parser.set_defaults(handler=("audit", "run"))


def _add_replicate(subparsers) -> None:
    parser = subparsers.add_parser("replicate",
                                   help="copy the ciphertext to an SFTP server on the LAN")
    parser.add_argument("--home", help="home directory")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--pair", metavar="URL", nargs="?", const="",
                      help="pin the host key of sftp://user@host:port/path (default: "
                           "replica.target)")
    what.add_argument("--check", action="store_true", help="check the paired server's host key")
    parser.add_argument("--identity-file", help="SSH private key for the replica server")
    parser.add_argument("--poll-interval-s", type=float,
                        help="how often to look for new bytes (default: replica.poll_interval_s)")
    parser.add_argument("--state-dir",
                        help="where progress.json goes (default: replica.state_dir)")
    parser.set_defaults(handler=("replicate", "run"))


def _add_export_all(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-all", help="back up every clip's ciphertext, the index and the audit log to "
        "DIR (no key needed; run it again to copy only what is new)",
    )
    parser.add_argument("--home", help="home directory")
    parser.add_argument("--to", required=True, metavar="DIR",
                        help="the backup directory, outside the data directory")
    parser.set_defaults(handler=("export_all", "run"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doorbell",
        description="A privacy-first doorbell camera: clips encrypted on the device, viewed on "
        "the home network only.",
    )
    parser.add_argument("--version", action=_VersionAction,
                        help="print the installed version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_init, _add_record, _add_serve, _add_run, _add_demo, _add_keys, _add_clips,
                _add_verify, _add_audit, _add_export_all, _add_replicate):
        add(subparsers)
    return parser
