"""Turn a `--source` SPEC into a frame source (and the presses that come with it)."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from doorbell.config import Settings

from .frames import FrameSource
from .presses import NoButton, PressSource, ScriptedPresses


@dataclass
class SourcePlan:
    """How to (re)open the camera, and where doorbell presses come from."""

    open: Callable[[], FrameSource]
    presses: PressSource
    description: str


def plan_source(spec: str, settings: Settings, until_eof: bool = False) -> SourcePlan:
    camera = settings.camera
    if spec == "synthetic":
        from .synthetic import SyntheticScene

        probe = SyntheticScene(64, 48, camera.fps)  # cheap: for the script's presses and length

        def open_synthetic() -> FrameSource:
            return SyntheticScene(camera.width, camera.height, camera.fps,
                                  realtime=not until_eof,
                                  duration_s=None if not until_eof else probe.period_s)

        period_us = None if until_eof else round(probe.period_s * 1_000_000)
        presses = ScriptedPresses(probe.doorbell_presses_us(), period_us)
        return SourcePlan(open_synthetic, presses, "the built-in synthetic doorstep scene")
    if spec == "picamera2":
        from .picamera import plan_picamera2  # imports picamera2 itself, on this path only

        return plan_picamera2(settings)
    if spec.startswith("/dev/video"):
        from .capture import OpenCVCapture

        return SourcePlan(
            lambda: OpenCVCapture(spec, camera.width, camera.height, camera.fps), NoButton(),
            f"V4L2 camera {spec}",
        )
    if spec.startswith(("rtsp://", "rtsps://")):
        from .capture import OpenCVCapture, check_lan_url

        check_lan_url(spec, settings.viewer.allowed_networks)
        return SourcePlan(
            lambda: OpenCVCapture(spec, camera.width, camera.height, camera.fps), NoButton(),
            "RTSP camera",
        )
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{spec!r} is not a camera or a video file")
    from .filesource import VideoFileSource

    return SourcePlan(
        lambda: VideoFileSource(path, loop=not until_eof, realtime=not until_eof), NoButton(),
        f"video file {path.name}",
    )
