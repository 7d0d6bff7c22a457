"""The settings model: one frozen dataclass per TOML section.

Validation is declared here and performed by `config.validation`, which reads each field's type
hint and its metadata:

    min, max          numeric bounds (int and float fields)
    min_len, max_len  length bounds (str fields)
    choices           the allowed values (str fields)
    parse             a function turning the raw TOML value into the field value (replaces the
                      type-based conversion); raises ValueError(requirement) when it can't
    check             a function called with the converted value; raises ValueError(requirement)

For a `tuple[X, ...]` field the TOML value is a list and all of the above apply to each item;
`max_items` bounds the length of the list itself.
`requirement` completes the sentence '"key" must be ...'.

To add a section: write one dataclass below and add one field on `Settings`. Validation, the error
messages and `Settings.defaults()` follow from that; then document its keys in default.toml (a
test keeps the two equal).
"""

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from doorbell.config.errors import ConfigError
from doorbell.config.validation import apply_overrides, parse_settings

# A polygon in normalised frame coordinates: (x, y) pairs in 0..1, 3 to 64 points enclosing an
# area; at most 16 per list. Normalised so that masks and zones survive a change of resolution.
Point = tuple[float, float]
Polygon = tuple[Point, ...]
MAX_POLYGONS = 16
MAX_POLYGON_POINTS = 64
# Below this (a fraction of the frame: under a pixel even at 3840x2160) a polygon covers nothing:
# its points lie on one line or on one spot. A mask like that would hide nothing.
MIN_POLYGON_AREA = 1e-7

# The viewer is LAN-only: loopback, RFC 1918, link-local and IPv6 unique-local. Also the default.
LAN_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fe80::/10",
    "fc00::/7",
)

_POLYGON = "a polygon: a list of at least 3 [x, y] points with x and y between 0 and 1"
_POLYGON_POINTS = f"a polygon of at most {MAX_POLYGON_POINTS} points"
_POLYGON_AREA = "a polygon that encloses an area, not points on one line or one spot"
_BIND = "HOST:PORT with a port between 1 and 65535 (an IPv6 address in brackets, e.g. [::1]:8080)"
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_BIND_FORM = re.compile(r"\[(?P<v6>[^\]]+)\]:(?P<p6>\d{1,5})|(?P<host>[^:\[\]]+):(?P<port>\d{1,5})")


def setting(default: Any, **constraints: Any) -> Any:
    """A dataclass field with a default and validation constraints (see the module docstring)."""
    return field(default=default, metadata=constraints)


def parse_polygon(raw: Any) -> Polygon:
    if not isinstance(raw, list | tuple) or len(raw) < 3:
        raise ValueError(_POLYGON)
    points = []
    for point in raw:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise ValueError(_POLYGON)
        # bool is an int subclass: refuse it like everywhere else.
        if not all(isinstance(c, int | float) and not isinstance(c, bool) and 0 <= c <= 1
                   for c in point):
            raise ValueError(_POLYGON)
        points.append((float(point[0]), float(point[1])))
    if len(points) > MAX_POLYGON_POINTS:
        raise ValueError(_POLYGON_POINTS)
    if hull_area(points) < MIN_POLYGON_AREA:
        raise ValueError(_POLYGON_AREA)
    return tuple(points)


def hull_area(points: Iterable[Point]) -> float:
    """The area of the convex hull of `points`: 0 exactly when they all lie on one line.

    The hull, not the polygon's own (signed) area: a figure-8 whose two loops cancel out still
    covers part of the frame when it is filled.
    """
    unique = sorted(set(points))
    if len(unique) < 3:
        return 0.0

    def turn(o: Point, a: Point, b: Point) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(ordered: list[Point]) -> list[Point]:  # Andrew's monotone chain
        chain: list[Point] = []
        for p in ordered:
            while len(chain) >= 2 and turn(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    hull = half(unique) + half(unique[::-1])
    return abs(sum(x1 * y2 - x2 * y1
                   for (x1, y1), (x2, y2) in zip(hull, hull[1:] + hull[:1], strict=True))) / 2


def is_host(value: str) -> bool:
    """True for an IP address or a DNS host name (no scheme, no port)."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(p) for p in value.split("."))


def split_bind(value: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ValueError(requirement) if malformed."""
    match = _BIND_FORM.fullmatch(value)
    if match is None:
        raise ValueError(_BIND)
    if match["v6"] is not None:
        host, port = match["v6"], int(match["p6"])
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(_BIND) from None
    else:
        host, port = match["host"], int(match["port"])
        if not is_host(host):
            raise ValueError(_BIND)
    if not 1 <= port <= 65535:
        raise ValueError(_BIND)
    return host, port


def check_lan_network(value: str) -> None:
    try:
        network = ipaddress.ip_network(value)
    except ValueError:
        raise ValueError("a network such as 192.168.1.0/24 (no host bits set)") from None
    # subnet_of, not is_private: ipaddress calls some huge ranges private, and "within one of the
    # LAN ranges" is the rule a reader can check by eye.
    lans = (ipaddress.ip_network(n) for n in LAN_NETWORKS)
    if not any(lan.version == network.version and network.subnet_of(lan) for lan in lans):
        raise ValueError(
            "a loopback, private (RFC 1918), link-local or IPv6 unique-local network because "
            "the viewer is LAN-only"
        )


def check_host(value: str) -> None:
    if not is_host(value):
        raise ValueError("a host name or IP address without scheme or port")


def check_total_bytes(value: int) -> None:
    # Below about 10 MB a limit would delete every clip as soon as it is written.
    if value != 0 and value < 10_000_000:
        raise ValueError("0 (no limit) or at least 10000000 bytes")


# -- notification targets: MQTT and ntfy, on the home network only ------------------------------

# What the recorder tells the household about (camera.events); ntfy sends the ones it is given.
NOTIFICATION_EVENTS = (
    "doorbell_pressed",
    "motion_started",
    "motion_ended",
    "clip_saved",
    "camera_lost",
    "camera_back",
    "disk_low",
    "privacy_mode",
)
_TOPIC = "an MQTT topic such as doorbell/front: no +, # or empty levels, at most 200 characters"
_HTTP_URL = "an http:// or https:// URL such as http://ntfy.lan:8080 (no user, query or fragment)"


def check_topic(value: str) -> None:
    levels = value.split("/")
    if not value or len(value) > 200 or "\0" in value or any(
            not level or "+" in level or "#" in level for level in levels):
        raise ValueError(_TOPIC)


def check_http_url(value: str) -> None:
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError for a port out of range
    except ValueError:
        raise ValueError(_HTTP_URL) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or \
            parts.password or parts.query or parts.fragment or port == 0 or \
            not is_host(parts.hostname):
        raise ValueError(_HTTP_URL)


def check_ntfy_topic(value: str) -> None:
    if not re.fullmatch(r"[-_A-Za-z0-9]{1,64}", value):
        raise ValueError("an ntfy topic: 1 to 64 letters, digits, - or _")


def outside_networks(address: str, networks: Iterable[str]) -> bool:
    """True if the IP `address` is in none of `networks` (IPv4-mapped IPv6 counts as IPv4)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not any(ip in ipaddress.ip_network(n) for n in networks)


def refuse_public_target(key: str, host: str, address: str,
                         networks: Iterable[str]) -> ConfigError:
    """The ConfigError for a notification target outside the home network (raise it)."""
    section = key.partition(".")[0]
    shown = f"resolves to {address}" if host != address else f"points at {address}"
    return ConfigError(
        f"{key} {shown}, outside the home network ({', '.join(networks)}, from "
        f"viewer.allowed_networks): notifications never leave the LAN unless you set "
        f"{section}.allow_public_targets = true.", key=key)


@dataclass(frozen=True, slots=True)
class CameraSettings:
    name: str = setting("Front door", min_len=1, max_len=64)
    # "synthetic", "picamera2", "/dev/videoN", "rtsp://..." or a file: the camera package decides.
    source: str = setting("synthetic", min_len=1)
    width: int = setting(1280, min=160, max=3840)
    height: int = setting(720, min=120, max=2160)
    fps: int = setting(15, min=1, max=60)
    # An RTSP camera's low-resolution substream to detect motion on ("": the recorded stream).
    detect_source: str = setting("")


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    masks: tuple[Polygon, ...] = setting((), parse=parse_polygon, max_items=MAX_POLYGONS)


@dataclass(frozen=True, slots=True)
class MotionSettings:
    # empty: the whole frame
    zones: tuple[Polygon, ...] = setting((), parse=parse_polygon, max_items=MAX_POLYGONS)
    detect_width: int = setting(320, min=80, max=1280)
    sensitivity: float = setting(0.5, min=0.0, max=1.0)  # higher = more sensitive
    min_area: float = setting(0.004, min=0.0001, max=0.5)  # fraction of the frame area
    trigger_frames: int = setting(3, min=1, max=30)
    # More than this fraction of the frame changing at once is a light change, not motion.
    light_change_fraction: float = setting(0.6, min=0.1, max=1.0)


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    pre_roll_s: float = setting(3.0, min=0, max=30)
    post_roll_s: float = setting(5.0, min=0, max=120)
    max_clip_s: float = setting(120.0, min=5, max=3600)
    doorbell_clip_s: float = setting(15.0, min=1, max=600)  # minimum length after a press
    preset: str = setting(
        "veryfast", choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
    )
    crf: int = setting(26, min=0, max=51)
    keyframe_interval_s: float = setting(1.0, min=0.2, max=10)
    fsync_interval_s: float = setting(2.0, min=0.1, max=10)


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    max_age_days: int = setting(30, min=0, max=3650)  # 0: no age limit
    max_total_bytes: int = setting(0, min=0, check=check_total_bytes)  # 0: no size limit
    min_free_bytes: int = setting(1_000_000_000, min=0)


@dataclass(frozen=True, slots=True)
class ViewerSettings:
    bind: str = setting("127.0.0.1:8080", check=split_bind)
    allowed_networks: tuple[str, ...] = setting(LAN_NETWORKS, check=check_lan_network)
    hostnames: tuple[str, ...] = setting((), check=check_host)  # extra names the device answers to
    idle_timeout_s: int = setting(900, min=60, max=86400)
    login_attempts_per_15min: int = setting(10, min=1, max=1000)

    @property
    def bind_host(self) -> str:
        """The host part of `bind`, without IPv6 brackets."""
        return split_bind(self.bind)[0]

    @property
    def bind_port(self) -> int:
        return split_bind(self.bind)[1]


@dataclass(frozen=True, slots=True)
class DoorbellSettings:
    # BCM pin numbers; TOML has no null, so an absent key means "no button" / "no chime".
    button_pin: int | None = setting(None, min=0, max=27)
    chime_pin: int | None = setting(None, min=0, max=27)
    debounce_s: float = setting(0.05, min=0, max=1)
    chime_s: float = setting(1.0, min=0, max=10)


@dataclass(frozen=True, slots=True)
class LiveSettings:
    fps: float = setting(2.0, min=0.2, max=15)
    jpeg_quality: int = setting(80, min=30, max=95)
    width: int = setting(640, min=160, max=1920)


# -- the replica: a ciphertext copy on an SFTP server on the home network -----------------------

_SFTP_URL = ("an sftp:// URL with a user and an absolute path, no password, such as "
             "sftp://doorbell@nas.lan:22/srv/doorbell")


def check_sftp_url(value: str) -> None:
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError for a port out of range
    except ValueError:
        raise ValueError(_SFTP_URL) from None
    if parts.scheme != "sftp" or not parts.hostname or not parts.username or parts.password \
            or parts.query or parts.fragment or not parts.path.startswith("/") or port == 0 \
            or not is_host(parts.hostname):
        raise ValueError(_SFTP_URL)


def check_absolute_path(value: str) -> None:
    if not value.startswith("/") or "\0" in value:
        raise ValueError("an absolute path such as /var/lib/doorbell-replica")


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    # The server paired with `doorbell replicate --pair`; absent: whatever was paired.
    target: str | None = setting(None, check=check_sftp_url)
    poll_interval_s: float = setting(0.5, min=0.1, max=10)
    # The replica's own retention, applied on the server by the replicator (the device's
    # retention never deletes there). 0: no limit.
    max_age_days: int = setting(90, min=0, max=3650)
    max_total_bytes: int = setting(0, min=0, check=check_total_bytes)
    # Where the replicator writes progress.json (its systemd StateDirectory).
    state_dir: str = setting("/var/lib/doorbell-replica", check=check_absolute_path)


@dataclass(frozen=True, slots=True)
class MqttSettings:
    enabled: bool = setting(False)
    # The broker; TOML has no null, so an absent key means "not set" (needed when enabled).
    host: str | None = setting(None, check=check_host)
    port: int = setting(1883, min=1, max=65535)
    tls: bool = setting(False)
    ca_file: str | None = setting(None, min_len=1)  # absent: the system's CA certificates
    username: str | None = setting(None, min_len=1, max_len=256)
    password_file: str | None = setting(None, min_len=1)  # the password is never in the config
    protocol: str = setting("3.1.1", choices=("3.1.1", "5"))
    topic_prefix: str = setting("doorbell", check=check_topic)
    discovery_prefix: str = setting("homeassistant", check=check_topic)
    snapshot_images: bool = setting(False)  # masked pictures at a ring and of each clip
    # Home Assistant's privacy mode and mute chime switches (command topics). Off by default:
    # any client the broker lets publish to <prefix>/<id>/privacy_mode/set could stop the
    # recording, so they are for a broker with an ACL (README, "Home Assistant").
    switches: bool = setting(False)
    allow_public_targets: bool = setting(False)

    def __post_init__(self) -> None:
        if self.enabled and self.host is None:
            raise ConfigError("mqtt.enabled = true needs mqtt.host (the broker's name or "
                              "address on the home network).", key="mqtt.enabled")
        if self.ca_file is not None and not self.tls:
            raise ConfigError("mqtt.ca_file is set but mqtt.tls is false: set mqtt.tls = "
                              "true to use it.", key="mqtt.ca_file")
        if self.password_file is not None and self.username is None:
            raise ConfigError("mqtt.password_file is set without mqtt.username.",
                              key="mqtt.password_file")


@dataclass(frozen=True, slots=True)
class NtfySettings:
    enabled: bool = setting(False)
    url: str | None = setting(None, check=check_http_url)  # the self-hosted server (needed)
    topic: str = setting("doorbell", check=check_ntfy_topic)
    click_url: str | None = setting(None, check=check_http_url)  # the viewer, for a tap
    token_file: str | None = setting(None, min_len=1)  # an ntfy access token, if it needs one
    events: tuple[str, ...] = setting(
        tuple(e for e in NOTIFICATION_EVENTS if e != "motion_ended"), choices=NOTIFICATION_EVENTS)
    allow_public_targets: bool = setting(False)

    def __post_init__(self) -> None:
        if self.enabled and self.url is None:
            raise ConfigError("ntfy.enabled = true needs ntfy.url (the ntfy server on the "
                              "home network).", key="ntfy.enabled")

    @property
    def host(self) -> str | None:
        return urlsplit(self.url).hostname if self.url else None


# -- the hub: a viewer over replica folders, one per camera ----------------------------------------

MAX_HUB_CAMERAS = 16
_CAMERA_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_CAMERAS = 'a table such as { front = "/srv/doorbell/front" }'


class CameraFolders(tuple):
    """The hub's cameras: (name, folder) pairs, in the order the config lists them."""

    def names(self) -> list[str]:
        return [name for name, _ in self]

    def folder(self, name: str) -> str:
        return dict(self)[name]


def parse_cameras(raw: Any) -> CameraFolders:
    if not isinstance(raw, dict) or not 1 <= len(raw) <= MAX_HUB_CAMERAS:
        raise ValueError(f"{_CAMERAS} naming 1 to {MAX_HUB_CAMERAS} cameras")
    pairs = []
    for name, folder in raw.items():
        if not _CAMERA_NAME.fullmatch(name):
            raise ValueError(f"{_CAMERAS} whose camera names are lower-case letters, digits, - "
                             f"or _ (at most 32), not {name[:40]!r}")
        # No NUL (it would cut the path short) nor any other control character (a newline would
        # split the one-sentence error that names a missing folder, and the log line).
        if not isinstance(folder, str) or not folder.startswith("/") or \
                not folder.isprintable():
            raise ValueError(f"{_CAMERAS} of absolute folders, and the folder of {name} is not one")
        pairs.append((name, folder))
    return CameraFolders(pairs)


@dataclass(frozen=True, slots=True)
class HubSettings:
    # TOML has no null, so an absent key means "not a hub": the viewer shows its own home.
    cameras: CameraFolders | None = setting(None, parse=parse_cameras)


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings; each field is one TOML section named like the field."""

    camera: CameraSettings = field(default_factory=CameraSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    motion: MotionSettings = field(default_factory=MotionSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    viewer: ViewerSettings = field(default_factory=ViewerSettings)
    doorbell: DoorbellSettings = field(default_factory=DoorbellSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    replica: ReplicaSettings = field(default_factory=ReplicaSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    ntfy: NtfySettings = field(default_factory=NtfySettings)
    hub: HubSettings = field(default_factory=HubSettings)

    def __post_init__(self) -> None:
        # LAN only (nothing leaves the home): a target given as an IP address is checked here, at
        # load; a name is resolved once when the recorder starts (camera.notify) and checked the
        # same way.
        networks = self.viewer.allowed_networks
        for key, host, section in (("mqtt.host", self.mqtt.host, self.mqtt),
                                   ("ntfy.url", self.ntfy.host, self.ntfy)):
            if not section.enabled or section.allow_public_targets or host is None:
                continue
            try:
                address = str(ipaddress.ip_address(host))
            except ValueError:
                continue  # a name: resolved at start
            if outside_networks(address, networks):
                raise refuse_public_target(key, host, address, networks)

    @classmethod
    def defaults(cls) -> "Settings":
        return cls()

    @classmethod
    def from_toml_text(cls, text: str, source: str = "<string>") -> "Settings":
        """Settings from TOML text; keys it leaves out keep their defaults."""
        return parse_settings(text, source, cls.defaults())

    def with_overrides(self, values: Mapping[str, Any], source: str = "command line") -> "Settings":
        """A copy with dotted keys replaced, validated like the file, e.g.
        `settings.with_overrides({"viewer.bind": "0.0.0.0:8443"}, source="--bind")`."""
        return apply_overrides(self, values, source)
