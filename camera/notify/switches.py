"""Home Assistant's two switches on the doorbell: privacy mode and mute chime.

    privacy_mode  on: the recorder keeps no clip and publishes no live frame (the open clip is
                  sealed, live.jpg removed); off: it records again, from a fresh keyframe, so
                  no frame seen while it was on can reach a clip through the pre-roll
    mute_chime   on: a press rings no chime; the doorbell event still goes out (Home
                  Assistant, ntfy, the viewer, the clip)

Set through MQTT command topics (camera/notify/mqtt.py), so they exist only while
`mqtt.enabled` and `mqtt.switches` (off by default: any client the broker lets publish to the
command topic can stop the recording; README, "Home Assistant", has a Mosquitto ACL so that
only Home Assistant's user may): without them nothing could switch privacy mode off again, so
both are off then.

Every change is written to the audit log (actor "mqtt:<broker host>", action "privacy_mode" or
"mute_chime", details {"on": true|false, "topic": the command topic}): MQTT does not say which
client published a message, so the audit names the way it came, not a person. It is kept in
`<home>/switches.json`, replaced atomically, so a recorder restart keeps what was set. A change
that cannot be kept or audited is not made (the state topic then echoes the old state back, and
Home Assistant's switch flips back). A switches.json that is not what this module writes is
logged and read as both off.

A privacy mode change in force is also told to the household: a `privacy_mode` event (on: true
or false) on the event bus (`events`, set by camera.notify.build_event_bus): the viewer's live
events, ntfy and MQTT's event topic.

Thread-safety: `set()` runs on paho's network thread; the recorder's capture thread and
gpiozero's thread only read the two booleans.
"""

import json
import logging
import threading
from pathlib import Path

from doorbell.storage.audit import AuditLog
from doorbell.storage.durable import write_atomically
from doorbell.storage.errors import AuditLogCorrupt

log = logging.getLogger("doorbell.mqtt")

SWITCHES_FILE = "switches.json"
NAMES = ("privacy_mode", "mute_chime")
ANNOUNCED = ("privacy_mode",)  # the switches whose changes go out as events


class Switches:
    def __init__(self, path: Path, audit: AuditLog | None):
        self.path = path
        self.audit = audit
        self._lock = threading.Lock()
        self._state = dict.fromkeys(NAMES, False)
        self.events = None  # camera.events.EventBus: privacy mode changes are announced on it
        self._load()

    @classmethod
    def in_home(cls, home_dir: Path, audit: AuditLog | None) -> "Switches":
        return cls(home_dir / SWITCHES_FILE, audit)

    @property
    def privacy_mode(self) -> bool:
        return self._state["privacy_mode"]

    @property
    def mute_chime(self) -> bool:
        return self._state["mute_chime"]

    def state(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._state)

    def set(self, name: str, on: bool, actor: str, **details) -> bool:
        """Switch `name` on or off: kept, audited (by `actor`, with `details`), then in force and
        announced. True if the state is now `on` (also when it already was); False if the change
        could not be kept or audited."""
        if name not in NAMES:
            raise ValueError(f"there is no switch called {name!r}")
        with self._lock:
            if self._state[name] == on:
                return True
            before = dict(self._state)
            after = before | {name: on}
            try:
                self._write(after)
            except OSError as exc:
                log.error("%s stays %s: %s cannot be written (%s)", name, _word(not on),
                          self.path, exc)
                return False
            try:
                if self.audit is not None:
                    self.audit.append(actor, name, on=on, **details)
            except (AuditLogCorrupt, OSError, ValueError) as exc:
                log.error("%s stays %s: the change cannot be audited (%s)", name, _word(not on),
                          exc)
                try:
                    self._write(before)
                except OSError as undo:
                    log.error("%s could not be put back (%s): it says %s %s until the next "
                              "change", self.path, undo, name, _word(on))
                return False
            self._state = after
        log.warning("%s is %s (set by %s)", name, _word(on), actor)
        if self.events is not None and name in ANNOUNCED:
            self.events.emit(name, on=on)  # never blocks, never raises
        return True

    def _write(self, state: dict[str, bool]) -> None:
        write_atomically(self.path, (json.dumps(state, sort_keys=True) + "\n").encode())

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("cannot read %s (%s): privacy mode and mute chime are off", self.path, exc)
            return
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or set(data) != set(NAMES) or \
                not all(isinstance(v, bool) for v in data.values()):
            log.error("%s does not hold the switches (%s, true or false): privacy mode and "
                      "mute chime are off until Home Assistant sets them", self.path,
                      " and ".join(NAMES))
            return
        self._state = {name: data[name] for name in NAMES}
        for name, on in self._state.items():
            if on:
                log.warning("%s is on (set from Home Assistant, kept in %s)", name, self.path)


def _word(on: bool) -> str:
    return "on" if on else "off"
