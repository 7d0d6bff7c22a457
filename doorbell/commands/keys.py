"""`doorbell keys list | add NAME [RECIPIENT] | remove NAME | passwd NAME`.

The keys are changed by storage.household (the viewer's pages use the same code); this command
adds the prompts, the audit entries and the wording for a terminal.
"""

from doorbell.storage.age import is_post_quantum
from doorbell.storage.home import Home
from doorbell.storage.household import (
    KIND_PASSPHRASE,
    KIND_RECOVERY,
    add_member,
    change_passphrase,
    check_new_member,
    check_passphrase_member,
    classical_members,
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


def _weakest_key_warning(home: Home) -> str | None:
    classical = classical_members(home)
    if not classical:
        return None
    return (f"Warning: {', '.join(classical)} "
            f"{'has an X25519 key' if len(classical) == 1 else 'have X25519 keys'}: every new "
            "clip is also encrypted to it, so a future quantum computer could open new clips "
            "despite the post-quantum keys. A member with an age older than 1.3.0 can instead "
            "put age's age-plugin-pq on PATH and use a post-quantum key.")


def run_list(args) -> int:
    home = _home(args)
    for member in list_members(home):
        if member.kind == KIND_RECOVERY:
            kind = "recovery key (kept off the device)"
        elif member.kind == KIND_PASSPHRASE:
            kind = f"passphrase on this device (scrypt 2^{member.work_factor})"
        else:
            kind = "decrypts elsewhere (public key only)"
        strength = "post-quantum" if member.post_quantum else "X25519 only"
        print(f"{member.name:<16} {member.recipient}  {strength}, {kind}")
    warning = _weakest_key_warning(home)
    if warning:
        print(f"\n{warning}")
    return 0


def run_add(args) -> int:
    home = _home(args)
    name = check_new_member(home, args.name)  # before asking for a passphrase
    audit = intact_audit_log(home)
    if args.recipient:
        if args.x25519:
            raise CommandError("--x25519 chooses the kind of a new passphrase identity: a public "
                               "key given on the command line is used as it is")
        added = add_member(home, name, recipient=args.recipient)
        kind = "public key"
    else:
        passphrase = read_passphrase(args.passphrase_file, prompt=f"New passphrase for {name}: ",
                                     confirm=True)
        added = add_member(home, name, passphrase=passphrase, work_factor=args.work_factor,
                           post_quantum=not args.x25519)
        kind = "passphrase identity"
    strength = "post-quantum" if is_post_quantum(added.recipient) else "X25519"
    audit.append(cli_actor(), "keys.add", member=name, key=str(added.recipient), kind=kind,
                 key_type=strength)
    print(f"Added {name} ({strength} key {added.recipient}). New clips are encrypted to this "
          "key from the next clip.")
    warning = _weakest_key_warning(home)
    if warning:
        print(warning)
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
