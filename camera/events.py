"""What the recorder tells the household, delivered without ever stalling capture.

    recorder thread -- emit() --> EventBus -- one bounded queue and one worker thread per sink -->
        EventLogFile (events.jsonl in the runtime dir: the viewer's live events), MQTT, ntfy

Events: doorbell_pressed, motion_started (trigger), motion_ended, clip_saved (clip_id, trigger,
duration_s, start), camera_lost / camera_back (message), disk_low (reason, free_bytes),
privacy_mode (on: true or false).

The delivery policy, stated once:

 * `emit()` never blocks and never raises: it stamps the event (wall-clock time, an id unique
   across restarts) and appends it to each sink's queue, under a lock held for a deque append.
 * Each sink's queue is bounded (`queue_size`). When it is full because the sink is slow or
   away (a broker down, an ntfy server rebooting), the OLDEST queued event is dropped: counted in
   the sink's `dropped` and logged (the first drop at once, then at most one summary per 30 s).
   For a doorbell "someone is at the door now" matters more than "someone was, an hour ago".
 * A worker delivers its queue in order. A sink that is not ready (MQTT not connected) keeps its
   queue; a delivery that fails is retried after a back-off (1 s doubling to 60 s) from the
   front of the queue; a delivery the target refuses for good (`DeliveryRefused`, e.g. HTTP 403)
   is dropped and logged. When the sink is back, what is queued goes out (catching up), and the
   number dropped meanwhile is logged.
 * `disk_low` is repeated at most once an hour.

Events carry no footage. Only if the owner turned on MQTT snapshots does a `doorbell_pressed`
event carry the picture at the press, and a `clip_saved` event the clip's thumbnail (privacy
masks already burnt in, 480 px wide), in memory, for the MQTT sink alone: it is never written to
events.jsonl nor sent to ntfy.
"""

import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from doorbell.config.model import NOTIFICATION_EVENTS
from doorbell.storage.exchange import EventLine, parse_event_lines

log = logging.getLogger("doorbell.events")

EVENTS_FILE = EventLine.FILE_NAME  # in the runtime dir, next to recorder.json; the viewer tails it
EVENTS_KEPT = 200

# The fields each event type may carry (all optional but these names only).
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "doorbell_pressed": (),
    "motion_started": ("trigger",),
    "motion_ended": (),
    "clip_saved": ("clip_id", "trigger", "duration_s", "start"),
    "camera_lost": ("message",),
    "camera_back": ("message",),
    "disk_low": ("reason", "free_bytes", "min_free_bytes"),
    "privacy_mode": ("on",),  # switched on or off over MQTT (camera/notify/switches.py)
}
assert tuple(EVENT_FIELDS) == NOTIFICATION_EVENTS
EVENT_TYPES = NOTIFICATION_EVENTS

REPEAT_AT_MOST_EVERY_S = {"disk_low": 3600.0}
DROP_LOG_INTERVAL_S = 30.0
RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0


def iso_time(epoch_s: float) -> str:
    """An epoch time as ISO 8601 in UTC with an explicit offset (Home Assistant's timestamp)."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Event:
    type: str
    time: float  # wall clock when it happened, seconds since the epoch
    id: str  # "<run>-<seq>": unique across recorder restarts, ordered within a run
    data: Mapping[str, Any] = field(default_factory=dict)
    image: bytes | None = field(default=None, repr=False)  # MQTT snapshot only (see above)

    def line(self) -> EventLine:
        """The event as events.jsonl holds it (no image)."""
        return EventLine(self.id, self.type, round(self.time, 3), self.data)

    def to_dict(self) -> dict:
        return self.line().to_dict()

    def to_json(self) -> str:
        return self.line().to_json()


def make_event(kind: str, data: Mapping[str, Any], event_id: str, when: float,
               image: bytes | None = None) -> Event:
    if kind not in EVENT_FIELDS:
        raise ValueError(f"unknown event type {kind!r}")
    unknown = set(data) - set(EVENT_FIELDS[kind])
    if unknown:
        raise ValueError(f"{kind} carries no {', '.join(sorted(unknown))}")
    return Event(kind, when, event_id, dict(data), image)


class DeliveryRefused(Exception):  # noqa: N818 - says what happened
    """The target refused this event for good (retrying cannot help): drop it, logged."""


class Sink(Protocol):
    name: str

    def accepts(self, kind: str) -> bool: ...

    def start(self) -> None: ...

    def ready(self, timeout_s: float) -> bool:
        """Wait up to timeout_s until a delivery can be tried (MQTT: connected)."""
        ...

    def deliver(self, event: Event) -> None:
        """Send one event; raise to retry it later, DeliveryRefused to drop it."""
        ...

    def close(self) -> None: ...


# -- the ring file the viewer reads -----------------------------------------------------------


class EventLogFile:
    """events.jsonl: the last EVENTS_KEPT events, one JSON object a line, replaced atomically.

    The recorder opens no socket: the viewer (another process) learns of new events by reading
    this file in the runtime directory (a tmpfs), as it does live.jpg and recorder.json.
    Lines from earlier runs are kept; every line has a unique id.
    """

    name = "events.jsonl"

    def __init__(self, path: Path, keep: int = EVENTS_KEPT):
        self.path = path
        self._lines: deque[str] = deque(maxlen=keep)
        try:
            for event in parse_event_lines(path.read_bytes()):  # what the viewer would read
                self._lines.append(event.to_json())
        except FileNotFoundError:
            pass

    def accepts(self, kind: str) -> bool:
        return True

    def start(self) -> None:
        pass

    def ready(self, timeout_s: float) -> bool:
        return True

    def deliver(self, event: Event) -> None:
        self._lines.append(event.to_json())
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("\n".join(self._lines) + "\n")
        os.replace(temporary, self.path)

    def close(self) -> None:
        pass


# -- the bus ----------------------------------------------------------------------------------


class _Worker:
    """One sink's bounded queue and the thread that empties it."""

    def __init__(self, sink: Sink, queue_size: int):
        self.sink = sink
        self.size = queue_size
        self.queue: deque[Event] = deque()
        self.cond = threading.Condition()
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self._closing = False
        self._deadline = math.inf
        self._dropped_logged = 0
        self._last_drop_log = -math.inf
        self._dropped_at_last_delivery = 0
        self._failing = False
        self.thread = threading.Thread(target=self._run, name=f"events-{sink.name}", daemon=True)

    # called on the recorder's thread: a deque append under a lock, nothing else
    def offer(self, event: Event) -> None:
        with self.cond:
            if len(self.queue) >= self.size:
                self._drop(self.queue.popleft(), "its queue is full")
            self.queue.append(event)
            self.cond.notify()

    def _drop(self, event: Event, why: str) -> None:
        """Count a dropped event; log the first at once, then a summary every 30 s at most."""
        self.dropped += 1
        now = time.monotonic()
        if self.dropped == 1 or now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            since = self.dropped - self._dropped_logged
            log.warning("events: %s is not keeping up (%s, %d events): dropped the oldest "
                        "(%s); %d dropped since the last report, %d in all", self.sink.name, why,
                        self.size, event.type, since, self.dropped)
            self._dropped_logged = self.dropped
            self._last_drop_log = now

    def close(self, deadline: float) -> None:
        with self.cond:
            self._closing = True
            self._deadline = deadline
            self.cond.notify_all()

    def _wait(self, seconds: float) -> None:
        with self.cond:
            if not self._closing:
                self.cond.wait(seconds)

    def _give_up(self) -> bool:
        return self._closing and time.monotonic() >= self._deadline

    def _run(self) -> None:
        backoff = RETRY_MIN_S
        while True:
            with self.cond:
                while not self.queue and not self._closing:
                    self.cond.wait()
                if not self.queue or self._give_up():
                    return
            if not self.sink.ready(0.2):
                if self._give_up():
                    return
                continue
            with self.cond:
                if not self.queue:
                    continue
                event = self.queue.popleft()
            try:
                self.sink.deliver(event)
            except DeliveryRefused as exc:
                self.failed += 1
                log.warning("events: %s refused %s (%s): dropped", self.sink.name, event.type, exc)
                continue
            except Exception as exc:
                self.failed += 1
                with self.cond:
                    if len(self.queue) < self.size:
                        self.queue.appendleft(event)  # retried first, in order
                    else:
                        self._drop(event, "its queue is full")
                if not self._failing:
                    log.warning("events: %s cannot deliver (%s); retrying with back-off, up to "
                                "%d events are kept", self.sink.name, exc, self.size)
                self._failing = True
                if self._closing:
                    return
                self._wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            self.delivered += 1
            backoff = RETRY_MIN_S
            if self._failing or self.dropped > self._dropped_at_last_delivery:
                log.info("events: %s is delivering again (%d event(s) dropped meanwhile, %d "
                         "still queued)", self.sink.name,
                         self.dropped - self._dropped_at_last_delivery, len(self.queue))
            self._failing = False
            self._dropped_at_last_delivery = self.dropped


class EventBus:
    """Fan events out to sinks; `emit()` is safe to call from the capture loop (see above)."""

    def __init__(self, sinks: Iterable[Sink] = (), queue_size: int = 64, images: bool = False,
                 clock: Callable[[], float] = time.time):
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.images = images  # attach pictures to presses and clip_saved (MQTT snapshots on)
        self.run = secrets.token_hex(4)
        self._workers = [_Worker(sink, queue_size) for sink in sinks]
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._last_sent: dict[str, float] = {}
        self._started = False
        self.emitted = 0

    @property
    def sinks(self) -> list[Sink]:
        return [w.sink for w in self._workers]

    def start(self) -> "EventBus":
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.sink.start()
                worker.thread.start()
        return self

    def __enter__(self) -> "EventBus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def emit(self, kind: str, image: bytes | None = None, **data: Any) -> Event | None:
        """Queue an event for every sink that wants it. Never blocks, never raises."""
        try:
            now = self._clock()
            with self._lock:
                repeat_s = REPEAT_AT_MOST_EVERY_S.get(kind)
                if repeat_s is not None and now - self._last_sent.get(kind, -math.inf) < repeat_s:
                    return None
                event = make_event(kind, data, f"{self.run}-{self._seq + 1}", now,
                                   image if self.images else None)
                self._seq += 1
                self._last_sent[kind] = now
                self.emitted += 1
            for worker in self._workers:
                if worker.sink.accepts(kind):
                    worker.offer(event)
            return event
        except Exception:  # a notification must never stop the recording
            log.exception("events: could not emit %s", kind)
            return None

    def clip_saved(self, clip_id: str, metadata: Mapping[str, Any],
                   thumbnail_jpeg: bytes | None) -> Event | None:
        start_us = metadata.get("start_us")
        return self.emit("clip_saved", image=thumbnail_jpeg, clip_id=clip_id,
                         trigger=metadata.get("trigger"), duration_s=metadata.get("duration_s"),
                         start=iso_time(start_us / 1e6) if start_us is not None else None)

    def stats(self) -> dict[str, dict[str, int]]:
        return {w.sink.name: {"queued": len(w.queue), "delivered": w.delivered,
                              "dropped": w.dropped, "failed": w.failed} for w in self._workers}

    def pending(self, sink_name: str) -> list[Event]:
        """The events queued for one sink, oldest first."""
        for worker in self._workers:
            if worker.sink.name == sink_name:
                with worker.cond:
                    return list(worker.queue)
        raise KeyError(sink_name)

    @property
    def dropped(self) -> int:
        return sum(w.dropped for w in self._workers)

    def close(self, timeout_s: float = 3.0) -> None:
        """Deliver what can be delivered within `timeout_s`, then close the sinks."""
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.close(deadline)
        for worker in self._workers:
            if worker.thread.is_alive():
                worker.thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
            if worker.queue:
                log.warning("events: %d event(s) for %s not delivered at shutdown",
                            len(worker.queue), worker.sink.name)
            try:
                worker.sink.close()
            except Exception as exc:
                log.warning("events: closing %s failed: %s", worker.sink.name, exc)

    # -- where the recorder's own objects are observed ------------------------------------------

    def observe_store(self, store):
        """`store`, emitting clip_saved (id, trigger, duration, thumbnail) when a clip is sealed.

        Both recorders (the generic one and picamera2's) seal clips through the store's writer,
        so this one seam reports every saved clip, whichever recorder wrote it.
        """
        return _ObservedStore(store, self)


class _ObservedStore:
    def __init__(self, store, bus: EventBus):
        self._store = store
        self._bus = bus

    def begin_clip(self, *args, **kwargs):
        return _ObservedWriter(self._store.begin_clip(*args, **kwargs), self._bus)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


class _ObservedWriter:
    def __init__(self, writer, bus: EventBus):
        self._writer = writer
        self._bus = bus

    def finish(self, thumbnail_jpeg: bytes | None, metadata: dict):
        clip = self._writer.finish(thumbnail_jpeg, metadata)
        self._bus.clip_saved(clip.id, metadata, thumbnail_jpeg)
        return clip

    def __getattr__(self, name: str):
        return getattr(self._writer, name)
