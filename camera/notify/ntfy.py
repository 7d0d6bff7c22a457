"""ntfy: a short text per event to a self-hosted ntfy server on the home network.

ntfy's publish API: `POST <url>/<topic>` with the message as the body and the headers `Title`,
`Priority` (1 min .. 5 max), `Tags` (comma-separated; emoji short codes show as emojis) and
`Click` (opened when the notification is tapped); `Authorization: Bearer <token>` for a server
with access control. Non-ASCII header values are sent RFC 2047-encoded, which ntfy decodes.

No picture is ever sent: a doorbell press says that someone rang and when, nothing more.

Where it connects: without TLS, to the address resolved (and checked to be on the home network)
at start, with the server's name in the Host header; with TLS, by name (the certificate must
match) and the connected address is checked again before anything is sent.
"""

import base64
import http.client
import logging
import ssl
import time
from urllib.parse import urlsplit

from doorbell.config import Settings
from doorbell.config.model import outside_networks

from ..events import DeliveryRefused, Event
from .mqtt import read_secret

log = logging.getLogger("doorbell.ntfy")

TIMEOUT_S = 5.0

# event type -> (priority, tags, title); the title gets the camera's name in front.
STYLE: dict[str, tuple[int, str, str]] = {
    "doorbell_pressed": (4, "bell", "Someone rang the doorbell"),
    "motion_started": (3, "walking", "Motion"),
    "motion_ended": (1, "zzz", "Motion ended"),
    "clip_saved": (2, "movie_camera", "Clip saved"),
    "camera_lost": (4, "warning", "Camera lost"),
    "camera_back": (3, "white_check_mark", "Camera back"),
    "disk_low": (4, "floppy_disk", "Disk almost full"),
    "privacy_mode": (4, "see_no_evil", "Privacy mode"),
}


def local_clock(epoch_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch_s))


def describe(event: Event, camera_name: str) -> tuple[str, str, int, list[str]]:
    """(title, message, priority, tags) for one event."""
    priority, tag, title = STYLE[event.type]
    data, at = event.data, local_clock(event.time)
    if event.type == "doorbell_pressed":
        message = f"The doorbell rang at {at}."
    elif event.type == "motion_started":
        cause = "a doorbell press" if data.get("trigger") == "doorbell" else "motion"
        message = f"Recording since {at} ({cause})."
    elif event.type == "motion_ended":
        message = f"Quiet again since {at}."
    elif event.type == "clip_saved":
        kind = {"doorbell": "Doorbell", "motion": "Motion"}.get(data.get("trigger"), "A")
        duration = data.get("duration_s")
        length = f", {duration:.0f} s" if isinstance(duration, int | float) else ""
        message = f"{kind} clip saved at {at}{length}."
    elif event.type == "disk_low":
        free = data.get("free_bytes")
        room = f" ({free / 1e9:.1f} GB free)" if isinstance(free, int) else ""
        message = f"The disk is almost full{room}: the oldest clips are being deleted."
    elif event.type == "privacy_mode":
        on = data.get("on") is True
        title = f"Privacy mode {'on' if on else 'off'}"
        message = (f"Privacy mode was turned on at {at}: no recording, no live view." if on
                   else f"Privacy mode was turned off at {at}: recording again.")
    else:
        message = str(data.get("message") or title) + f" ({at})."
    return f"{camera_name}: {title}", message, priority, ["doorbell", tag]


def header_value(text: str) -> str:
    """ASCII as is; anything else RFC 2047-encoded (ntfy decodes it)."""
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode("ascii") + "?="


class NtfySink:
    name = "ntfy"

    def __init__(self, settings: Settings, address: str | None = None,
                 timeout_s: float = TIMEOUT_S):
        self.config = settings.ntfy
        self.camera_name = settings.camera.name
        self.networks = settings.viewer.allowed_networks
        self.url = urlsplit(self.config.url)
        self.address = address
        self.timeout_s = timeout_s
        self.token = read_secret(self.config.token_file, "ntfy.token_file") \
            if self.config.token_file else None
        self.sent = 0

    def accepts(self, kind: str) -> bool:
        return kind in self.config.events

    def start(self) -> None:
        log.info("ntfy: sending %s to %s/%s", ", ".join(self.config.events),
                 self.config.url.rstrip("/"), self.config.topic)

    def ready(self, timeout_s: float) -> bool:
        return True

    def click(self, event: Event) -> str | None:
        base = self.config.click_url
        if not base:
            return None
        if event.type == "clip_saved" and event.data.get("clip_id"):
            return base.rstrip("/") + "/clips/" + str(event.data["clip_id"])
        return base

    def request(self, event: Event) -> tuple[str, dict[str, str], bytes]:
        """(path, headers, body) of the POST for `event`."""
        title, message, priority, tags = describe(event, self.camera_name)
        headers = {
            "Title": header_value(title),
            "Priority": str(priority),
            "Tags": ",".join(tags),
            "Content-Type": "text/plain; charset=utf-8",
            "Host": self.url.netloc,
        }
        click = self.click(event)
        if click:
            headers["Click"] = click
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        path = self.url.path.rstrip("/") + "/" + self.config.topic
        return path, headers, message.encode("utf-8")

    def deliver(self, event: Event) -> None:
        path, headers, body = self.request(event)
        tls = self.url.scheme == "https"
        port = self.url.port or (443 if tls else 80)
        if tls:
            connection = http.client.HTTPSConnection(
                self.url.hostname, port, timeout=self.timeout_s,
                context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(self.address or self.url.hostname, port,
                                                    timeout=self.timeout_s)
        try:
            connection.connect()
            peer = connection.sock.getpeername()[0]
            if not self.config.allow_public_targets and outside_networks(peer, self.networks):
                raise DeliveryRefused(f"{self.url.hostname} is now at {peer}, outside the "
                                      f"home network: not sending")
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(64 * 1024)
        finally:
            connection.close()
        if response.status == 429 or response.status >= 500:
            raise ConnectionError(f"ntfy answered HTTP {response.status} {response.reason}")
        if response.status >= 300:
            raise DeliveryRefused(f"ntfy answered HTTP {response.status} {response.reason}")
        self.sent += 1

    def close(self) -> None:
        pass
