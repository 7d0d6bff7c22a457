"""An RTSP camera against a real server (GStreamer's, tests/camera/rtsp_server.py) serving the
real H.264 of bikes.mp4: the recorder connects, records the camera's own packets (no
re-encoding: the clip decodes to exactly the camera's pictures), seals the clip when the server
goes, backs off, reconnects when it returns, and never logs the URL's password.
"""

import logging
import time

import av
import numpy as np
import pytest

from doorbell.camera.demux import H264Demuxer
from doorbell.camera.frames import SourceLost
from tests.camera.rtsp_recorder import start_recorder, wait_for
from tests.camera.rtsp_server import RtspServer, looped_h264, missing_gstreamer
from tests.recorder_home import decode_mp4, video_file

PASSWORD = "s3cret-door-pw"


@pytest.fixture(scope="module")
def camera_video(tmp_path_factory):
    source = video_file("bikes.mp4")
    if (reason := missing_gstreamer()) is not None:
        pytest.skip(reason)
    return looped_h264(source, tmp_path_factory.mktemp("rtsp"), repeats=6)


@pytest.fixture
def camera(camera_video):
    server = RtspServer(camera_video, user="door", password=PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def camera_pictures():
    """Every picture of bikes.mp4, as the camera's H.264 decodes."""
    with av.open(str(video_file("bikes.mp4"))) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def test_a_wrong_password_is_one_sentence_without_the_password(camera):
    url = camera.url().replace(PASSWORD, "not-the-password")
    with pytest.raises(SourceLost) as raised:
        H264Demuxer(url)
    message = str(raised.value)
    assert "not-the-password" not in message and "//door" not in message
    assert "401" in message and "rtsp://***@127.0.0.1" in message and "\n" not in message


def test_records_the_cameras_own_h264_loses_it_and_reconnects(home, camera, camera_pictures,
                                                              caplog, capfd):
    caplog.set_level(logging.DEBUG)
    recorder, finish = start_recorder(home, camera.url())
    try:
        wait_for(lambda: recorder.cutter is not None and recorder.cutter.recording_id,
                 20, "a clip to start")
        time.sleep(4)
        camera.stop()  # the camera vanishes mid-clip
        wait_for(lambda: recorder.stats.camera == "lost" and len(home.index_rows()) == 1,
                 20, "the clip to be sealed")
        time.sleep(2.5)  # a few refused reconnections, with back-off
        camera.start()
        wait_for(lambda: recorder.stats.camera == "ok" and recorder.cutter is not None
                 and recorder.cutter.recording_id, 40, "reconnection and a new clip")
        time.sleep(3)
    finally:
        finish()
    clips = home.clips()
    assert len(clips) == 2 and all(c.state == "complete" for c in clips)
    first = clips[0]
    assert first.meta["width"] == 640 and first.meta["height"] == 272
    data, truncated = home.video(first.id)
    frames, error = decode_mp4(data, ndarray=True)
    assert error is None and not truncated
    # about 25 frames per recorded second, and every one a picture the camera sent, bit for
    # bit: the camera's H.264 was remuxed, not decoded and encoded again
    assert 4 <= first.meta["duration_s"] <= 12
    assert abs(len(frames) - first.meta["duration_s"] * 25) <= 3
    for frame in frames[::10]:
        assert any(np.array_equal(frame, picture) for picture in camera_pictures)
    with av.open(__import__("io").BytesIO(data)) as container:  # it seeks
        container.seek(2_000_000, stream=container.streams.video[0])
        assert next(container.decode(video=0)).time >= 1.0
    messages = [r.getMessage() for r in caplog.records]
    lost = [m for m in messages if "camera lost" in m]
    assert lost and all("rtsp://***@127.0.0.1" in m for m in lost), messages
    retries = [m for m in messages if "retrying in" in m]
    assert len(retries) >= 2 and "retrying in 1 s" in retries[0] and "retrying in 2 s" in \
        retries[1], retries
    output = capfd.readouterr()
    for text in (caplog.text, output.out, output.err,
                 (home.run_dir / "recorder.json").read_text()):
        assert PASSWORD not in text


def test_doorbell_record_keeps_the_password_out_of_its_log(home, camera):
    config = (home.root / "config.toml").read_text().replace(
        "[camera]\n", f'[camera]\nsource = "{camera.url()}"\n', 1)
    (home.root / "config.toml").write_text(config)
    process, log = home.start("record")
    try:
        wait_for(lambda: "clip " in log.read_text() and "started" in log.read_text(), 30,
                 "a clip to start")
        camera.stop()
        wait_for(lambda: "camera lost" in log.read_text(), 20, "the camera to be lost")
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text()
    assert "rtsp://***@127.0.0.1" in text and PASSWORD not in text, text


def test_a_mask_drawn_switches_to_re_encoding_at_the_next_frame_and_back(camera, tmp_path):
    """The pipeline's packets, in order: the camera's own, then (a mask drawn) libx264's with
    the mask burnt in from the very next frame, then (the mask removed) the camera's again."""
    import io

    from doorbell.camera.mp4 import FragmentedMp4Writer
    from doorbell.camera.passthrough import PassthroughPipeline
    from doorbell.config import Settings

    left_half = (((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)),)
    pipeline = PassthroughPipeline(H264Demuxer(camera.url()), Settings(), "test camera")
    streams: list[list] = [[]]
    started = time.monotonic()
    masked_at_us = unmasked_at_us = None
    pipeline.open_clip(0)
    try:
        for frame in pipeline.frames():
            for packet in pipeline.released():
                if packet.new_stream:
                    streams.append([])
                streams[-1].append(packet)
            elapsed_s = time.monotonic() - started
            if masked_at_us is None and elapsed_s > 3:
                pipeline.set_masks(left_half)
                masked_at_us = frame.pts_us
            elif masked_at_us is not None and unmasked_at_us is None and elapsed_s > 6:
                pipeline.set_masks(())
                unmasked_at_us = frame.pts_us
            elif elapsed_s > 10:
                break
    finally:
        pipeline.close()
    assert len(streams) == 3, [len(s) for s in streams]
    camera_before, masked, camera_after = streams
    assert max(p.pts_us for p in camera_before) <= masked_at_us
    assert masked[0].pts_us > masked_at_us and masked[0].keyframe
    assert camera_after[0].keyframe and camera_after[0].pts_us > unmasked_at_us

    def decoded(packets):
        sink = io.BytesIO()
        writer = FragmentedMp4Writer(sink, 640, 272, 25)
        for packet in packets:
            writer.write(packet)
        writer.close()
        frames, error = decode_mp4(sink.getvalue(), ndarray=True)
        assert error is None and frames
        return frames

    # the masked stream: black on the left from its first frame; it ends unmasked (re-encoded
    # until the camera's keyframe); the camera's own streams are never blacked out
    masked_frames = decoded(masked)
    after_mask = [f for f, p in zip(masked_frames, sorted(p.pts_us for p in masked),
                                    strict=True) if p <= unmasked_at_us]
    assert after_mask and all(f[:, :300].max() < 30 for f in after_mask)
    for packets in (camera_before, camera_after):
        assert all(f[:, :300].max() > 100 for f in decoded(packets))


def save_masks(home, masks: list) -> None:
    """What the viewer's areas page does: edit config.toml (comments kept), write it atomically."""
    from doorbell.config.editor import edit_config
    from doorbell.storage.durable import write_atomically

    path = home.root / "config.toml"
    change = edit_config(path.read_text(), {"privacy.masks": masks})
    write_atomically(path, change.text.encode(), mode=0o640)


def clip_frames_by_wall_us(home, clip) -> list[tuple[int, np.ndarray]]:
    """(wall-clock time, picture) of every frame of a decrypted clip."""
    data, truncated = home.video(clip.id)
    with av.open(__import__("io").BytesIO(data)) as container:
        pictures = [(f.time, f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    assert not truncated and pictures
    first_s = pictures[0][0]
    return [(clip.start_us + round((t - first_s) * 1_000_000), p) for t, p in pictures]


def test_a_mask_saved_in_the_viewer_switches_the_recording_to_re_encoding_and_back(
        home, camera, camera_pictures):
    """The running recorder over the real RTSP camera: a privacy mask saved to config.toml as
    the viewer saves it is burnt into every frame recorded from the first frame it reaches (the
    clip in progress is sealed there: nothing unmasked after it); once removed, the camera's own
    H.264 is recorded again."""
    from doorbell.camera.reload import SettingsWatcher
    from doorbell.storage.home import Home

    left_half = [[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]]
    home.configure("\n[recording]\npost_roll_s = 30\n")  # one clip, kept open by the test
    recorder, finish = start_recorder(home, camera.url(), SettingsWatcher(Home(home.root)))

    def switched_at_wall_us() -> int:
        """The wall-clock time of the first frame under the masks just saved."""
        wait_for(lambda: recorder.pipeline is not None
                 and recorder.pipeline.fresh_from_us != float("inf")
                 and recorder.settings.privacy.masks == tuple(
                     tuple(tuple(point) for point in polygon) for polygon in masks_saved), 10,
                 "the recorder to apply the masks")
        return recorder._to_wall(int(recorder.pipeline.fresh_from_us))

    try:
        wait_for(lambda: recorder.cutter is not None and recorder.cutter.recording_id,
                 20, "a clip to start")
        time.sleep(3)
        assert recorder.pipeline.passthrough
        masks_saved = left_half
        save_masks(home, masks_saved)
        masked_from_us = switched_at_wall_us()
        assert not recorder.pipeline.passthrough
        time.sleep(4)
        masks_saved = []
        save_masks(home, masks_saved)
        unmasked_from_us = switched_at_wall_us()
        wait_for(lambda: recorder.pipeline.passthrough, 10,
                 "the camera's own stream at its next keyframe")
        time.sleep(3)
    finally:
        finish()
    clips = home.clips()
    assert len(clips) >= 3 and all(c.state == "complete" for c in clips), clips
    frames = [frame for clip in clips for frame in clip_frames_by_wall_us(home, clip)]
    under_mask = [p for wall_us, p in frames if masked_from_us <= wall_us < unmasked_from_us]
    unmasked = [p for wall_us, p in frames if not masked_from_us <= wall_us < unmasked_from_us]
    # about 4 s of frames were recorded under the mask, every one black on the left
    assert len(under_mask) >= 75 and all(p[:, :300].max() < 30 for p in under_mask)
    assert unmasked and all(p[:, :300].max() > 100 for p in unmasked)
    # the first clip and the last are the camera's own pictures (passthrough), bit for bit
    for clip in (clips[0], clips[-1]):
        pictures = clip_frames_by_wall_us(home, clip)
        assert pictures[-1][0] < masked_from_us or pictures[0][0] >= unmasked_from_us
        for _, picture in pictures[::10]:
            assert any(np.array_equal(picture, camera) for camera in camera_pictures)


def test_a_new_detect_width_applies_without_reconnecting(home, camera, monkeypatch):
    """motion.detect_width saved while recording: the analysis frames of the RTSP camera are
    that wide from the next frames on, and the camera is not reopened."""
    from doorbell.camera.recorder import Recorder
    from doorbell.camera.reload import SettingsWatcher
    from doorbell.config.editor import edit_config
    from doorbell.storage.durable import write_atomically
    from doorbell.storage.home import Home

    widths: list[tuple[int, int]] = []  # (detect_width in force, analysis frame width)
    process = Recorder.process

    def noting_process(self, frame):
        widths.append((self.settings.motion.detect_width, frame.width))
        process(self, frame)

    monkeypatch.setattr(Recorder, "process", noting_process)
    recorder, finish = start_recorder(home, camera.url(), SettingsWatcher(Home(home.root)))
    try:
        wait_for(lambda: len(widths) > 25, 30, "frames")
        pipeline = recorder.pipeline
        path = home.root / "config.toml"
        write_atomically(path, edit_config(path.read_text(), {"motion.detect_width": 160})
                         .text.encode(), mode=0o640)
        wait_for(lambda: widths[-1][0] == 160, 20, "the recorder to apply detect_width")
        applied_at = len(widths)
        wait_for(lambda: len(widths) > applied_at + 25, 20, "more frames")
        still_open = recorder.pipeline is pipeline  # the same connection: not reopened
    finally:
        finish()
    assert {w for setting, w in widths[:applied_at] if setting == 320} == {320}
    assert {w for _, w in widths[applied_at + 1:]} == {160}
    assert still_open
