"""Home Assistant MQTT discovery: the doorbell as one device with a few entities.

Every id and topic carries a device id (`<dev>`: 12 hex digits, random, made once and kept in
the home as `device-id`), so two doorbells on one broker with the default `topic_prefix` neither
share unique ids nor overwrite each other's retained state. Random and kept in the home rather
than derived from /etc/machine-id: it stays the same when the SD card is re-imaged and the home
restored, it differs for two homes on one machine, and it reveals nothing about the machine.

    <discovery_prefix>/event/doorbell_<dev>/doorbell/config          event, event_types ["ring"]
    <discovery_prefix>/binary_sensor/doorbell_<dev>/motion/config    device_class motion
    <discovery_prefix>/binary_sensor/doorbell_<dev>/camera/config    device_class connectivity
    <discovery_prefix>/binary_sensor/doorbell_<dev>/disk_low/config  device_class problem
    <discovery_prefix>/sensor/doorbell_<dev>/disk_free/config        device_class data_size (GB)
    <discovery_prefix>/sensor/doorbell_<dev>/last_clip/config        device_class timestamp
    <discovery_prefix>/image/doorbell_<dev>/snapshot/config          image (snapshot_images)
    <discovery_prefix>/switch/doorbell_<dev>/privacy_mode/config     switch (notify/switches.py)
    <discovery_prefix>/switch/doorbell_<dev>/mute_chime/config       switch

and the topics the entities read, under `<topic_prefix>/<dev>`:

    availability   "online" / "offline" (retained; "offline" is the last will)
    doorbell       {"event_type": "ring", "time": ...} per press (not retained)
    motion         "ON" / "OFF" (retained)
    camera         "ON" while frames arrive, "OFF" while the camera is lost (retained)
    disk_low       "ON" while free space is below retention.min_free_bytes (retained)
    disk_free      free bytes on the clips' disk, every minute (retained)
    last_clip      {"clip_id", "trigger", "duration_s", "start", "time"} (retained)
    snapshot       JPEG, masks burnt in (not retained): the picture at a ring, at once, then
                   the clip's thumbnail when the clip is saved
    event          every event as JSON, for automations (not retained)
    privacy_mode   "ON" / "OFF": the switch's state (retained)
    privacy_mode/set  Home Assistant's commands, "ON" / "OFF" (not retained: a retained one is
                   ignored, so a stale command on the broker cannot switch it again later)
    mute_chime, mute_chime/set   the same for the chime

Discovery messages are retained, so Home Assistant finds the device after either side restarts;
they are sent again on every connect and when Home Assistant announces itself online on
`<discovery_prefix>/status`. With snapshot_images off, an empty retained message on the image's
discovery topic removes an image entity left from before; empty messages on the discovery topics
of the releases before device ids remove the entities those left.

`configuration_url` (the device page's "Visit" link) is the viewer: https on its first
configured host name, else its bind address (a wildcard bind: this machine's .local name). A
viewer bound to loopback only is not reachable from Home Assistant, so it gets no link.
"""

import ipaddress
import json
import logging
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from doorbell.config import Settings

log = logging.getLogger("doorbell.mqtt")

MANUFACTURER = "Doorbell (self-hosted, privacy-first)"
MODEL = "Doorbell camera"
SOFTWARE = "doorbell"
VERSION = "0.1.0"
ONLINE, OFFLINE = "online", "offline"
DEVICE_ID_FILE = "device-id"
DEVICE_ID_RE = re.compile(r"[0-9a-f]{12}")
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}  # noqa: S104 (names, not a bind)
SWITCHES = (("privacy_mode", "Privacy mode", "mdi:cctv-off"),
            ("mute_chime", "Mute chime", "mdi:bell-off"))
# The entities the releases before device ids published (their discovery topics are cleared).
LEGACY_ENTITIES = (("event", "doorbell"), ("binary_sensor", "motion"), ("sensor", "last_clip"),
                   ("image", "snapshot"))


def node_id(topic_prefix: str) -> str:
    """A topic prefix sanitised to a discovery node id (letters, digits, _ and -)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", topic_prefix)


def load_device_id(home_dir: Path) -> str:
    """This doorbell's device id, from `<home>/device-id`; made (random) on the first run.

    Created with O_EXCL through a hard link, so two processes starting at once agree on one id.
    Raises OSError if the home cannot be read or written.
    """
    path = home_dir / DEVICE_ID_FILE
    try:
        found = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        found = None
    if found is not None:
        if DEVICE_ID_RE.fullmatch(found):
            return found
        raise OSError(f"{path} does not hold a device id (12 hex digits): remove it to make one")
    made = secrets.token_hex(6)
    draft = home_dir / f".{DEVICE_ID_FILE}.{os.getpid()}"
    draft.write_text(made + "\n", encoding="ascii")
    try:
        os.link(draft, path)
        log.info("MQTT: this doorbell's device id is %s (kept in %s)", made, path)
    except FileExistsError:
        pass  # another process made it first: use that one
    finally:
        draft.unlink(missing_ok=True)
    return load_device_id(home_dir)


def viewer_url(settings: Settings) -> str | None:
    """The viewer's address for Home Assistant's "Visit" link, or None if it is loopback only."""
    viewer = settings.viewer
    host = viewer.hostnames[0] if viewer.hostnames else viewer.bind_host
    if host in WILDCARD_HOSTS:
        name = socket.gethostname().lower()
        host = name if "." in name else f"{name}.local"
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and address.is_loopback or host == "localhost":
            return None
        if address is not None and address.version == 6:
            host = f"[{host}]"
    return f"https://{host}:{viewer.bind_port}/"


@dataclass(frozen=True)
class Topics:
    availability: str
    doorbell: str
    motion: str
    camera: str
    disk_low: str
    disk_free: str
    last_clip: str
    snapshot: str
    event: str
    privacy_mode: str
    privacy_mode_set: str
    mute_chime: str
    mute_chime_set: str
    ha_status: str  # Home Assistant's birth message ("online" after it restarts)

    @classmethod
    def for_settings(cls, settings: Settings, device_id: str) -> "Topics":
        p = f"{settings.mqtt.topic_prefix}/{device_id}"
        return cls(f"{p}/availability", f"{p}/doorbell", f"{p}/motion", f"{p}/camera",
                   f"{p}/disk_low", f"{p}/disk_free", f"{p}/last_clip", f"{p}/snapshot",
                   f"{p}/event", f"{p}/privacy_mode", f"{p}/privacy_mode/set",
                   f"{p}/mute_chime", f"{p}/mute_chime/set",
                   f"{settings.mqtt.discovery_prefix}/status")

    def switch(self, name: str) -> tuple[str, str]:
        """(state topic, command topic) of the switch `name` (camera/notify/switches.py)."""
        return getattr(self, name), getattr(self, f"{name}_set")


def device_node(device_id: str) -> str:
    """The discovery node id, the device's identifier and the prefix of every unique id."""
    return f"doorbell_{device_id}"


def device(settings: Settings, device_id: str) -> dict:
    info = {
        "identifiers": [device_node(device_id)],
        "name": settings.camera.name,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": VERSION,
    }
    if (url := viewer_url(settings)) is not None:
        info["configuration_url"] = url
    return info


def _common(settings: Settings, topics: Topics, device_id: str, object_id: str,
            name: str) -> dict:
    return {
        "name": name,
        "unique_id": f"{device_node(device_id)}_{object_id}",
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device(settings, device_id),
        "origin": {"name": SOFTWARE, "sw_version": VERSION},
    }


def discovery_messages(settings: Settings, device_id: str,
                       switches: bool = False) -> list[tuple[str, str]]:
    """[(topic, JSON payload)] to publish retained; an empty payload removes an entity.
    `switches`: the privacy mode and mute chime switches (else removed)."""
    topics = Topics.for_settings(settings, device_id)
    node = device_node(device_id)
    root = settings.mqtt.discovery_prefix

    def topic(component: str, object_id: str) -> str:
        return f"{root}/{component}/{node}/{object_id}/config"

    def entity(object_id: str, name: str, **keys) -> dict:
        return _common(settings, topics, device_id, object_id, name) | keys | {"qos": 1}

    diagnostic = {"entity_category": "diagnostic"}
    on_off = {"payload_on": "ON", "payload_off": "OFF"}
    configs = {
        ("event", "doorbell"): entity(
            "doorbell", "Doorbell", state_topic=topics.doorbell, event_types=["ring"],
            device_class="doorbell"),
        ("binary_sensor", "motion"): entity(
            "motion", "Motion", state_topic=topics.motion, device_class="motion", **on_off),
        ("binary_sensor", "camera"): entity(
            "camera", "Camera", state_topic=topics.camera, device_class="connectivity",
            **on_off, **diagnostic),
        ("binary_sensor", "disk_low"): entity(
            "disk_low", "Disk space low", state_topic=topics.disk_low, device_class="problem",
            **on_off, **diagnostic),
        ("sensor", "disk_free"): entity(
            "disk_free", "Disk free", state_topic=topics.disk_free, device_class="data_size",
            unit_of_measurement="GB", state_class="measurement",
            value_template="{{ (value | int / 1000000000) | round(2) }}",
            suggested_display_precision=1, icon="mdi:harddisk", **diagnostic),
        ("sensor", "last_clip"): entity(
            "last_clip", "Last clip", state_topic=topics.last_clip,
            value_template="{{ value_json.start }}", device_class="timestamp",
            json_attributes_topic=topics.last_clip, icon="mdi:filmstrip"),
    }
    messages = [(topic(*key), json.dumps(config, sort_keys=True))
                for key, config in configs.items()]
    if settings.mqtt.snapshot_images:
        snapshot = _common(settings, topics, device_id, "snapshot", "Snapshot") | {
            "image_topic": topics.snapshot,
            "content_type": "image/jpeg",
        }
        messages.append((topic("image", "snapshot"), json.dumps(snapshot, sort_keys=True)))
    else:
        messages.append((topic("image", "snapshot"), ""))  # remove one left from before
    for object_id, name, icon in SWITCHES:
        state, command = topics.switch(object_id)
        config = entity(object_id, name, state_topic=state, command_topic=command,
                        payload_on="ON", payload_off="OFF", optimistic=False, retain=False,
                        device_class="switch", icon=icon)
        messages.append((topic("switch", object_id),
                         json.dumps(config, sort_keys=True) if switches else ""))
    legacy = node_id(settings.mqtt.topic_prefix)
    messages += [(f"{root}/{component}/{legacy}/{object_id}/config", "")
                 for component, object_id in LEGACY_ENTITIES]
    return messages
