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
    if camera.detect_source:
        raise ValueError("camera.detect_source works with an rtsp:// camera only; "
                         f"{spec!r} is not one")
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{spec!r} is not a camera or a video file")
    from .filesource import VideoFileSource

    return software_plan(
        lambda: VideoFileSource(path, loop=not until_eof, realtime=not until_eof), NoButton(),
        f"video file {path.name}",
    )


def rtsp_plan(url: str, settings: Settings) -> SourcePlan:
    """An RTSP camera on the LAN, recorded without re-encoding while no mask is drawn; with
    camera.detect_source, motion is detected on that substream."""
    from .capture import check_lan_url, redact_url

    check_lan_url(url, settings.viewer.allowed_networks)
    description = f"RTSP camera {redact_url(url)}"
    detect_url = settings.camera.detect_source
    if detect_url:
        if not detect_url.startswith(("rtsp://", "rtsps://")):
            raise ValueError(f"camera.detect_source {redact_url(detect_url)!r} is not an "
                             "rtsp:// URL")
        check_lan_url(detect_url, settings.viewer.allowed_networks)
        description += f", motion on {redact_url(detect_url)}"
    return SourcePlan(lambda current: open_rtsp(url, detect_url, current, description),
                      NoButton(), description)


def open_rtsp(url: str, detect_url: str, settings: Settings, description: str) -> VideoPipeline:
    """Connect to the camera's main stream (and its substream, if given)."""
    from .demux import H264Demuxer
    from .passthrough import PassthroughPipeline
    from .substream import DetectStream

    main = H264Demuxer(url)
    if not detect_url:
        return PassthroughPipeline(main, settings, description)
    try:
        substream = H264Demuxer(detect_url)
    except BaseException:
        main.close()
        raise
    return PassthroughPipeline(main, settings, description,
                               DetectStream(substream, f"the substream {substream.description}"))
