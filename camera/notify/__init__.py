"""Notifications that never leave the home network: events.jsonl for the viewer, MQTT, ntfy.

`build_event_bus(settings, run_dir, home_dir)` is what `doorbell record` calls once at start:

 * events.jsonl in the runtime directory, always (the viewer's live events);
 * MQTT (Home Assistant discovery) when `mqtt.enabled`, ntfy when `ntfy.enabled`. MQTT names the
   device by the id kept in the home (discovery.load_device_id), watches the clips' disk and,
   given `switches` (notify/switches.py, the same object the recorder reads; `doorbell record`
   gives it with `mqtt.switches` only), offers Home Assistant the privacy mode and mute chime
   switches, and announces privacy mode changes on the bus it returns.

LAN only: each target's host is resolved here, once, and the answer is logged. If any address
is outside `viewer.allowed_networks` (loopback, RFC 1918, link-local, IPv6 ULA by default) the
recorder refuses to start with a ConfigError naming the key, unless that section sets
`allow_public_targets = true`. (A target given as an IP address is refused already when the
config is loaded: config.model.Settings.)

A name that cannot be resolved at start (a Pi booting before its router) does not stop the
recording: that target's worker resolves it again every 30 s, with the same check, and starts
the target once it resolves; an answer outside the home network then switches that target off
for this run, with an error in the log.
"""

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from doorbell.config import ConfigError, Settings
from doorbell.config.model import outside_networks, refuse_public_target

from ..events import EVENTS_FILE, DeliveryRefused, Event, EventBus, EventLogFile

log = logging.getLogger("doorbell.events")

RESOLVE_AGAIN_S = 30.0

__all__ = ["build_event_bus", "resolve_target"]


def resolve_target(key: str, host: str, port: int, networks, allow_public: bool,
                   getaddrinfo: Callable | None = None) -> list[str]:
    """The addresses `host` resolves to, all inside `networks` (or ConfigError naming `key`).

    OSError (socket.gaierror) if it does not resolve.
    """
    infos = (getaddrinfo or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OSError(f"{host} has no address")
    log.info("%s %s resolves to %s", key, host, ", ".join(addresses))
    outside = [a for a in addresses if outside_networks(a, networks)]
    if outside:
        if not allow_public:
            raise refuse_public_target(key, host, outside[0], networks)
        log.warning("%s %s is outside the home network (%s); allowed by %s.allow_public_targets",
                    key, host, ", ".join(outside), key.partition(".")[0])
    return addresses


def build_event_bus(settings: Settings, run_dir: Path, home_dir: Path | None = None,
                    queue_size: int = 64, getaddrinfo: Callable | None = None,
                    switches=None) -> EventBus:
    """The recorder's EventBus with every configured sink (not started yet).

    Raises ConfigError if a target resolves outside the home network.
    """
    sinks: list = [EventLogFile(run_dir / EVENTS_FILE)]
    networks = settings.viewer.allowed_networks
    mqtt, ntfy = settings.mqtt, settings.ntfy
    if mqtt.enabled:
        from .mqtt import MqttSink  # paho is loaded only when MQTT is on

        sink = MqttSink(settings, switches=switches, **_mqtt_identity(home_dir))
        sinks.append(_checked(sink, "mqtt.host",
                              mqtt.host, mqtt.port, networks, mqtt.allow_public_targets,
                              getaddrinfo))
    if ntfy.enabled:
        from .ntfy import NtfySink

        url = urlsplit(ntfy.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        sinks.append(_checked(NtfySink(settings), "ntfy.url", ntfy.host, port, networks,
                              ntfy.allow_public_targets, getaddrinfo))
    bus = EventBus(sinks, queue_size=queue_size, images=mqtt.enabled and mqtt.snapshot_images)
    if switches is not None:
        switches.events = bus
    return bus


def _mqtt_identity(home_dir: Path | None) -> dict:
    """The device id kept in the home and the disk to watch (none without a home)."""
    if home_dir is None:
        return {}
    from .discovery import load_device_id

    try:
        device_id = load_device_id(home_dir)
    except OSError as exc:
        log.warning("MQTT: %s; using an id derived from this machine and camera.name", exc)
        device_id = None
    clips = home_dir / "clips"
    return {"device_id": device_id, "disk_path": clips if clips.is_dir() else home_dir}


def _checked(sink, key: str, host: str, port: int, networks, allow_public: bool,
             getaddrinfo: Callable | None):
    """`sink` with its address resolved and checked now, or a _Deferred that does it later."""

    def resolve() -> str:
        return resolve_target(key, host, port, networks, allow_public, getaddrinfo)[0]

    try:
        sink.address = resolve()
        return sink
    except ConfigError:
        raise
    except OSError as exc:  # socket.gaierror included
        log.error("%s %s cannot be resolved now (%s): recording goes on; trying again every "
                  "%.0f s", key, host, exc, RESOLVE_AGAIN_S)
        return _Deferred(sink, key, resolve)


class _Deferred:
    """A sink whose host did not resolve at start: resolved (and checked) from its worker."""

    def __init__(self, sink, key: str, resolve: Callable[[], str]):
        self.sink = sink
        self.name = sink.name
        self._key = key
        self._resolve = resolve
        self._next_try = 0.0
        self._started = False
        self._off = False

    def accepts(self, kind: str) -> bool:
        return not self._off and self.sink.accepts(kind)

    def start(self) -> None:
        pass

    def ready(self, timeout_s: float) -> bool:
        if self._started:
            return self.sink.ready(timeout_s)
        if self._off or time.monotonic() < self._next_try:
            time.sleep(timeout_s)
            return self._off  # off: let the worker drop what is queued (deliver refuses it)
        self._next_try = time.monotonic() + RESOLVE_AGAIN_S
        try:
            self.sink.address = self._resolve()
        except ConfigError as exc:
            log.error("%s; %s notifications are off until the recorder restarts", exc.message,
                      self.name)
            self._off = True
            return True
        except OSError as exc:
            log.warning("%s still cannot be resolved (%s)", self._key, exc)
            return False
        self.sink.start()
        self._started = True
        return self.sink.ready(timeout_s)

    def deliver(self, event: Event) -> None:
        if self._off:
            raise DeliveryRefused("the target is outside the home network")
        self.sink.deliver(event)

    def close(self) -> None:
        if self._started:
            self.sink.close()
