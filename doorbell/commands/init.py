"""`doorbell init`: create a home, the first member, the recovery key and the index."""

import argparse
import sys

from config import Settings
from storage.age.identities import X25519Identity
from storage.audit import AuditLog
from storage.home import Home
from storage.index import ClipIndex
from storage.keyring import Keyring, calibrate_work_factor, check_passphrase_strength
from storage.recipients import RECOVERY_NAME, HouseholdKey, check_member_name, write_household_keys
from web.tls import create_certificate

from ..audit_trail import cli_actor
from ..errors import CommandError
from ..passphrase import read_passphrase

CONFIG_STUB = """\
# Your doorbell settings. Only the keys you change need to be here; the shipped defaults,
# with a comment for every key, are in the doorbell package's config/default.toml.
#
# [camera]
# source = "picamera2"
"""


def format_recovery(identity: X25519Identity) -> str:
    secret = str(identity)
    groups = " ".join(secret[i : i + 6] for i in range(0, len(secret), 6))
    return (
        "RECOVERY KEY - shown once, stored nowhere on this device.\n"
        "Every clip is also encrypted to it. Write it down or print it and keep it safe:\n"
        "with it, `age -d -i recovery.txt CLIP.mp4.age > clip.mp4` recovers any clip,\n"
        "even without this software or any member's passphrase.\n\n"
        f"    {secret}\n\n"
        "The same key in groups of six, for copying by hand:\n\n"
        f"    {groups}\n\n"
        "It is upper-case letters, digits and '-' only, so any QR generator encodes it in\n"
        "compact alphanumeric mode.\n"
    )


def run(args: argparse.Namespace) -> int:
    home = Home.resolve(args.home)
    if home.is_initialised():
        raise CommandError(f"{home.root} is already initialised (it has a recipients.txt)")
    name = check_member_name(args.user)
    passphrase = read_passphrase(args.passphrase_file, prompt=f"New passphrase for {name}: ",
                                 confirm=True)
    check_passphrase_strength(passphrase)
    if args.work_factor is not None and not 15 <= args.work_factor <= 22:
        raise CommandError("--work-factor must be between 15 and 22")
    work_factor = args.work_factor or calibrate_work_factor()

    home.root.mkdir(mode=0o750, parents=True, exist_ok=True)
    home.clips_dir.mkdir(mode=0o750, exist_ok=True)
    if home.config_file.exists():
        Settings.from_toml_text(home.config_file.read_text(), str(home.config_file))
    else:
        home.config_file.write_text(CONFIG_STUB)
    member = Keyring(home.identities_dir).create(name, passphrase, work_factor)
    recovery = X25519Identity.generate()
    write_household_keys(
        home.recipients_file,
        [HouseholdKey(name, member.recipient), HouseholdKey(RECOVERY_NAME, recovery.recipient)],
    )
    ClipIndex(home.index_file).close()
    tls_fingerprint = create_certificate(home.tls_dir)
    AuditLog(home.audit_file).append(
        cli_actor(name), "init", member=name, member_key=str(member.recipient),
        recovery_key=str(recovery.recipient), scrypt_work_factor=work_factor,
    )
    print(f"Initialised {home.root} for member {name!r} (scrypt work factor 2^{work_factor}).")
    print(f"{name}'s public key: {member.recipient}\n")
    print(format_recovery(recovery))
    print("The viewer's TLS certificate (for HTTPS on the home network) has the SHA-256")
    print(f"fingerprint {tls_fingerprint}\nCheck that your browser shows the same one.")
    sys.stdout.flush()
    return 0
