"""`doorbell keys list | add NAME [RECIPIENT] | remove NAME | passwd NAME`."""


from storage.age import AgeError, parse_recipient
from storage.home import Home
from storage.keyring import Keyring, calibrate_work_factor
from storage.recipients import (
    RECOVERY_NAME,
    HouseholdKey,
    check_member_name,
    read_household_keys,
    write_household_keys,
)

from ..audit_trail import cli_actor, intact_audit_log
from ..errors import CommandError
from ..passphrase import read_passphrase


def _home(args) -> Home:
    home = Home.resolve(args.home)
    if not home.is_initialised():
        raise CommandError(f"{home.root} is not initialised: run 'doorbell init' first")
    return home


def run_list(args) -> int:
    home = _home(args)
    keyring = Keyring(home.identities_dir)
    for key in read_household_keys(home.recipients_file):
        if key.name == RECOVERY_NAME:
            kind = "recovery key (kept off the device)"
        elif keyring.exists(key.name):
            kind = f"passphrase on this device (scrypt 2^{keyring.work_factor(key.name)})"
        else:
            kind = "decrypts elsewhere (public key only)"
        print(f"{key.name:<16} {key.recipient}  {kind}")
    return 0


def run_add(args) -> int:
    home = _home(args)
    name = check_member_name(args.name)
    keys = read_household_keys(home.recipients_file)
    if any(key.name == name for key in keys):
        raise CommandError(f"a member named {name!r} already exists")
    audit = intact_audit_log(home)
    if args.recipient:
        try:
            recipient = parse_recipient(args.recipient)
        except AgeError as exc:
            raise CommandError(f"{args.recipient!r} is not an age public key: {exc}") from None
        owners = [key.name for key in keys if key.recipient == recipient]
        if owners:
            raise CommandError(f"that key already belongs to {owners[0]!r}")
        kind = "public key"
    else:
        passphrase = read_passphrase(args.passphrase_file, prompt=f"New passphrase for {name}: ",
                                     confirm=True)
        work_factor = args.work_factor or calibrate_work_factor()
        recipient = Keyring(home.identities_dir).create(name, passphrase, work_factor).recipient
        kind = "passphrase identity"
    write_household_keys(home.recipients_file, [*keys, HouseholdKey(name, recipient)])
    audit.append(cli_actor(), "keys.add", member=name, key=str(recipient), kind=kind)
    print(f"Added {name} ({recipient}). New clips are encrypted to this key from the next clip.")
    return 0


def run_remove(args) -> int:
    home = _home(args)
    keys = read_household_keys(home.recipients_file)
    remaining = [key for key in keys if key.name != args.name]
    if len(remaining) == len(keys):
        raise CommandError(f"no member named {args.name!r}")
    audit = intact_audit_log(home)
    write_household_keys(home.recipients_file, remaining)
    keyring = Keyring(home.identities_dir)
    if args.name != RECOVERY_NAME and keyring.exists(args.name):
        keyring.remove(args.name)
    audit.append(cli_actor(), "keys.remove", member=args.name)
    print(
        f"Removed {args.name}: new clips are no longer encrypted to their key. Clips recorded "
        "before now stay decryptable by that key wherever a copy of it exists."
    )
    return 0


def run_passwd(args) -> int:
    home = _home(args)
    keyring = Keyring(home.identities_dir)
    if not keyring.exists(args.name):
        raise CommandError(f"{args.name!r} has no passphrase-protected identity on this device")
    audit = intact_audit_log(home)
    old = read_passphrase(args.passphrase_file, prompt="Current passphrase: ")
    new = read_passphrase(args.new_passphrase_file, env_var="DOORBELL_NEW_PASSPHRASE",
                          prompt="New passphrase: ", confirm=True)
    keyring.change_passphrase(args.name, old, new, keyring.work_factor(args.name))
    audit.append(cli_actor(args.name), "keys.passwd", member=args.name)
    print(f"Changed the passphrase of {args.name}; the key itself is unchanged.")
    return 0
