"""Motion on a camera's substream (camera.detect_source) while its main stream is recorded, against
two real RTSP servers (tests/camera/rtsp_server.py): a 640x360 main stream and its 480x270
substream, both of the barcode scene (every frame says its index), as an IP camera serves them
(the main stream with B-frames, and keyframes in slices that arrive as two packets).

Each server starts its file when a client's stream begins (`playing_s`), so the two streams of
this "camera" are (P_sub - P_main) * fps frames apart by content; the recorder matches them by
arrival time, so an analysis frame must show the main stream's content at its time shifted by
exactly that. Then: the main stream is recorded as it comes, and losing either stream seals
the clip and reconnects like any camera loss.
"""

import dataclasses
import io
import logging
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from doorbell.camera.demux import H264Demuxer
from doorbell.camera.mp4 import FragmentedMp4Writer
from doorbell.camera.passthrough import PassthroughPipeline
from doorbell.camera.substream import DetectStream
from doorbell.config import MotionSettings, Settings
from tests.camera.barcode_scene import FPS, HEIGHT, WIDTH, frame_index, scene
from tests.camera.rtsp_recorder import start_recorder, wait_for
from tests.camera.rtsp_server import RtspServer, missing_gstreamer

FRAMES = 900  # 60 s at 15 fps: longer than any test here
VISITOR_FROM = 3 * FPS  # a visitor walks about from 3 s on (each client's stream from its start)
SUB_WIDTH, SUB_HEIGHT = 480, 270  # analysed whole (detect_width 480): the barcode reads


def barcode_h264(path, width: int, height: int, b_frames: int) -> None:
    """The barcode scene as H.264 at width x height, a keyframe a second."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18", "g": str(FPS),
                          "bf": str(b_frames)}
        stream.codec_context.time_base = Fraction(1, FPS)
        for index in range(FRAMES):
            image = cv2.resize(scene(index, VISITOR_FROM, FRAMES), (width, height),
                               interpolation=cv2.INTER_AREA)
            picture = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420),
                                                 format="yuv420p")
            picture.pts, picture.time_base = index, Fraction(1, FPS)
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def camera_files(tmp_path_factory):
    if (reason := missing_gstreamer()) is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("substream")
    main, sub = directory / "main.mp4", directory / "sub.mp4"
    barcode_h264(main, WIDTH, HEIGHT, b_frames=2)  # a main stream with B-frames
    barcode_h264(sub, SUB_WIDTH, SUB_HEIGHT, b_frames=0)
    return main, sub


@pytest.fixture
def servers(camera_files):
    main, sub = RtspServer(camera_files[0]), RtspServer(camera_files[1])
    main.start()
    sub.start()
    yield main, sub
    main.stop()
    sub.stop()


def run_pipeline(main_url: str, sub_url: str, seconds: float):
    """(analysis frames [(pts_us, index)], the main packets the pipeline released)."""
    settings = Settings(motion=MotionSettings(detect_width=SUB_WIDTH))
    pipeline = PassthroughPipeline(H264Demuxer(main_url), settings, "test camera",
                                   DetectStream(H264Demuxer(sub_url), "test substream"))
    analysed, packets = [], []
    started = time.monotonic()
    pipeline.open_clip(0)
    try:
        for frame in pipeline.frames():
            assert (frame.width, frame.height) == (SUB_WIDTH, SUB_HEIGHT)
            analysed.append((frame.pts_us, frame_index(frame.image)))
            packets += pipeline.released()
            if time.monotonic() - started > seconds:
                break
        assert pipeline.passthrough and pipeline.size == (WIDTH, HEIGHT)
    finally:
        pipeline.close()
    return analysed, packets


def decoded_indexes(packets) -> list[tuple[int, int, np.ndarray]]:
    """(pts_us, barcode index, picture) of the main packets, muxed as a clip and decoded."""
    sink = io.BytesIO()
    writer = FragmentedMp4Writer(sink, WIDTH, HEIGHT, FPS)
    for packet in packets:
        writer.write(packet)
    writer.close()
    first_us = min(p.pts_us for p in packets)
    with av.open(io.BytesIO(sink.getvalue())) as container:
        pictures = [(f.time, f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    first_s = pictures[0][0]
    return [(first_us + round((t - first_s) * 1e6), frame_index(p), p) for t, p in pictures]


def test_analysis_frames_come_from_the_substream_matched_to_the_main_stream_by_time(servers):
    main, sub = servers
    analysed, packets = run_pipeline(main.url(), sub.url(), seconds=10)
    recorded = decoded_indexes(packets)
    # the main stream recorded as it comes: consecutive frames
    indexes = [index for _, index, _ in recorded]
    assert len(recorded) >= 100 and indexes == list(range(indexes[0], indexes[0] + len(indexes)))
    # every substream picture from 2 s on (its clock is not known before; nothing skipped)
    indexes = [index for _, index in analysed]
    assert len(analysed) >= 7 * FPS and indexes == list(range(indexes[0],
                                                              indexes[0] + len(indexes)))
    expected_shift = (sub.playing_s[-1] - main.playing_s[-1]) * FPS
    times = np.array([pts_us for pts_us, _, _ in recorded])
    shifts = []
    for pts_us, index in analysed:
        if times[0] <= pts_us <= times[-1]:
            nearest = recorded[int(np.argmin(abs(times - pts_us)))]
            shifts.append(nearest[1] - index)
    assert len(shifts) >= 80
    errors = np.abs(np.array(shifts) - expected_shift)
    # within a frame, whatever the two streams' start times
    assert errors.max() <= 1.0, (expected_shift, shifts)


@pytest.mark.parametrize("lost", ["main", "sub"])
def test_losing_either_stream_seals_the_clip_and_both_reconnect(home, servers, lost, caplog):
    caplog.set_level(logging.INFO)
    main, sub = servers
    home.configure("\n[recording]\npost_roll_s = 30\n")
    settings = home.settings()
    settings = dataclasses.replace(settings, camera=dataclasses.replace(
        settings.camera, detect_source=sub.url()))
    recorder, finish = start_recorder(home, main.url(), settings=settings)
    server = main if lost == "main" else sub
    try:
        wait_for(lambda: recorder.cutter is not None and recorder.cutter.recording_id,
                 30, "a clip to start")
        time.sleep(3)
        server.stop()
        wait_for(lambda: recorder.stats.camera == "lost" and len(home.index_rows()) == 1,
                 20, "the clip to be sealed")
        server.start()
        wait_for(lambda: recorder.stats.camera == "ok" and recorder.cutter is not None
                 and recorder.cutter.recording_id, 40, "reconnection and a new clip")
        time.sleep(2)
    finally:
        finish()
    clips = home.clips()
    assert len(clips) == 2 and all(c.state == "complete" for c in clips)
    assert (clips[0].meta["width"], clips[0].meta["height"]) == (WIDTH, HEIGHT)
    lost_lines = [r.getMessage() for r in caplog.records if "camera lost" in r.getMessage()]
    assert lost_lines and ("substream" in lost_lines[0]) == (lost == "sub"), lost_lines
