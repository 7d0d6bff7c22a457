"""First-run set-up: a one-time code that proves the person in the browser can see the device.

While the home has no household keys, the viewer makes a random set-up code and prints it to its
own console (the journal, on a Pi). Whoever types it into the set-up page creates the first
member. The code is good for one successful set-up and for 30 minutes; after that the viewer must
be restarted to print a new one. Wrong codes count against the same per-address rate limit as
logins, applied before the code is compared.
"""

import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable

LIFETIME_S = 30 * 60
# No 0/O, 1/I/L: the code is read off a console and typed by hand. 12 symbols of 31 = 59 bits.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS, GROUP_LENGTH = 3, 4


class SetupCodeError(Exception):
    """The set-up code is wrong, expired or already used (str() is the sentence to show)."""


def normalise(code: str) -> str:
    """Forgive what people do when typing a code: spaces, dashes, lower case."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


class SetupCode:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 lifetime_s: float = LIFETIME_S) -> None:
        self._clock = clock
        self._lifetime_s = lifetime_s
        self._code = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
        self._issued_s = clock()
        self._used = False
        self._lock = threading.Lock()

    @property
    def display(self) -> str:
        """The code as printed: groups of four joined by dashes."""
        return "-".join(self._code[i:i + GROUP_LENGTH]
                        for i in range(0, len(self._code), GROUP_LENGTH))

    @property
    def expired(self) -> bool:
        return self._used or self._clock() - self._issued_s > self._lifetime_s

    @property
    def minutes_left(self) -> int:
        return max(0, math.ceil((self._lifetime_s - (self._clock() - self._issued_s)) / 60))

    def check(self, given: str) -> None:
        """Raise SetupCodeError unless `given` is the code and it is still good."""
        if self._used:
            raise SetupCodeError("This set-up code was already used: the device is set up.")
        if self._clock() - self._issued_s > self._lifetime_s:
            raise SetupCodeError("The set-up code has expired: restart the viewer to print a "
                                 "new one.")
        if not hmac.compare_digest(normalise(given).encode(), self._code.encode()):
            raise SetupCodeError("Wrong set-up code: it is printed in the viewer's log.")

    def consume(self, given: str) -> None:
        """check() and mark the code used, atomically: two tabs cannot both set up the device."""
        with self._lock:
            self.check(given)
            self._used = True

    def release(self) -> None:
        """Set-up failed after the code was taken (e.g. the disk is full): let it be retried."""
        with self._lock:
            self._used = False
