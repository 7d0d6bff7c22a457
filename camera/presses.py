"""Doorbell presses: a real button on a GPIO pin (gpiozero), or scripted presses for tests/demo.

Both answer one question per frame: was the button pressed since the last frame?
"""

import threading
from collections.abc import Iterable
from typing import Protocol


class PressSource(Protocol):
    def pressed(self, pts_us: int) -> bool: ...

    def close(self) -> None: ...


class NoButton:
    def pressed(self, pts_us: int) -> bool:
        return False

    def close(self) -> None:
        pass


class ScriptedPresses:
    """Presses at given source timestamps (the synthetic scene's visitors ring the bell)."""

    def __init__(self, times_us: Iterable[int], period_us: int | None = None):
        self._times = sorted(times_us)
        self._period_us = period_us  # the synthetic scene loops: so do its presses
        self._next = 0
        self._offset_us = 0

    def pressed(self, pts_us: int) -> bool:
        fired = False
        while self._times:
            if self._next == len(self._times):
                if not self._period_us:
                    break
                self._next = 0
                self._offset_us += self._period_us
            if self._times[self._next] + self._offset_us > pts_us:
                break
            self._next += 1
            fired = True
        return fired

    def close(self) -> None:
        pass


class GpioDoorbell:
    """A debounced push button, and optionally a chime driven for `chime_s` on each press.

    gpiozero calls `when_pressed` on its own thread; the capture loop only reads a counter.
    `pin_factory` is for tests (gpiozero's MockFactory); None uses the board's pins.
    """

    def __init__(
        self,
        button_pin: int,
        chime_pin: int | None = None,
        debounce_s: float = 0.05,
        chime_s: float = 1.0,
        pin_factory=None,
        switches=None,
    ):
        from gpiozero import Button, DigitalOutputDevice  # only on this path

        self._lock = threading.Lock()
        self._count = 0
        self._button = Button(
            button_pin, pull_up=True, bounce_time=debounce_s or None, pin_factory=pin_factory
        )
        self._chime = None
        if chime_pin is not None:
            self._chime = DigitalOutputDevice(chime_pin, pin_factory=pin_factory)
        self._chime_s = chime_s
        self._switches = switches  # camera.notify.switches.Switches: mute_chime silences it
        self._button.when_pressed = self._on_press

    def _on_press(self) -> None:
        with self._lock:
            self._count += 1
        muted = self._switches is not None and self._switches.mute_chime
        if self._chime is not None and not muted:
            self._chime.blink(on_time=self._chime_s, off_time=0, n=1, background=True)

    def pressed(self, pts_us: int) -> bool:
        with self._lock:
            count, self._count = self._count, 0
        return count > 0

    def close(self) -> None:
        self._button.close()
        if self._chime is not None:
            self._chime.close()
