"""First-run set-up: a one-time code that proves the person in the browser can see the device.

While the home has no household keys, the viewer makes a random set-up code and prints it to its
own console (the journal, on a Pi). Whoever types it into the set-up page creates the first
member. The code is good for one successful set-up and for 30 minutes; after that the viewer must
be restarted to print a new one.

Guessing is limited before the code is compared, in the code's own memory, so that nobody on the
LAN can keep the owner out: each address may try `wrong_per_address` wrong codes per 15 minutes
(then 429 for that address alone), and all addresses together `wrong_in_all` (50 times as many by
default) for the code's lifetime, after which the code is retired and a restart of the viewer
prints a new code with a fresh budget. So the right code from an address that has not used up its
own budget always works, unless the whole budget was spent, which takes many addresses.
"""

import hmac
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

LIFETIME_S = 30 * 60
# No 0/O, 1/I/L: the code is read off a console and typed by hand. 12 symbols of 31 = 59 bits.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS, GROUP_LENGTH = 3, 4
WRONG_PER_ADDRESS = 10
WINDOW_S = 15 * 60  # for the per-address budget
WRONG_IN_ALL_FACTOR = 50
USED = "This set-up code was already used: the device is set up."
EXPIRED = "The set-up code has expired: restart the viewer to print a new one."
RETIRED = "Too many wrong set-up codes were tried: restart the viewer to print a new one."


class SetupCodeError(Exception):
    """The code cannot be used (str() is the sentence to show, `status` the HTTP code)."""

    def __init__(self, sentence: str, status: int = 401) -> None:
        super().__init__(sentence)
        self.status = status


class WrongSetupCode(SetupCodeError):
    """Not the code: counted against the address's and everyone's budget."""


class SetupCodeLimited(SetupCodeError):
    """This address used up its budget of wrong codes; `wait_s` until it may try again."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"Too many wrong set-up codes from this address. Try again in "
                         f"{int(wait_s // 60) + 1} minutes.", 429)
        self.wait_s = wait_s


def normalise(code: str) -> str:
    """Forgive what people do when typing a code: spaces, dashes, lower case."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


class SetupCode:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 lifetime_s: float = LIFETIME_S, wrong_per_address: int = WRONG_PER_ADDRESS,
                 wrong_in_all: int | None = None) -> None:
        self._clock = clock
        self._lifetime_s = lifetime_s
        self._code = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
        self._issued_s = clock()
        self._used = False
        self._lock = threading.Lock()
        self._wrong_per_address = wrong_per_address
        self._wrong_in_all = wrong_in_all or WRONG_IN_ALL_FACTOR * wrong_per_address
        self._wrong_total = 0
        # Times of each address's recent wrong codes: never more entries than the whole budget.
        self._wrong_by_address: dict[str, deque[float]] = {}

    @property
    def display(self) -> str:
        """The code as printed: groups of four joined by dashes."""
        return "-".join(self._code[i:i + GROUP_LENGTH]
                        for i in range(0, len(self._code), GROUP_LENGTH))

    @property
    def unusable(self) -> str | None:
        """Why no code can be accepted any more (used, expired, retired), or None."""
        if self._used:
            return USED
        if self._clock() - self._issued_s > self._lifetime_s:
            return EXPIRED
        if self._wrong_total >= self._wrong_in_all:
            return RETIRED
        return None

    @property
    def minutes_left(self) -> int:
        return max(0, math.ceil((self._lifetime_s - (self._clock() - self._issued_s)) / 60))

    def check(self, given: str, address: str) -> None:
        """Raise SetupCodeError unless `given` is the code, it is still good and `address` has
        not used up its budget of wrong codes (checked before the code is compared)."""
        with self._lock:
            self._check_usable()
            now = self._clock()
            recent = self._wrong_by_address.get(address, deque())
            while recent and now - recent[0] >= WINDOW_S:
                recent.popleft()
            if not recent:
                self._wrong_by_address.pop(address, None)
            if len(recent) >= self._wrong_per_address:
                raise SetupCodeLimited(max(1.0, recent[0] + WINDOW_S - now))
            if not self._matches(given):
                self._wrong_total += 1
                self._wrong_by_address.setdefault(address, recent).append(now)
                raise WrongSetupCode("Wrong set-up code: it is printed in the viewer's log.")

    def consume(self, given: str) -> None:
        """Mark the code used if it is still good, atomically: two tabs cannot both set up the
        device. Called after check(), so a wrong code here is not counted again."""
        with self._lock:
            self._check_usable()
            if not self._matches(given):
                raise WrongSetupCode("Wrong set-up code: it is printed in the viewer's log.")
            self._used = True

    def _check_usable(self) -> None:
        sentence = self.unusable
        if sentence is not None:
            raise SetupCodeError(sentence, 401 if sentence != RETIRED else 410)

    def _matches(self, given: str) -> bool:
        return hmac.compare_digest(normalise(given).encode(), self._code.encode())

    def release(self) -> None:
        """Set-up failed after the code was taken (e.g. the disk is full): let it be retried."""
        with self._lock:
            self._used = False
