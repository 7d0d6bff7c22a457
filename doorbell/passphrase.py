"""Where a passphrase comes from: --passphrase-file, then $DOORBELL_PASSPHRASE, then a prompt."""

import getpass
import os
import sys
from pathlib import Path

from .errors import CommandError


def read_passphrase(
    file: str | None,
    env_var: str = "DOORBELL_PASSPHRASE",
    prompt: str = "Passphrase: ",
    confirm: bool = False,
) -> str:
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read the passphrase file {file}: {exc.strerror}") from None
        lines = text.splitlines()
        return lines[0] if lines else ""
    if os.environ.get(env_var):
        return os.environ[env_var]
    if not sys.stdin.isatty():
        raise CommandError(
            f"a passphrase is needed: use --passphrase-file, set {env_var}, or run in a terminal"
        )
    passphrase = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat it: ") != passphrase:
        raise CommandError("the two passphrases differ")
    return passphrase
