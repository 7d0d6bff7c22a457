"""Passphrase policy: no key material here, so any process may import it.

A passphrase protects a member's identity file, which a stolen SD card hands to an offline
guesser, so the device refuses one that zxcvbn (Dropbox's estimator; PyPI `zxcvbn`, Debian
`python3-zxcvbn`) scores below 3 of 4 (fewer than about 10^8 guesses), in one sentence with
zxcvbn's reason: "the passphrase is too weak (score 0 of 4, 3 needed): this is a top-100
common password". The browser runs the same
estimator (web/static/zxcvbn.js, npm `zxcvbn` 4.4.2, the library the Python port follows) to
show the verdict while typing; the device's verdict is the one that counts.

zxcvbn refuses input longer than its `max_length` (72 characters, with the cost growing with
the length), so a longer passphrase is scored on its first 72 characters: any of those that
scores 3 is already far beyond guessing.

Suggested passphrases are diceware: words drawn with `secrets` from the EFF's large wordlist
(7,776 words, 12.9 bits each; storage/wordlists/eff_large.txt, CC BY 3.0 US, Electronic Frontier
Foundation), so six words carry about 77 bits.
"""

import secrets
from importlib import resources

from .errors import WeakPassphraseError

MIN_LENGTH = 10  # characters
MIN_SCORE = 3  # zxcvbn's 0..4: 3 is "safely unguessable" (about 10^8 to 10^10 guesses)
SCORED_LENGTH = 72  # zxcvbn's own max_length: longer input raises ValueError there
NO_WARNING = "add another word or two; uncommon words are better"


def passphrase_score(passphrase: str) -> tuple[int, str]:
    """zxcvbn's score (0..4) for the passphrase's first 72 characters, and its warning (or its
    first suggestion when it gives no warning; "" for a strong one)."""
    # Imported here: its word lists cost the viewer 12 MB of memory, and only set-up and a
    # passphrase change need them.
    from zxcvbn import zxcvbn

    result = zxcvbn(passphrase[:SCORED_LENGTH], max_length=SCORED_LENGTH)
    feedback = result["feedback"]
    reason = feedback["warning"] or next(iter(feedback["suggestions"]), "")
    return int(result["score"]), reason.rstrip(".").replace(". ", "; ")  # one sentence


def check_passphrase_strength(passphrase: str) -> None:
    """Refuse passphrases that an attacker with the SD card would guess, in one sentence."""
    if not passphrase:
        raise WeakPassphraseError("the passphrase is empty")
    if len(passphrase) < MIN_LENGTH:
        raise WeakPassphraseError(
            f"the passphrase is too short: use at least {MIN_LENGTH} characters")
    score, reason = passphrase_score(passphrase)
    if score < MIN_SCORE:
        reason = reason[:1].lower() + reason[1:] if reason else NO_WARNING
        raise WeakPassphraseError(
            f"the passphrase is too weak (score {score} of 4, {MIN_SCORE} needed): "
            f"{reason}")


def suggest_passphrase(words: int = 6) -> str:
    """A fresh diceware passphrase, e.g. "pouch-ravine-unmoved-sputter-tidy-crumb"."""
    wordlist = (resources.files(__package__) / "wordlists" / "eff_large.txt").read_text()
    choices = wordlist.split()
    return "-".join(secrets.choice(choices) for _ in range(words))
