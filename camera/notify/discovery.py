"""Home Assistant MQTT discovery: the doorbell as one device with a few entities.

    <discovery_prefix>/event/<node>/doorbell/config          event, event_types ["press"]
    <discovery_prefix>/binary_sensor/<node>/motion/config    binary_sensor, device_class motion
    <discovery_prefix>/sensor/<node>/last_clip/config        sensor, device_class timestamp
    <discovery_prefix>/image/<node>/snapshot/config          image (only with snapshot_images)

and the topics the entities read, under `topic_prefix`:

    <prefix>/availability   "online" / "offline" (retained; "offline" is the last will)
    <prefix>/doorbell       {"event_type": "press", "time": ...} per press (not retained)
    <prefix>/motion         "ON" / "OFF" (retained)
    <prefix>/last_clip      {"clip_id", "trigger", "duration_s", "start", "time"} (retained)
    <prefix>/snapshot       the last clip's thumbnail, JPEG bytes, masks burnt in (not retained)
    <prefix>/event          every event as JSON, for automations (not retained)

Discovery messages are retained, so Home Assistant finds the device after either side restarts;
they are sent again on every connect and when Home Assistant announces itself online on
`<discovery_prefix>/status`. With snapshot_images off, an empty retained message on the image's
discovery topic removes an image entity left from before.
"""

import json
import re
from dataclasses import dataclass

from doorbell.config import Settings

MANUFACTURER = "Doorbell (self-hosted, privacy-first)"
MODEL = "Doorbell camera"
SOFTWARE = "doorbell"
VERSION = "0.1.0"
ONLINE, OFFLINE = "online", "offline"


def node_id(topic_prefix: str) -> str:
    """The discovery node id (letters, digits, _ and -): the topic prefix, sanitised."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", topic_prefix)


@dataclass(frozen=True)
class Topics:
    availability: str
    doorbell: str
    motion: str
    last_clip: str
    snapshot: str
    event: str
    ha_status: str  # Home Assistant's birth message ("online" after it restarts)

    @classmethod
    def for_settings(cls, settings: Settings) -> "Topics":
        p = settings.mqtt.topic_prefix
        return cls(f"{p}/availability", f"{p}/doorbell", f"{p}/motion", f"{p}/last_clip",
                   f"{p}/snapshot", f"{p}/event", f"{settings.mqtt.discovery_prefix}/status")


def device(settings: Settings) -> dict:
    node = node_id(settings.mqtt.topic_prefix)
    return {
        "identifiers": [f"doorbell_{node}"],
        "name": settings.camera.name,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": VERSION,
    }


def _common(settings: Settings, topics: Topics, object_id: str, name: str) -> dict:
    node = node_id(settings.mqtt.topic_prefix)
    return {
        "name": name,
        "unique_id": f"doorbell_{node}_{object_id}",
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device(settings),
        "origin": {"name": SOFTWARE, "sw_version": VERSION},
    }


def discovery_messages(settings: Settings) -> list[tuple[str, str]]:
    """[(topic, JSON payload)] to publish retained; an empty payload removes an entity."""
    topics = Topics.for_settings(settings)
    node = node_id(settings.mqtt.topic_prefix)
    root = settings.mqtt.discovery_prefix

    def topic(component: str, object_id: str) -> str:
        return f"{root}/{component}/{node}/{object_id}/config"

    doorbell = _common(settings, topics, "doorbell", "Doorbell") | {
        "state_topic": topics.doorbell,
        "event_types": ["press"],
        "device_class": "doorbell",
        "qos": 1,
    }
    motion = _common(settings, topics, "motion", "Motion") | {
        "state_topic": topics.motion,
        "device_class": "motion",
        "payload_on": "ON",
        "payload_off": "OFF",
        "qos": 1,
    }
    last_clip = _common(settings, topics, "last_clip", "Last clip") | {
        "state_topic": topics.last_clip,
        "value_template": "{{ value_json.start }}",
        "device_class": "timestamp",
        "json_attributes_topic": topics.last_clip,
        "icon": "mdi:filmstrip",
        "qos": 1,
    }
    messages = [
        (topic("event", "doorbell"), json.dumps(doorbell, sort_keys=True)),
        (topic("binary_sensor", "motion"), json.dumps(motion, sort_keys=True)),
        (topic("sensor", "last_clip"), json.dumps(last_clip, sort_keys=True)),
    ]
    if settings.mqtt.snapshot_images:
        snapshot = _common(settings, topics, "snapshot", "Snapshot") | {
            "image_topic": topics.snapshot,
            "content_type": "image/jpeg",
        }
        messages.append((topic("image", "snapshot"), json.dumps(snapshot, sort_keys=True)))
    else:
        messages.append((topic("image", "snapshot"), ""))  # remove one left from before
    return messages
