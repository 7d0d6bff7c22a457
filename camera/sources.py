"""Turn a `--source` SPEC into a plan: which pipeline records it, and where presses come from.

The synthetic scene, video files and V4L2 webcams are FrameSources recorded by the
SoftwarePipeline (mask, PyAV H.264, packet ring); picamera2 has its own pipeline (the camera's
encoder, its CircularOutput2 ring); an RTSP camera's own H.264 is recorded as it comes by the
PassthroughPipeline (re-encoded only while a privacy mask is in force).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from doorbell.config import Settings

from .frames import FrameSource
from .pipeline import VideoPipeline
from .presses import NoButton, PressSource, ScriptedPresses


@dataclass
class SourcePlan:
    """How to (re)open the camera as a pipeline, and where doorbell presses come from."""

    open: Callable[[Settings], VideoPipeline]  # called with the settings in force, each time
    presses: PressSource
    description: str


def software_plan(open_source: Callable[[], FrameSource], presses: PressSource,
                  description: str) -> SourcePlan:
    """A plan recording `open_source()`'s frames with the software pipeline."""
    from .software import SoftwarePipeline

    return SourcePlan(lambda settings: SoftwarePipeline(open_source(), settings, description),
                      presses, description)


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
        return software_plan(open_synthetic, presses, "the built-in synthetic doorstep scene")
    if spec == "picamera2":
        from .picamera import PiCameraPipeline, require_picamera2  # picamera2: this path only

        require_picamera2()
        return SourcePlan(PiCameraPipeline, NoButton(), "the Raspberry Pi camera (picamera2)")
    if spec.startswith("/dev/video"):
        from .capture import OpenCVCapture

        return software_plan(
            lambda: OpenCVCapture(spec, camera.width, camera.height, camera.fps), NoButton(),
            f"V4L2 camera {spec}",
        )
    if spec.startswith(("rtsp://", "rtsps://")):
        return rtsp_plan(spec, settings)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{spec!r} is not a camera or a video file")
    from .filesource import VideoFileSource

    return software_plan(
        lambda: VideoFileSource(path, loop=not until_eof, realtime=not until_eof), NoButton(),
        f"video file {path.name}",
    )


def rtsp_plan(url: str, settings: Settings) -> SourcePlan:
    """An RTSP camera on the LAN, recorded without re-encoding while no mask is drawn."""
    from .capture import check_lan_url, redact_url
    from .demux import H264Demuxer
    from .passthrough import PassthroughPipeline

    check_lan_url(url, settings.viewer.allowed_networks)
    description = f"RTSP camera {redact_url(url)}"
    return SourcePlan(
        lambda current: PassthroughPipeline(H264Demuxer(url), current, description),
        NoButton(), description)
