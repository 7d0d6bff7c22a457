"""A video file that is cut short or replaced while the recorder reads it is a camera lost.

The recorder seals the open clip, retries with back-off, and records again once the file can be
read (here: replaced by another video, of another size). Before, the file source raised its
"cannot open" ValueError out of the frame loop and the recorder died with a traceback.
"""

import logging
import os
import shutil
import threading

from doorbell.camera.filesource import VideoFileSource
from tests.recorder_home import video_file


class FastStop(threading.Event):
    """A stop event whose back-off waits return at once (and are recorded)."""

    def __init__(self):
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


class CutWhileRead:
    """The real file source; after `cut_after` frames someone truncates the file."""

    def __init__(self, source: VideoFileSource, cut_after: int):
        self.source, self.cut_after = source, cut_after

    def frames(self):
        for index, frame in enumerate(self.source.frames()):
            if index == self.cut_after:
                os.truncate(self.source.path, 100)
            yield frame

    def close(self):
        self.source.close()


def test_a_video_file_cut_short_while_recording_is_a_lost_camera(home, tmp_path, caplog):
    path = tmp_path / "door.avi"
    shutil.copy(video_file("vtest.avi"), path)  # people walking from the first second
    opens = []

    def open_source():
        opens.append(len(opens))
        if len(opens) == 1:  # looping, as `doorbell record --source FILE` reads it
            return CutWhileRead(VideoFileSource(path, loop=True), cut_after=40)
        if len(opens) == 3:  # meanwhile the file was replaced by another video
            shutil.copy(video_file("tree.avi"), path)
        return VideoFileSource(path)  # the second open fails: the file is 100 bytes

    stop = FastStop()
    caplog.set_level(logging.INFO, logger="doorbell.recorder")

    recorder = home.record(open_source, stop=stop)  # until the replacement's end

    assert len(opens) == 3
    assert stop.waits == [1.0, 2.0]  # lost, then not openable: back-off doubles
    messages = [r.getMessage() for r in caplog.records]
    lost = [m for m in messages if m.startswith("camera lost")]
    assert len(lost) == 1 and str(path) in lost[0] and "\n" not in lost[0], messages
    assert sum("cannot open the camera" in m for m in messages) == 1, messages
    # (the test's wall clock stands still, so the clips are told apart by their frame size)
    clips = {c.meta["width"]: c for c in home.clips()}
    assert sorted(clips) == [320, 768]  # one from each file
    cut = clips[768]
    assert cut.state == "complete"  # sealed when the file went, not left partial
    # it ends where the cut file stopped giving frames (a few after the cut: read-ahead)
    assert 3.0 < cut.meta["duration_s"] < 10.0
    assert clips[320].state == "complete"  # recording resumed from the new file
    assert recorder.stats.camera == "ok"
