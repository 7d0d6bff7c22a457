"""The camera loop: open the camera, hand its frames to the recorder, reopen it when it fails.

A camera that cannot be opened, or vanishes mid-stream (SourceLost), is reopened with back-off
(1 s, doubling to 30 s; back to 1 s once frames arrive again); the recorder seals the open clip
first (`detach`). While it waits, the loop keeps the recorder following its settings, so a fixed
camera.source restarts the recorder at once instead of after the back-off. The systemd watchdog
is fed only while frames really arrive.
"""

import threading
import time
from collections.abc import Callable
from typing import Protocol

from doorbell.config import Settings

from .frames import Frame, SourceLost
from .pipeline import VideoPipeline
from .watchdog import SystemdWatchdog

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


class FrameConsumer(Protocol):
    """What the loop drives (camera/recorder.py's Recorder)."""

    settings: Settings
    restart_sections: list[str]  # not empty: stop, so the command restarts with new settings

    def attach(self, pipeline: VideoPipeline) -> None:
        """Record from `pipeline` from its next frame on."""

    def process(self, frame: Frame) -> None: ...

    def detach(self) -> None:
        """Seal the open clip and close the pipeline (camera lost, stopping)."""

    def check_settings(self) -> None: ...

    def camera_state(self, state: str, message: str) -> None:
        """The camera is "ok" or "lost", and why (status, log, notifications)."""


class CameraLoop:
    def __init__(self, consumer: FrameConsumer, watchdog: SystemdWatchdog,
                 follow_settings: bool = True, clock: Callable[[], float] = time.monotonic):
        self.consumer = consumer
        self.watchdog = watchdog
        self.follow_settings = follow_settings  # check the settings during a back-off
        self._clock = clock
        self._frames_fed = 0  # by the pipeline now open

    def run(self, open_pipeline: Callable[[Settings], VideoPipeline], stop: threading.Event,
            until_eof: bool = False) -> None:
        """Until `stop` is set, a restart is due, or (with `until_eof`) the source ends."""
        consumer, backoff_s = self.consumer, FIRST_BACKOFF_S
        self.watchdog.ready()
        while not self._stopping(stop):
            try:
                pipeline = open_pipeline(consumer.settings)
                consumer.attach(pipeline)
            except (OSError, ValueError, SourceLost) as exc:
                problem = f"cannot open the camera: {exc}"
            else:
                consumer.camera_state("ok", "camera open")
                try:
                    if self._feed(pipeline, stop, until_eof):
                        return
                    continue
                except SourceLost as exc:
                    problem = f"camera lost: {exc}"
                    if self._frames_fed:
                        backoff_s = FIRST_BACKOFF_S
                finally:
                    consumer.detach()
            consumer.camera_state("lost", f"{problem}; retrying in {backoff_s:.0f} s")
            self._wait(stop, backoff_s)
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)

    def _feed(self, pipeline: VideoPipeline, stop: threading.Event, until_eof: bool) -> bool:
        """Hand the frames over until stopping (False) or the source's end (True with
        `until_eof`; SourceLost otherwise: a camera does not end)."""
        self._frames_fed = 0
        for frame in pipeline.frames():
            self.consumer.process(frame)
            self.watchdog.frame_arrived()
            self._frames_fed += 1
            self.consumer.check_settings()
            if self._stopping(stop):
                return False
        if not until_eof:
            raise SourceLost("the source ended")
        return True

    def _stopping(self, stop: threading.Event) -> bool:
        return stop.is_set() or bool(self.consumer.restart_sections)

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        """Wait out a back-off, following the settings once a second."""
        if not self.follow_settings:
            stop.wait(seconds)
            return
        deadline = self._clock() + seconds
        while not self._stopping(stop) and (left_s := deadline - self._clock()) > 0:
            stop.wait(min(left_s, 1.0))
            self.consumer.check_settings()
