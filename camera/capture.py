"""A V4L2 device or an RTSP stream on the LAN, through OpenCV's VideoCapture.

A read that fails means the camera vanished (unplugged, stream dropped): `frames()` raises
SourceLost and the recorder reopens with back-off. An RTSP host must resolve to an address in
the allowed networks: the recorder never opens a connection outside the home.
"""

import ipaddress
import socket
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import cv2

from .frames import Frame, SourceLost


class CaptureError(ValueError):
    """A camera spec that cannot be used."""


def redact_url(url: str) -> str:
    """`url` without its user name and password (rtsp://***@host/path)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def check_lan_url(url: str, allowed_networks: Sequence[str]) -> str:
    """Resolve the URL's host once and refuse it unless every address is on the LAN."""
    host = urlsplit(url).hostname
    if not host:
        raise CaptureError(f"{redact_url(url)!r} has no host")
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise CaptureError(f"cannot resolve the camera host {host!r}: {exc.strerror}") from None
    networks = [ipaddress.ip_network(n) for n in allowed_networks]
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not any(address in network for network in networks):
            raise CaptureError(
                f"the camera host {host!r} resolves to {address}, outside the home network: "
                "refusing to connect"
            )
    return url


class OpenCVCapture:
    def __init__(self, spec: str, width: int, height: int, fps: int):
        target: int | str = spec
        if spec.startswith("/dev/video") and spec.removeprefix("/dev/video").isdigit():
            target = int(spec.removeprefix("/dev/video"))
        self._spec = spec
        self._capture = cv2.VideoCapture(target, cv2.CAP_V4L2 if isinstance(target, int)
                                         else cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise SourceLost(f"cannot open camera {spec}")
        if isinstance(target, int):
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            self._capture.set(cv2.CAP_PROP_FPS, fps)
        self._start_ns = time.monotonic_ns()

    def frames(self) -> Iterator[Frame]:
        while True:
            ok, image = self._capture.read()
            if not ok or image is None:
                raise SourceLost(f"no frame from {self._spec}")
            yield Frame(image, (time.monotonic_ns() - self._start_ns) // 1000)

    def close(self) -> None:
        self._capture.release()
