"""Passphrase policy: no key material here, so any process may import it.

Suggested passphrases are diceware: words drawn with `secrets` from the EFF's large wordlist
(7,776 words, 12.9 bits each; storage/wordlists/eff_large.txt, CC BY 3.0 US, Electronic Frontier
Foundation), so six words carry about 77 bits.
"""

import secrets
from importlib import resources

from .errors import WeakPassphraseError

_COMMON_PASSPHRASES = {
    "password", "passphrase", "doorbell", "letmein", "qwerty", "iloveyou", "admin",
    "welcome", "changeme", "123456789", "1234567890", "password1", "raspberry",
}


def check_passphrase_strength(passphrase: str) -> None:
    """Refuse passphrases that an attacker with the SD card would guess at once."""
    if not passphrase:
        raise WeakPassphraseError("the passphrase is empty")
    if len(passphrase) < 10:
        raise WeakPassphraseError("the passphrase is too short: use at least 10 characters")
    lowered = passphrase.lower()
    if lowered in _COMMON_PASSPHRASES or lowered.rstrip("0123456789!") in _COMMON_PASSPHRASES:
        raise WeakPassphraseError("the passphrase is a common one: choose another")
    if len(set(passphrase)) < 5:
        raise WeakPassphraseError("the passphrase repeats too few characters: choose another")


def suggest_passphrase(words: int = 6) -> str:
    """A fresh diceware passphrase, e.g. "pouch-ravine-unmoved-sputter-tidy-crumb"."""
    wordlist = (resources.files(__package__) / "wordlists" / "eff_large.txt").read_text()
    choices = wordlist.split()
    return "-".join(secrets.choice(choices) for _ in range(words))
