"""The camera loop on its own: back-off, recovery, the end of a file, a restart, the watchdog."""

import threading

import numpy as np
import pytest

from doorbell.camera.frames import Frame, SourceLost
from doorbell.camera.loop import CameraLoop
from doorbell.config import Settings


class Waits(threading.Event):
    """A stop event whose back-off waits return at once and are recorded."""

    def __init__(self, stop_after: int):
        super().__init__()
        self.waits: list[float] = []
        self.stop_after = stop_after

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) >= self.stop_after:
            self.set()
        return self.is_set()


class Camera:
    """A pipeline that yields `frames` frames and then vanishes, or ends (`ends=True`)."""

    def __init__(self, frames: int, ends: bool = False):
        self.count, self.ends, self.closed = frames, ends, False

    def frames(self):
        for index in range(self.count):
            yield Frame(np.zeros((4, 4, 3), np.uint8), index * 66_667)
        if not self.ends:
            raise SourceLost("the camera was unplugged")

    def close(self):
        self.closed = True


class Consumer:
    def __init__(self, restart_after: int | None = None):
        self.settings = Settings()
        self.restart_sections: list[str] = []
        self.events: list[str] = []
        self.frames = 0
        self.restart_after = restart_after

    def attach(self, pipeline):
        self.events.append("attach")

    def process(self, frame):
        self.frames += 1

    def detach(self):
        self.events.append("detach")

    def check_settings(self):
        if self.restart_after is not None and self.frames >= self.restart_after:
            self.restart_sections = ["camera"]

    def camera_state(self, state, message):
        self.events.append(f"{state}: {message}")


class Watchdog:
    def __init__(self):
        self.ready_calls, self.frames = 0, 0

    def ready(self):
        self.ready_calls += 1

    def frame_arrived(self):
        self.frames += 1


def test_a_camera_that_cannot_be_opened_backs_off_doubling_up_to_30_s():
    consumer, stop = Consumer(), Waits(stop_after=8)

    def cannot_open(settings):
        raise OSError("No such device")

    CameraLoop(consumer, Watchdog(), follow_settings=False).run(cannot_open, stop)

    assert stop.waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert consumer.events[0] == "lost: cannot open the camera: No such device; retrying in 1 s"
    assert "attach" not in consumer.events


def test_frames_arriving_again_reset_the_back_off_and_the_clip_is_sealed_each_time():
    consumer, stop, watchdog = Consumer(), Waits(stop_after=4), Watchdog()
    opened = []

    def open_pipeline(settings):
        opened.append(Camera(frames=5 if len(opened) == 2 else 0))
        return opened[-1]

    CameraLoop(consumer, watchdog, follow_settings=False).run(open_pipeline, stop)

    # no frames twice (1 s, 2 s), then frames: back to 1 s, then no frames again: 2 s
    assert stop.waits == [1.0, 2.0, 1.0, 2.0]
    assert all(camera.closed is False for camera in opened)  # the consumer closes pipelines
    assert consumer.events.count("attach") == consumer.events.count("detach") == 4
    assert "lost: camera lost: the camera was unplugged; retrying in 1 s" in consumer.events
    assert watchdog.ready_calls == 1 and watchdog.frames == consumer.frames == 5


def test_the_end_of_a_file_ends_the_run_only_when_asked():
    consumer = Consumer()
    CameraLoop(consumer, Watchdog()).run(lambda s: Camera(3, ends=True), threading.Event(),
                                         until_eof=True)
    assert consumer.events == ["attach", "ok: camera open", "detach"]

    consumer, stop = Consumer(), Waits(stop_after=1)
    CameraLoop(consumer, Watchdog(), follow_settings=False).run(
        lambda s: Camera(3, ends=True), stop)
    assert consumer.events[-1] == "lost: camera lost: the source ended; retrying in 1 s"


@pytest.mark.parametrize("follow_settings", [True, False])
def test_a_restart_ends_the_run_after_sealing_the_clip(follow_settings):
    consumer = Consumer(restart_after=2)
    CameraLoop(consumer, Watchdog(), follow_settings).run(lambda s: Camera(100),
                                                          threading.Event())
    assert consumer.frames == 2 and consumer.events[-1] == "detach"


def test_settings_are_followed_during_a_back_off_so_a_fix_applies_at_once():
    consumer, stop = Consumer(), threading.Event()
    checks = []

    def check():
        checks.append(1)
        if len(checks) == 2:
            consumer.restart_sections = ["camera"]

    consumer.check_settings = check
    clock = iter(range(100)).__next__  # a second per look: the 30 s back-off is never slept

    def cannot_open(settings):
        raise OSError("No such device")

    CameraLoop(consumer, Watchdog(), clock=lambda: float(clock())).run(cannot_open, stop)
    assert len(checks) == 2 and consumer.restart_sections == ["camera"]
