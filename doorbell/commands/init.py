"""`doorbell init`: create a home, the first member, the recovery key and the index.

The household itself is made by storage.household (the viewer's pages use the same code); this
command adds what belongs to a terminal: the prompts, the TLS certificate, the audit entry and
showing the recovery key once.
"""

import argparse
import sys

from doorbell.config import Settings
from doorbell.storage.age import is_post_quantum
from doorbell.storage.audit import AuditLog
from doorbell.storage.home import Home
from doorbell.storage.household import check_new_household, create_household
from doorbell.storage.keyring import MemberIdentity
from doorbell.web.tls import create_certificate

from ..audit_trail import cli_actor
from ..errors import CommandError
from ..passphrase import read_passphrase


def key_kind(identity: MemberIdentity) -> str:
    if is_post_quantum(identity.recipient):
        return "post-quantum hybrid ML-KEM-768 + X25519 key: age 1.3.0 or later reads it"
    return "X25519 key: any age release reads it, but not safe from a future quantum computer"


def format_recovery(identity: MemberIdentity) -> str:
    secret = str(identity)
    groups = " ".join(secret[i : i + 6] for i in range(0, len(secret), 6))
    return (
        "RECOVERY KEY - shown once, stored nowhere on this device.\n"
        "Every clip is also encrypted to it. Write it down or print it and keep it safe:\n"
        "with it, `age -d -i recovery.txt CLIP.mp4.age > clip.mp4` recovers any clip,\n"
        "even without this software or any member's passphrase.\n"
        f"It is a {key_kind(identity)}.\n\n"
        f"    {secret}\n\n"
        "The same key in groups of six, for copying by hand:\n\n"
        f"    {groups}\n\n"
        "It is upper-case letters, digits and '-' only, so any QR generator encodes it in\n"
        "compact alphanumeric mode.\n"
    )


def run(args: argparse.Namespace) -> int:
    home = Home.resolve(args.home)
    if args.work_factor is not None and not 15 <= args.work_factor <= 22:
        raise CommandError("--work-factor must be between 15 and 22")
    name = check_new_household(home, args.user)  # before asking for a passphrase
    passphrase = read_passphrase(args.passphrase_file, prompt=f"New passphrase for {name}: ",
                                 confirm=True)
    hostnames = ()  # viewer.hostnames, named in the TLS certificate
    if home.config_file.exists():  # an owner's own config.toml is kept: it must be valid
        own = Settings.from_toml_text(home.config_file.read_text(), str(home.config_file))
        hostnames = own.viewer.hostnames

    created = create_household(home, name, passphrase, args.work_factor,
                               post_quantum=not args.x25519)
    member, work_factor = created.member_identity, created.work_factor
    tls_fingerprint = create_certificate(home.tls_dir, hostnames)
    AuditLog(home.audit_file).append(
        cli_actor(name), "init", member=name, member_key=str(member.recipient),
        recovery_key=str(created.recovery_identity.recipient), scrypt_work_factor=work_factor,
    )
    print(f"Initialised {home.root} for member {name!r} (scrypt work factor 2^{work_factor}).")
    print(f"{name}'s public key ({key_kind(member)}):\n{member.recipient}\n")
    print(format_recovery(created.recovery_identity))
    print("The viewer's TLS certificate (for HTTPS on the home network) has the SHA-256")
    print(f"fingerprint {tls_fingerprint}\nCheck that your browser shows the same one.")
    sys.stdout.flush()
    return 0
