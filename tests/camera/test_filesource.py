"""A video file as a camera: frames with pts from the frame rate, looping, one clear error."""

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from doorbell.camera.filesource import SourceError, VideoFileSource
from doorbell.camera.frames import FrameSource, SourceLost

VIDEO_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "video"


@pytest.fixture
def ten_frames(tmp_path: Path) -> Path:
    """A 10 fps MJPG clip whose frame i is uniformly grey level 20 * i."""
    path = tmp_path / "ten.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_frames_carry_pts_from_their_index_and_the_frame_rate(ten_frames):
    source = VideoFileSource(ten_frames)
    frames = list(source.frames())

    assert isinstance(source, FrameSource)
    assert (source.width, source.height, source.fps) == (64, 48, 10.0)
    assert [f.pts_us for f in frames] == [i * 100_000 for i in range(10)]
    assert [round(float(f.image.mean()) / 20) for f in frames] == list(range(10))
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8


def test_looping_starts_over_with_timestamps_still_counting_up(ten_frames):
    source = VideoFileSource(ten_frames, loop=True)
    frames = source.frames()
    first_25 = [next(frames) for _ in range(25)]
    source.close()

    assert [round(float(f.image.mean()) / 20) for f in first_25[8:13]] == [8, 9, 0, 1, 2]
    assert [f.pts_us for f in first_25] == [i * 100_000 for i in range(25)]
    assert list(frames) == []  # closed: the iterator ends


def test_realtime_pacing_still_yields_every_frame(ten_frames):
    assert len(list(VideoFileSource(ten_frames, realtime=True).frames())) == 10


def _bad_file(directory: Path, kind: str) -> Path:
    if kind == "directory":
        return directory
    path = directory / f"{kind}.mp4"
    if kind == "junk":
        path.write_bytes(b"this is not a video" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    return path  # "missing": never created


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "no such file"),
        ("directory", "it is not a regular file"),
        ("junk", "not a video OpenCV can decode"),
        ("empty", "not a video OpenCV can decode"),
    ],
)
def test_a_file_that_cannot_be_read_gives_one_clear_sentence(tmp_path, kind, reason):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(SourceError) as error:
        VideoFileSource(path)

    message = str(error.value)
    assert message == f"cannot open video file {path}: {reason}"
    assert "\n" not in message
    assert isinstance(error.value, ValueError)  # callers may treat it as a bad argument


@pytest.mark.skipif(not VIDEO_DIR.is_dir(), reason=f"test videos not found at {VIDEO_DIR}")
def test_the_shared_test_video_reads_completely():
    source = VideoFileSource(VIDEO_DIR / "vtest.avi")
    count = 0
    for count, frame in enumerate(source.frames(), start=1):  # noqa: B007 - the count is the point
        assert frame.image.shape == (576, 768, 3)
    assert count == 795
    assert frame.pts_us == round(794 * 1e6 / source.fps)


# -- a file that becomes unreadable while it is read: a camera lost, not a traceback -------------


def frames_until_lost(frames, limit: int = 2000) -> int:
    """Read on until the source raises; fail (not hang) if it goes on past `limit` frames."""
    for count, _ in enumerate(frames):
        assert count < limit, "the source went on reading a file that is no longer there"
    raise AssertionError("the source ended instead of raising")


@pytest.mark.skipif(not VIDEO_DIR.is_dir(), reason=f"test videos not found at {VIDEO_DIR}")
def test_a_looping_file_cut_short_while_read_is_a_lost_camera(tmp_path):
    path = tmp_path / "door.avi"
    shutil.copy(VIDEO_DIR / "tree.avi", path)  # big enough not to sit in FFmpeg's buffer
    source = VideoFileSource(path, loop=True)
    frames = source.frames()
    for _ in range(30):
        next(frames)
    os.truncate(path, 100)  # cut to its first bytes while being read

    with pytest.raises(SourceLost) as lost:
        frames_until_lost(frames)

    assert str(lost.value) == (f"cannot open video file {path}: not a video OpenCV can "
                               "decode any more")
    assert not isinstance(lost.value, ValueError)  # not a bad argument: the recorder retries
    source.close()


def test_a_file_replaced_by_one_of_another_size_is_a_lost_camera(ten_frames, tmp_path):
    other = tmp_path / "other.avi"
    writer = cv2.VideoWriter(str(other), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for _ in range(5):
        writer.write(np.full((24, 32, 3), 50, np.uint8))
    writer.release()
    source = VideoFileSource(ten_frames, loop=True)
    frames = source.frames()
    next(frames)
    os.replace(other, ten_frames)  # replaced while being read
    source._capture.release()  # as when the old file cannot be rewound: it is opened anew
    source._capture = cv2.VideoCapture(str(ten_frames), cv2.CAP_FFMPEG)

    with pytest.raises(SourceLost, match=r"was replaced while being read: its frames are 32x24 "
                                         r"now, not 64x48"):
        frames_until_lost(frames)
