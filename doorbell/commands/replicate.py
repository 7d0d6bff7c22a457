"""`doorbell replicate --pair URL`, `--check` and `doorbell replicate --identity-file KEY`.

The last runs the replicator (storage.replica) until SIGTERM or Ctrl-C: it copies the home's
ciphertext to the paired target every --poll-interval-s (0.5 s) and reconnects after the
target goes away. It reads the home only and holds no footage key: the SSH key is its only
secret.

--pair checks the target is on the home network, reads the server's host key, prints its
fingerprint and pins it (the home's replica-target.json). Pairing again with a different key
is refused: a changed key is what an impostor presents. --check connects to the paired target
and refuses an unknown or changed host key.
"""

import signal
from pathlib import Path

from doorbell.config import load_settings
from doorbell.storage.home import Home
from doorbell.storage.replica import run_forever
from doorbell.storage.replica_target import (
    PinnedTarget,
    ReplicaTargetError,
    SftpTarget,
    check_pinned_key,
    connection_errors,
    fetch_host_key,
    host_key_fingerprint,
    open_sftp,
    resolve_on_lan,
)

from ..errors import CommandError
from ..log_output import configure_logging


def run(args) -> int:
    home = Home.resolve(args.home)
    if not home.is_initialised():
        raise CommandError(f"{home.root} is not initialised: run 'doorbell init' first")
    networks = load_settings(home.root).viewer.allowed_networks
    try:
        if args.pair:
            return _pair(home, SftpTarget.parse(args.pair), networks)
        if args.check:
            return _check(home, networks)
        return _replicate(home, networks, args)
    except ReplicaTargetError as exc:
        raise CommandError(str(exc)) from None


def _pair(home: Home, target: SftpTarget, networks) -> int:
    address = resolve_on_lan(target, networks)
    key = fetch_host_key(target, address)
    pinned = PinnedTarget.load(home.root)
    if pinned is not None and (pinned.target.host, pinned.target.port) == \
            (target.host, target.port):
        check_pinned_key(pinned, key)
    fingerprint = host_key_fingerprint(key.asbytes())
    PinnedTarget(target, key.get_name(), key.get_base64()).save(home.root)
    print(f"Paired with {target.url}\nhost key {key.get_name()} {fingerprint}\n"
          f"Compare it with 'ssh-keygen -lf' on the server's host key before trusting it.")
    return 0


def _check(home: Home, networks) -> int:
    pinned = PinnedTarget.load(home.root)
    if pinned is None:
        raise CommandError("no replica is paired: run 'doorbell replicate --pair "
                           "sftp://user@host:port/path' first")
    address = resolve_on_lan(pinned.target, networks)
    check_pinned_key(pinned, fetch_host_key(pinned.target, address))
    print(f"{pinned.target.url}: host key {pinned.fingerprint} matches the pinned key")
    return 0


def _replicate(home: Home, networks, args) -> int:
    if not args.identity_file:
        raise CommandError("--identity-file is needed: the SSH private key the replica "
                           "server accepts")
    identity = Path(args.identity_file)
    pinned = PinnedTarget.load(home.root)
    if pinned is None:
        raise CommandError("no replica is paired: run 'doorbell replicate --pair "
                           "sftp://user@host:port/path' first")
    configure_logging("doorbell replicate: %(message)s")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    open_sftp(pinned, identity, networks).close()  # a wrong key or login fails here, at start
    print(f"replicating {home.root} to {pinned.target.url}", flush=True)
    run_forever(home.root, pinned.target.path, lambda: open_sftp(pinned, identity, networks),
                poll_interval_s=args.poll_interval_s, should_stop=lambda: bool(stopping),
                connection_errors=connection_errors())
    return 0
