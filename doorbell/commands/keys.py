"""`doorbell keys list | add NAME [RECIPIENT] | remove NAME | passwd NAME`.

The keys are changed by storage.household (the viewer's pages use the same code); this command
adds the prompts, the audit entries and the wording for a terminal.
"""

from doorbell.storage.home import Home
from doorbell.storage.household import (
    KIND_PASSPHRASE,
    KIND_RECOVERY,
    add_member,
    change_passphrase,
    check_new_member,
    check_passphrase_member,
    list_members,
    remove_member,
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
    for member in list_members(_home(args)):
        if member.kind == KIND_RECOVERY:
            kind = "recovery key (kept off the device)"
        elif member.kind == KIND_PASSPHRASE:
            kind = f"passphrase on this device (scrypt 2^{member.work_factor})"
        else:
            kind = "decrypts elsewhere (public key only)"
        print(f"{member.name:<16} {member.recipient}  {kind}")
    return 0


def run_add(args) -> int:
    home = _home(args)
    name = check_new_member(home, args.name)  # before asking for a passphrase
    audit = intact_audit_log(home)
    if args.recipient:
        added = add_member(home, name, recipient=args.recipient)
        kind = "public key"
    else:
        passphrase = read_passphrase(args.passphrase_file, prompt=f"New passphrase for {name}: ",
                                     confirm=True)
        added = add_member(home, name, passphrase=passphrase, work_factor=args.work_factor)
        kind = "passphrase identity"
    audit.append(cli_actor(), "keys.add", member=name, key=str(added.recipient), kind=kind)
    print(f"Added {name} ({added.recipient}). New clips are encrypted to this key from the next "
          "clip.")
    return 0


def run_remove(args) -> int:
    home = _home(args)
    audit = intact_audit_log(home)
    remove_member(home, args.name, allow_recovery=True)
    audit.append(cli_actor(), "keys.remove", member=args.name)
    print(
        f"Removed {args.name}: new clips are no longer encrypted to their key. Clips recorded "
        "before now stay decryptable by that key wherever a copy of it exists."
    )
    return 0


def run_passwd(args) -> int:
    home = _home(args)
    check_passphrase_member(home, args.name)  # before asking for passphrases
    audit = intact_audit_log(home)
    old = read_passphrase(args.passphrase_file, prompt="Current passphrase: ")
    new = read_passphrase(args.new_passphrase_file, env_var="DOORBELL_NEW_PASSPHRASE",
                          prompt="New passphrase: ", confirm=True)
    change_passphrase(home, args.name, old, new)
    audit.append(cli_actor(args.name), "keys.passwd", member=args.name)
    print(f"Changed the passphrase of {args.name}; the key itself is unchanged.")
    return 0
