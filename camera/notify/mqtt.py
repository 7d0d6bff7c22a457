"""MQTT for Home Assistant (paho-mqtt 2.x): discovery, availability with a last will, events.

The sink runs paho's network loop in paho's own thread and is fed by its EventBus worker
thread; neither is the capture thread, so a slow or absent broker never stalls recording.

 * MQTT 3.1.1 or 5 (`mqtt.protocol`), TLS with certificate checking (`mqtt.tls`, `mqtt.ca_file`),
   user name and a password read from `mqtt.password_file` at start (never from the config).
 * Last will: `<prefix>/availability` = "offline", retained, sent by the broker when the
   recorder dies without saying goodbye; "online" (retained) on every connect, "offline" on a
   clean stop.
 * Reconnects by itself with back-off (paho's reconnect_delay_set: 1 s doubling to 60 s). While
   it is away the bus keeps up to `queue_size` events for it (oldest dropped first, logged) and
   delivers them when it is back; the retained motion state is re-sent on connect.
 * Health for Home Assistant: the camera's connectivity (camera_lost / camera_back events), and
   the clips' disk, measured here every `disk_interval_s` (free bytes; "low" below
   retention.min_free_bytes, or at once on a disk_low event), all retained.
 * Home Assistant's switches (privacy mode, mute chime; camera/notify/switches.py): their
   command topics are subscribed on every connect (only with `mqtt.switches`); a command is
   kept, audited (actor "mqtt:<broker host>": MQTT does not say who published it) and put in
   force by `Switches.set` (on paho's thread, never the capture thread), then the state topic
   says what is in force now (retained), also when the change was refused.
 * Where it connects: the address resolved (and checked to be on the home network) at start.
   Without TLS it connects to that address itself, so a later DNS answer cannot send it
   elsewhere; with TLS it connects by name, and the broker's certificate must match the name.
"""

import hashlib
import json
import logging
import socket
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from doorbell.config import Settings
from doorbell.storage.retention import disk_free_bytes

from ..events import Event, iso_time
from .discovery import OFFLINE, ONLINE, SWITCHES, Topics, discovery_messages

log = logging.getLogger("doorbell.mqtt")

KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 60
PAHO_QUEUE = 64  # messages paho itself may hold while a connection drops mid-publish
DISK_INTERVAL_S = 60.0
DISK_LOW_FLOOR_BYTES = 64 * 1024 * 1024  # with min_free_bytes = 0: below this no clip fits


def fallback_device_id(settings: Settings) -> str:
    """A device id when no home is at hand (tests, benchmarks): this machine and camera.name,
    hashed for this use only, as machine-id(5) asks (the machine id itself is never sent)."""
    try:
        machine = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    except OSError:
        machine = socket.gethostname()
    seed = f"doorbell-mqtt\0{machine}\0{settings.camera.name}".encode()
    return hashlib.sha256(seed).hexdigest()[:12]


def read_secret(path: str, key: str) -> str:
    """The first line of a secret file (a password, a token)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise OSError(f"{key}: cannot read {path} ({exc.strerror or exc})") from None
    return text.splitlines()[0].strip() if text.strip() else ""


class MqttSink:
    name = "mqtt"

    def __init__(self, settings: Settings, address: str | None = None,
                 reconnect_delay_s: tuple[int, int] = (RECONNECT_MIN_S, RECONNECT_MAX_S),
                 client_id: str | None = None, device_id: str | None = None,
                 disk_path: Path | None = None, disk_interval_s: float = DISK_INTERVAL_S,
                 switches=None):
        self.settings = settings
        self.config = settings.mqtt
        self.device_id = device_id or fallback_device_id(settings)
        self.topics = Topics.for_settings(settings, self.device_id)
        self.address = address  # resolved and checked at start (camera.notify)
        self.switches = switches  # camera.notify.switches.Switches, or None (no switch entities)
        self._commands = {} if switches is None else {
            self.topics.switch(name)[1]: name for name, _n, _i in SWITCHES}
        self.connected = threading.Event()
        self._motion = "OFF"
        # The camera is taken as connected until the recorder says it is lost (it says so at
        # start too if the camera never opens).
        self._camera = "ON"
        self._disk: tuple[str, int] | None = None  # ("ON"/"OFF" low, free bytes), once measured
        self._disk_path = disk_path
        self._disk_interval_s = disk_interval_s
        self._stopping = threading.Event()
        self._disk_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ever_connected = False
        self._closed = False
        self._failing = False
        v5 = self.config.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"doorbell-{self.device_id}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
        )
        self.client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        if self.config.username is not None:
            password = None
            if self.config.password_file is not None:
                password = read_secret(self.config.password_file, "mqtt.password_file")
            self.client.username_pw_set(self.config.username, password)
        if self.config.tls:
            self.client.tls_set(ca_certs=self.config.ca_file)  # None: the system's CAs
        self.client.reconnect_delay_set(*reconnect_delay_s)
        self.client.max_queued_messages_set(PAHO_QUEUE)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message

    # -- the Sink interface ---------------------------------------------------------------------

    def accepts(self, kind: str) -> bool:
        return True

    @property
    def connect_host(self) -> str:
        """The checked address (plain TCP), or the name (TLS: the certificate says who)."""
        return self.config.host if self.config.tls or self.address is None else self.address

    def start(self) -> None:
        log.info("MQTT: connecting to %s:%d (%s, MQTT %s%s)", self.connect_host, self.config.port,
                 self.config.host, self.config.protocol, ", TLS" if self.config.tls else "")
        self.client.connect_async(self.connect_host, self.config.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        if self._disk_path is not None:
            self._disk_thread = threading.Thread(target=self._watch_disk, name="mqtt-disk",
                                                 daemon=True)
            self._disk_thread.start()

    def ready(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    def deliver(self, event: Event) -> None:
        body = event.to_dict()
        if event.type == "doorbell_pressed":
            # "ring": the event type Home Assistant requires of a doorbell event entity.
            self._publish(self.topics.doorbell,
                          json.dumps({"event_type": "ring", "time": iso_time(event.time)}))
            if self.config.snapshot_images and event.image:  # who is at the door, now
                self._publish(self.topics.snapshot, event.image)
        elif event.type in ("camera_lost", "camera_back"):
            with self._lock:
                self._camera = "OFF" if event.type == "camera_lost" else "ON"
            self._publish(self.topics.camera, self._camera, retain=True)
        elif event.type == "disk_low":
            free = body.get("free_bytes")
            with self._lock:
                if free is None and self._disk is not None:
                    free = self._disk[1]
                self._disk = ("ON", free) if free is not None else None
            self._publish(self.topics.disk_low, "ON", retain=True)
            if free is not None:
                self._publish(self.topics.disk_free, str(free), retain=True)
        elif event.type in ("motion_started", "motion_ended"):
            with self._lock:
                self._motion = "ON" if event.type == "motion_started" else "OFF"
            self._publish(self.topics.motion, self._motion, retain=True)
        elif event.type == "clip_saved":
            last = {k: body.get(k) for k in ("clip_id", "trigger", "duration_s", "start")}
            last["time"] = iso_time(event.time)
            self._publish(self.topics.last_clip, json.dumps(last, sort_keys=True), retain=True)
            if self.config.snapshot_images and event.image:
                self._publish(self.topics.snapshot, event.image)
        body["time"] = iso_time(event.time)
        self._publish(self.topics.event, json.dumps(body, sort_keys=True))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._disk_thread is not None:
            self._disk_thread.join(timeout=5)
        try:
            if self.connected.is_set():
                # A clean goodbye: the broker does not send the will on a DISCONNECT.
                info = self.client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=2.0)
            self.client.disconnect()
        except (RuntimeError, ValueError, OSError) as exc:
            log.warning("MQTT: disconnecting failed: %s", exc)
        finally:
            self.client.loop_stop()

    # -- the disk, measured in a thread of its own (a slow disk never holds paho's loop) -------

    def measure_disk(self) -> None:
        """Free bytes on the clips' disk now, and whether that is low; published if connected."""
        try:
            free = disk_free_bytes(self._disk_path)
        except OSError as exc:
            log.warning("MQTT: cannot measure the free space of %s: %s", self._disk_path, exc)
            return
        floor = max(self.settings.retention.min_free_bytes, DISK_LOW_FLOOR_BYTES)
        low = "ON" if free < floor else "OFF"
        with self._lock:
            self._disk = (low, free)
        if self.connected.is_set():
            self.client.publish(self.topics.disk_low, low, qos=1, retain=True)
            self.client.publish(self.topics.disk_free, str(free), qos=1, retain=True)

    def _watch_disk(self) -> None:
        while True:
            self.measure_disk()
            if self._stopping.wait(self._disk_interval_s):
                return

    # -- paho callbacks (paho's thread) ---------------------------------------------------------

    def _publish(self, topic: str, payload, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        # NO_CONN: the connection dropped just now; paho keeps a QoS 1 message and sends it
        # again after reconnecting, so it is not lost and must not be queued twice.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"publishing to {topic} failed: {mqtt.error_string(info.rc)}")

    def _announce(self) -> None:
        """Discovery (retained), the retained state, and "online"."""
        for topic, payload in discovery_messages(self.settings, self.device_id,
                                                 switches=self.switches is not None):
            self.client.publish(topic, payload, qos=1, retain=True)
        for name in self._commands.values():
            self._publish_switch(name)
        with self._lock:
            motion, camera, disk = self._motion, self._camera, self._disk
        self.client.publish(self.topics.motion, motion, qos=1, retain=True)
        self.client.publish(self.topics.camera, camera, qos=1, retain=True)
        if disk is not None:
            self.client.publish(self.topics.disk_low, disk[0], qos=1, retain=True)
            self.client.publish(self.topics.disk_free, str(disk[1]), qos=1, retain=True)
        self.client.publish(self.topics.availability, ONLINE, qos=1, retain=True)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT: the broker %s refused the connection: %s", self.config.host,
                      reason_code)
            return
        log.info("MQTT: connected to %s:%d%s", self.connect_host, self.config.port,
                 " again" if self._ever_connected else "")
        self._ever_connected = True
        self._failing = False
        client.subscribe([(self.topics.ha_status, 1), *((t, 1) for t in self._commands)])
        self._announce()
        self.connected.set()

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._failing:
            log.warning("MQTT: cannot reach the broker %s:%d; retrying with back-off up to %d s",
                        self.connect_host, self.config.port, RECONNECT_MAX_S)
        self._failing = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self._closed:
            self._failing = True  # the next failed attempts need no line of their own
            log.warning("MQTT: lost the broker %s (%s); reconnecting with back-off up to %d s",
                        self.config.host, reason_code, RECONNECT_MAX_S)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == self.topics.ha_status and message.payload == b"online":
            log.info("MQTT: Home Assistant came online: sending discovery again")
            self._announce()
        elif (name := self._commands.get(message.topic)) is not None:
            self._command(name, message.payload, message.retain)

    def _command(self, name: str, payload: bytes, retained: bool) -> None:
        """A switch command from Home Assistant: "ON" or "OFF", sent as it is given."""
        if retained:
            log.warning("MQTT: ignored a retained %s command on %s: commands are not to be "
                        "retained (clear it with an empty retained message)", name,
                        self.topics.switch(name)[1])
        elif payload in (b"ON", b"OFF"):
            self.switches.set(name, payload == b"ON", f"mqtt:{self.config.host}",
                              topic=self.topics.switch(name)[1])
        else:
            log.warning("MQTT: ignored the %s command %r: it takes ON or OFF", name,
                        payload[:40].decode("utf-8", "replace"))
        self._publish_switch(name)

    def _publish_switch(self, name: str) -> None:
        on = self.switches.state()[name]
        self.client.publish(self.topics.switch(name)[0], "ON" if on else "OFF", qos=1,
                            retain=True)
