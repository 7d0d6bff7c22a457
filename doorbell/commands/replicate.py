"""`doorbell replicate --pair [URL]`, `--check` and `doorbell replicate --identity-file KEY`.

The last runs the replicator (storage.replica) until SIGTERM or Ctrl-C: it copies the home's
ciphertext to the paired target every replica.poll_interval_s (0.5 s) and reconnects after the
target goes away. It reads the home only and holds no footage key: the SSH key is its only
secret. It applies the replica's own retention (replica.max_age_days, replica.max_total_bytes)
on the server, and writes progress.json (storage.replica_progress) into --state-dir
(replica.state_dir).

The target is the one paired; when replica.target is set, it must be that one (else pair
again). `--pair` without a URL pairs replica.target.

--pair checks the target is on the home network, reads the server's host key, prints its
fingerprint and pins it (the home's replica-target.json). Pairing again with a different key
is refused: a changed key is what an impostor presents. --check connects to the paired target
and refuses an unknown or changed host key.
"""

import signal
from pathlib import Path

from doorbell.clock_sync import clock_synchronised
from doorbell.config import load_settings
from doorbell.storage.home import Home
from doorbell.storage.replica import PassResult, run_forever
from doorbell.storage.replica_progress import ProgressFile
from doorbell.storage.replica_retention import ReplicaRetention
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
    settings = load_settings(home.root)
    networks = settings.viewer.allowed_networks
    try:
        if args.pair is not None:
            url = args.pair or settings.replica.target
            if not url:
                raise CommandError("--pair needs a URL (sftp://user@host:port/path) or "
                                   "replica.target in config.toml")
            return _pair(home, SftpTarget.parse(url), networks)
        if args.check:
            return _check(home, networks)
        return _replicate(home, settings, args)
    except ReplicaTargetError as exc:
        raise CommandError(str(exc)) from None


def _pair(home: Home, target: SftpTarget, networks) -> int:
    address = resolve_on_lan(target, networks)
    pinned = PinnedTarget.load(home.root)
    if pinned is not None and (pinned.target.host, pinned.target.port) == \
            (target.host, target.port):
        # the pinned type of key, so that the server's other key types are not taken for a
        # changed key
        key = fetch_host_key(target, address, key_type=pinned.key_type)
        check_pinned_key(pinned, key)
    else:
        key = fetch_host_key(target, address)
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
    check_pinned_key(pinned, fetch_host_key(pinned.target, address, key_type=pinned.key_type))
    print(f"{pinned.target.url}: host key {pinned.fingerprint} matches the pinned key")
    return 0


def _replicate(home: Home, settings, args) -> int:
    if not args.identity_file:
        raise CommandError("--identity-file is needed: the SSH private key the replica "
                           "server accepts")
    identity = Path(args.identity_file)
    networks = settings.viewer.allowed_networks
    pinned = PinnedTarget.load(home.root)
    if pinned is None:
        raise CommandError("no replica is paired: run 'doorbell replicate --pair "
                           "sftp://user@host:port/path' first")
    configured = settings.replica.target
    if configured is not None and SftpTarget.parse(configured) != pinned.target:
        raise CommandError(f"replica.target is {SftpTarget.parse(configured).url} but the "
                           f"paired server is {pinned.target.url}: run 'doorbell replicate "
                           f"--pair' to pair replica.target")
    poll_interval_s = args.poll_interval_s or settings.replica.poll_interval_s
    if not 0.1 <= poll_interval_s <= 10:
        raise CommandError("--poll-interval-s must be between 0.1 and 10 seconds")
    state_dir = Path(args.state_dir or settings.replica.state_dir)
    configure_logging("doorbell replicate: %(message)s")  # journal priorities under systemd
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    progress = ProgressFile(state_dir, pinned.target.url, pinned.fingerprint)
    retention = ReplicaRetention.load(state_dir, settings.replica.max_age_days,
                                      settings.replica.max_total_bytes)

    def on_pass(result: PassResult) -> None:
        progress.pass_complete(result.pending_files, result.error_sentence())

    try:
        # A changed host key, a wrong SSH key or a refused login fails here, at start (an
        # unreachable server is retried); the connection is the loop's first one.
        first = []
        try:
            first.append(open_sftp(pinned, identity, networks))
        except connection_errors():
            pass

        def connect():
            return first.pop() if first else open_sftp(pinned, identity, networks)

        print(f"replicating {home.root} to {pinned.target.url}", flush=True)
        run_forever(home.root, pinned.target.path, connect,
                    poll_interval_s=poll_interval_s, should_stop=lambda: bool(stopping),
                    on_pass=on_pass, on_error=progress.failed,
                    connection_errors=connection_errors(), retention=retention,
                    clock_synchronised=clock_synchronised)
    except ReplicaTargetError as exc:  # the status page says so too
        progress.failed(str(exc))
        raise
    finally:
        progress.write()
    return 0
