"""The picamera2 path on x86: picamera2's real classes over libcamera/pykms test doubles.

What is real here: picamera2's `Picamera2` (discovery, create_video_configuration, configure,
start/stop, its event-loop threads, capture_request, pre_callback), `MappedArray`,
`CircularOutput2`, the encoder/output plumbing and its `LibavH264Encoder` (libx264: the encoder
picamera2 itself uses on a Pi 5, standing in for the Pi 4's V4L2 hardware encoder, which needs
/dev/video11), plus the whole recorder below it (state machine, motion detector, clip store, age).
What is faked: libcamera (tests/camera/picamera_doubles.py: a camera whose "sensor" thread fills
the buffers with a scripted scene) and the DMA-heap buffer allocator.

The scene (tests/camera/barcode_scene.py) stamps its frame index in the top rows. What the
recorder does with both pipelines (clip boundaries, pre-roll, masks) is in
test_pipeline_contract.py.
"""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from doorbell.camera.frames import PixelFormat
from doorbell.camera.picamera import YuvPrivacyMask, lores_size, yuv420_to_bgr
from doorbell.camera.sources import plan_source
from doorbell.config import Settings

from .barcode_scene import FPS, HEIGHT, SPEED, WIDTH, configure, frame_index, masked_region, scene

PROJECT = Path(__file__).resolve().parents[2]
# picamera2's NullPreview still calls Thread.setDaemon().
pytestmark = pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")


# -- without picamera2 ----------------------------------------------------------------------------


def test_plan_source_without_picamera2_says_so_in_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # as if it were not installed
    with pytest.raises(ValueError) as caught:
        plan_source("picamera2", Settings())
    message = str(caught.value)
    assert message.startswith("the picamera2 source needs picamera2 and libcamera")
    assert "python3-picamera2" in message
    assert ". " not in message and "\n" not in message  # one sentence


def test_picamera2_is_imported_only_on_its_path():
    code = ("import sys, doorbell.camera.recorder, doorbell.camera.sources, "
            "doorbell.camera.picamera, doorbell.commands.record; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('picamera2', 'libcamera', 'pykms')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PROJECT, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_lores_stream_is_the_detector_width_with_the_main_aspect():
    assert lores_size(1280, 720, 320) == (320, 180)
    assert lores_size(1920, 1080, 320) == (320, 180)
    assert lores_size(640, 480, 320) == (320, 240)
    assert lores_size(200, 150, 320) == (200, 150)  # never wider than main


def test_yuv_mask_blacks_out_luma_and_neutralises_chroma_with_row_padding():
    width, height, stride = 600, 340, 640  # the ISP pads rows to 64 bytes
    bgr = np.full((height, width, 3), (30, 200, 90), np.uint8)  # a strongly coloured scene
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    buffer = np.full(stride * height * 3 // 2, 77, np.uint8)  # 77: padding must stay untouched
    mask = YuvPrivacyMask([[(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]], width, height,
                          stride)
    y, u, v = mask.planes(buffer.reshape(height * 3 // 2, stride))
    y[:] = i420[:width * height].reshape(height, width)
    quarter = width * height // 4
    u[:] = i420[width * height:width * height + quarter].reshape(height // 2, width // 2)
    v[:] = i420[width * height + quarter:].reshape(height // 2, width // 2)

    mask.apply(buffer.reshape(height * 3 // 2, stride))

    image = yuv420_to_bgr(buffer.reshape(height * 3 // 2, stride), width, height)
    assert image.shape == (height, width, 3)
    assert image[:, width // 2 + 1:].max() <= 1  # black: no luma, no colour
    assert np.abs(image[:, :width // 2 - 2].astype(int) - (30, 200, 90)).max() <= 3
    rows = buffer.reshape(height * 3 // 2, stride)
    assert (rows[:height, width:] == 77).all()  # luma padding
    assert (y[:, width // 2 + 1:] == 0).all() and (u[:, width // 4 + 1:] == 128).all()


# -- picamera2's real classes over the libcamera double --------------------------------------------


def test_the_real_picamera2_configures_two_yuv_streams_and_masks_them_before_capture(
        doubles, home):
    from doorbell.camera.picamera import PiCameraSource

    configure(home)
    camera = doubles.add_camera(scene, fps=FPS, speed=SPEED)
    source = PiCameraSource(home.settings())
    try:
        config = camera.configuration
        assert [(str(c.pixel_format), c.size.width, c.size.height) for c in config][:2] == [
            ("YUV420", WIDTH, HEIGHT), ("YUV420", 320, 180)]
        assert source.main_size == (WIDTH, HEIGHT) and source.lores_size == (320, 180)

        frames = source.frames()  # what the recorder analyses: the lores Y plane, masked
        first = next(frames)
        assert first.format is PixelFormat.LUMA and first.pts_us == 0
        assert first.image.shape == (180, 320)
        first_index = frame_index(source.main_image())
        second = next(frames)
        frames_later = second.pts_us * FPS / 1e6  # the sensor clock: whole frame intervals
        assert round(frames_later) >= 1
        assert frames_later == pytest.approx(round(frames_later), abs=1e-3)
        assert masked_region(second.image, margin=2).max() <= 2  # the flashing window is gone
        main = source.main_image()  # the same frame, full size, as BGR for thumbnails
        assert main.shape == (HEIGHT, WIDTH, 3) and masked_region(main).max() <= 2
        assert abs(frame_index(main) - first_index) >= 1
        # FrameRate became FrameDurationLimits for libcamera, at the configured 15 fps.
        limits = {k.name: v for k, v in camera.started_controls.items()}["FrameDurationLimits"]
        assert tuple(limits) == (66666, 66666)
        frames.close()
    finally:
        source.close()
    assert not camera.acquired  # closed: released back to libcamera


def test_no_camera_is_a_lost_source_that_the_recorder_retries(doubles, home):
    from doorbell.camera.frames import SourceLost
    from doorbell.camera.picamera import PiCameraSource

    with pytest.raises(SourceLost, match="no Raspberry Pi camera 0"):
        PiCameraSource(home.settings())


def test_pi4_hardware_encoder_gets_repeated_headers_and_the_keyframe_period(doubles,
                                                                           monkeypatch):
    """On a Pi 4 / Zero 2 W picamera2's H264Encoder is the V4L2 one: check what it would ask."""
    import picamera2.encoders
    from picamera2.encoders.h264_encoder import H264Encoder as V4L2H264Encoder
    from videodev2 import V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER

    from doorbell.camera.picamera import make_h264_encoder

    settings = Settings.from_toml_text("[recording]\nkeyframe_interval_s = 2.0\ncrf = 24\n")
    monkeypatch.setattr(picamera2.encoders, "H264Encoder", V4L2H264Encoder)
    encoder = make_h264_encoder(settings)
    assert isinstance(encoder, V4L2H264Encoder)
    assert (encoder.repeat, encoder.iperiod, encoder.qp, encoder.framerate) == (True, 30, 24, 15)
    encoder.width, encoder.height = 1280, 720
    with pytest.raises(OSError):  # opening /dev/video11 comes after the controls are chosen
        encoder._start()
    assert (V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 1) in encoder._controls
    assert (V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, 30) in encoder._controls


def test_circular_output2_close_output_drops_the_ring(doubles):
    """The FACT the post-roll handling rests on, checked on picamera2's real class."""
    from picamera2.outputs import CircularOutput2, Output

    class Collect(Output):
        def __init__(self):
            super().__init__()
            self.timestamps = []

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            self.timestamps.append(timestamp)

    ring = CircularOutput2(buffer_duration_ms=1000)
    ring.start()
    out = Collect()
    for index in range(30):
        if index == 15:
            ring.open_output(out)
        ring.outputframe(b"x", index % 5 == 0, index * 100_000)
    ring.close_output()
    assert out.timestamps[-1] == (29 - 10 - 5) * 100_000  # 1 s of frames never came out
