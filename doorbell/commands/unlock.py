"""Unlock a member's identity for a command that must decrypt (export, verify --user)."""

from doorbell.storage.age.identities import X25519Identity
from doorbell.storage.home import Home
from doorbell.storage.keyring import Keyring

from ..errors import CommandError
from ..passphrase import read_passphrase


def unlock_member(home: Home, name: str | None, passphrase_file: str | None) -> X25519Identity:
    keyring = Keyring(home.identities_dir)
    members = keyring.members()
    if name is None:
        if len(members) != 1:
            raise CommandError("several members exist: choose one with --user NAME")
        name = members[0]
    if not keyring.exists(name):
        raise CommandError(f"no member named {name!r} has an identity on this device")
    return keyring.unlock(name, read_passphrase(passphrase_file, prompt=f"Passphrase for {name}: "))
