"""The picamera2 path on x86: picamera2's real classes over libcamera/pykms test doubles.

What is real here: picamera2's `Picamera2` (discovery, create_video_configuration, configure,
start/stop, its event-loop threads, capture_request, pre_callback), `MappedArray`,
`CircularOutput2`, the encoder/output plumbing and its `LibavH264Encoder` (libx264: the encoder
picamera2 itself uses on a Pi 5, standing in for the Pi 4's V4L2 hardware encoder, which needs
/dev/video11), plus the whole recorder below it (state machine, motion detector, clip store, age).
What is faked: libcamera (tests/camera/picamera_doubles.py: a camera whose "sensor" thread fills
the buffers with a scripted scene) and the DMA-heap buffer allocator.

The scene stamps its frame index as a 12-bit barcode in the top rows, so a decoded clip says
exactly which camera frames it holds: the pre-roll and the post-roll are checked in frames.
"""

import importlib.util
import io
import subprocess
import sys
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from doorbell.camera.frames import PixelFormat
from doorbell.camera.picamera import YuvPrivacyMask, lores_size, yuv420_to_bgr
from doorbell.camera.sources import plan_source
from doorbell.camera.statemachine import Action
from doorbell.config import Settings

PROJECT = Path(__file__).resolve().parents[2]
ORIGIN_US = 1_714_564_800_000_000  # conftest's ORIGIN_US: the recorder's injected wall clock
# picamera2's NullPreview still calls Thread.setDaemon().
pytestmark = pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")

WIDTH, HEIGHT, FPS = 640, 360, 15  # the camera conftest.py configures
SPEED = 4.0  # the fake sensor runs this many times faster than real time
MASK = [(0.72, 0.25), (0.97, 0.25), (0.97, 0.8), (0.72, 0.8)]  # over the flashing "window"
MASK_PX = (round(0.72 * (WIDTH - 1)), round(0.25 * (HEIGHT - 1)),
           round(0.97 * (WIDTH - 1)), round(0.8 * (HEIGHT - 1)))  # x0, y0, x1, y1
ZONE = [(0.0, 0.12), (1.0, 0.12), (1.0, 1.0), (0.0, 1.0)]  # motion counts below the barcode
BITS, BAR = 12, 16  # the frame-index barcode: 12 blocks of 16 x 16 px along the top
PERSON_IN, PERSON_OUT = 60, 105  # frames: the visitor walks in at 4.0 s and is gone at 7.0 s

# -- the scene ------------------------------------------------------------------------------------


def _background() -> np.ndarray:
    rng = np.random.default_rng(7)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = 70 + (xs * 60 // WIDTH) + (ys * 40 // HEIGHT)
    texture = rng.integers(0, 24, (HEIGHT // 8, WIDTH // 8)).repeat(8, 0).repeat(8, 1)
    gray = (base + texture).astype(np.uint8)
    return cv2.merge([gray, gray, (gray * 0.9).astype(np.uint8)])


BACKGROUND = _background()


def scene(index: int, person_in: int = PERSON_IN, person_out: int = PERSON_OUT) -> np.ndarray:
    image = BACKGROUND.copy()
    for bit in range(BITS):  # the frame index, white = 1
        x = 8 + bit * (BAR + 6)
        image[4:4 + BAR, x:x + BAR] = 255 if (index >> bit) & 1 else 0
    x0, y0, x1, y1 = MASK_PX  # a neighbour's window flashing: private, and never motion
    image[y0:y1, x0:x1] = (255, 240, 200) if (index // 3) % 2 else (10, 30, 60)
    if person_in <= index < person_out:  # a visitor: a dark, person-sized figure walking across
        steps = (index - person_in) * 6  # walking right, turning at the edge of the path
        x = 40 + (steps % 960 if steps % 960 < 480 else 960 - steps % 960)
        image[90:330, x:x + 70] = (40, 35, 60)
        image[60:95, x + 15:x + 55] = (90, 110, 160)
    return image


def frame_index(image: np.ndarray) -> int:
    value = 0
    for bit in range(BITS):
        x = 8 + bit * (BAR + 6)
        if image[6:2 + BAR, x + 2:x + BAR - 2].mean() > 128:
            value |= 1 << bit
    return value


def decode(data: bytes) -> tuple[list[np.ndarray], list[int]]:
    """The decoded frames (BGR) and the indices of those that are keyframes."""
    images, keyframes = [], []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="bgr24"))
            if frame.key_frame:
                keyframes.append(frame_index(images[-1]))
    return images, keyframes


def masked_region(image: np.ndarray, margin: int = 4) -> np.ndarray:
    """The inside of the mask (scaled to `image`), a few pixels in from the edges."""
    sx, sy = image.shape[1] / WIDTH, image.shape[0] / HEIGHT
    x0, y0, x1, y1 = MASK_PX
    return image[round(y0 * sy) + margin:round(y1 * sy) - margin,
                 round(x0 * sx) + margin:round(x1 * sx) - margin]


# -- fixtures -------------------------------------------------------------------------------------


def load_doubles():
    """tests/camera/picamera_doubles.py, loaded once per session whatever the import mode: the
    classes picamera2 saw at its first import must stay the libcamera double's classes."""
    name = "doorbell_tests_picamera_doubles"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("picamera_doubles.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def doubles(monkeypatch):
    """libcamera and pykms doubles in sys.modules, picamera2 imported over them, x86 encoders."""
    if importlib.util.find_spec("picamera2") is None:  # importing it needs the doubles first
        pytest.skip("picamera2 is not installed (apt-get install libcap-dev; pip install "
                    "picamera2)")
    installed = load_doubles().install(monkeypatch)
    pytest.importorskip("picamera2", reason="picamera2 does not import over the test doubles")
    import picamera2.encoders
    from picamera2.encoders import LibavH264Encoder

    made = []

    class RecordedLibavH264Encoder(LibavH264Encoder):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            made.append((self, kwargs))

    # No /dev/video11 here: use the encoder picamera2 itself picks on a Pi 5 (libx264).
    monkeypatch.setattr(picamera2.encoders, "H264Encoder", RecordedLibavH264Encoder)
    installed.encoders = made
    return installed


@pytest.fixture
def decisions(monkeypatch) -> list:
    """(pts_us, action) of every decision the recorders' state machines take."""
    from doorbell.camera.statemachine import RecorderStateMachine

    taken = []
    step = RecorderStateMachine.step

    def recorded(self, pts_us, motion, pressed):
        decision = step(self, pts_us, motion, pressed)
        if decision.action is not None:
            taken.append((pts_us, decision.action))
        return decision

    monkeypatch.setattr(RecorderStateMachine, "step", recorded)
    return taken


def configure(home, pre_roll=1.0, post_roll=1.5, max_clip=120.0, masks=True):
    mask = "\n[privacy]\nmasks = [[" + ", ".join(f"[{x}, {y}]" for x, y in MASK) + "]]\n" \
        if masks else ""
    home.configure(f"""{mask}
[motion]
zones = [[{", ".join(f"[{x}, {y}]" for x, y in ZONE)}]]

[recording]
pre_roll_s = {pre_roll}
post_roll_s = {post_roll}
max_clip_s = {max_clip}
keyframe_interval_s = 1.0
""")


def record(home, doubles, frames: int, scene_fn=scene, speed: float = SPEED):
    """Run the Recorder on picamera2's pipeline until the fake sensor delivered `frames`."""
    from doorbell.camera.live import LiveFramePublisher, StatusPublisher, prepare_runtime_dir
    from doorbell.camera.picamera import PiCameraPipeline
    from doorbell.camera.recorder import Recorder
    from doorbell.storage.audit import AuditLog
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients

    settings = home.settings()
    camera = doubles.add_camera(scene_fn, fps=FPS, speed=speed)
    plan = plan_source("picamera2", settings)
    assert plan.open is PiCameraPipeline
    stop = threading.Event()
    threading.Thread(target=lambda: (camera.wait_for_frames(frames, 60), stop.set()),
                     daemon=True).start()
    prepare_runtime_dir(home.run_dir)
    with ClipIndex(home.root / "index.sqlite3") as index:
        store = ClipStore(home.clips_dir, index, read_recipients(home.root / "recipients.txt"))
        recorder = Recorder(
            settings, store, AuditLog(home.root / "audit.jsonl"), plan.presses,
            LiveFramePublisher(home.run_dir / "live.jpg", settings.live.fps, settings.live.width,
                               settings.live.jpeg_quality),
            StatusPublisher(home.run_dir / "recorder.json"), wall_clock_us=lambda: ORIGIN_US)
        recorder.run(plan.open, stop)
    return recorder, camera


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


# -- the recorder ---------------------------------------------------------------------------------


def test_motion_clip_has_pre_roll_post_roll_and_the_mask_burnt_in(doubles, home, decisions):
    configure(home, pre_roll=1.0, post_roll=1.5)
    recorder, camera = record(home, doubles, frames=190)

    (encoder, kwargs), = doubles.encoders
    assert kwargs == {"repeat": True, "iperiod": 15, "framerate": FPS, "qp": 26}
    clips = home.clips()
    assert [(c.state, c.trigger) for c in clips] == [("complete", "motion")]  # window ignored
    clip = clips[0]
    data, truncated = home.video(clip.id)
    assert not truncated and data[4:8] == b"ftyp"
    frames, keyframes = decode(data)
    indices = [frame_index(f) for f in frames]
    assert indices == list(range(indices[0], indices[0] + len(frames)))  # every frame, in order
    assert keyframes[0] == indices[0]  # it starts at a keyframe: plays on its own

    # The state machine's decisions, as camera frame indices. The recorder's clock starts at its
    # first analysed frame (wall clock ORIGIN_US), so the clip's wall-clock start says which.
    first_analysed = indices[0] - round((clip.start_us - ORIGIN_US) * FPS / 1e6)
    assert 0 <= first_analysed <= 10
    (trigger,), (stop,) = ([first_analysed + round(pts * FPS / 1e6)
                            for pts, action in decisions if action is kind]
                           for kind in (Action.START, Action.STOP))
    assert PERSON_IN < trigger < PERSON_IN + 15  # the visitor, a few frames in
    # Pre-roll from CircularOutput2: a keyframe at least 1 s before the trigger, at most
    # pre-roll + one keyframe interval (the ring's length) before it.
    assert trigger - 30 < indices[0] <= trigger - 15
    # Post-roll: the clip ends at the frame before the state machine's stop, like every other
    # source's clips, although close_output drops the 2 s still in the ring: it was drained.
    assert stop >= PERSON_OUT
    assert indices[-1] == stop - 1

    # The privacy mask, burnt in before the encoder: black in every frame of the video ...
    assert max(masked_region(f).max() for f in frames) <= 24
    assert max(f[40:90, 20:200].mean() for f in frames) > 60  # while the rest is not black
    # ... in the thumbnail (the full-resolution frame with the most motion) ...
    thumbnail = cv2.imdecode(np.frombuffer(home.thumbnail(clip.id), np.uint8), cv2.IMREAD_COLOR)
    assert thumbnail.shape[1] == 480
    assert masked_region(thumbnail).max() <= 24
    assert PERSON_IN <= frame_index(cv2.resize(thumbnail, (WIDTH, HEIGHT))) < PERSON_OUT
    # ... and in the live frame.
    live = cv2.imread(str(home.run_dir / "live.jpg"))
    assert masked_region(live).max() <= 24

    meta = clip.meta
    assert (meta["width"], meta["height"], meta["fps"]) == (WIDTH, HEIGHT, FPS)
    assert meta["duration_s"] == pytest.approx(len(frames) / FPS, abs=0.01)
    assert meta["motion"]["frames_with_motion"] >= 3  # analysed frames: fewer under load
    assert recorder.stats.clips == 1


def test_long_visit_splits_at_a_keyframe_and_shutdown_flushes_the_ring(doubles, home,
                                                                      decisions):
    configure(home, pre_roll=1.0, post_roll=1.5, max_clip=5.0)
    lingering = lambda index: scene(index, person_in=PERSON_IN, person_out=10_000)  # noqa: E731
    recorder, camera = record(home, doubles, frames=210, scene_fn=lingering)

    clips = home.clips()
    splits = [pts for pts, action in decisions if action is Action.SPLIT]
    # max_clip_s counts from the clip's first frame, its pre-roll included (as for every source)
    assert len(clips) == len(splits) + 1 >= 2
    assert [c.trigger for c in clips] == ["motion"] + ["continued"] * len(splits)
    decoded = [decode(home.video(c.id)[0]) for c in clips]
    indices = [[frame_index(f) for f in frames] for frames, _ in decoded]
    assert indices[0][0] < PERSON_IN and decoded[0][1][0] == indices[0][0]
    first_analysed = indices[0][0] - round((clips[0].start_us - ORIGIN_US) * FPS / 1e6)
    for split_us, before, (after, (_, after_keys)), clip, next_clip in zip(
            splits, indices[:-1], zip(indices[1:], decoded[1:], strict=True), clips[:-1],
            clips[1:], strict=True):
        split = first_analysed + round(split_us * FPS / 1e6)
        # Split at the first keyframe at or after the state machine's split: no gap, no
        # overlap, and the continuation starts with a keyframe, so each clip plays on its own.
        assert after[0] == before[-1] + 1
        assert after_keys[0] == after[0] and split <= after[0] < split + 15
        assert after == list(range(after[0], after[0] + len(after)))
        assert next_clip.start_us == pytest.approx(clip.end_us, abs=1e6 / FPS + 1)
    # Stopped mid-visit: CircularOutput2.stop() flushed the ring into the clip, so it reaches
    # the last frames the camera made, not the 2 s (the ring) before them.
    assert indices[-1][-1] >= 210 - 3


def test_a_full_disk_mid_clip_loses_that_clip_only(doubles, home, monkeypatch):
    import errno

    from doorbell.camera.clip import ActiveClip

    configure(home, pre_roll=1.0, post_roll=1.5)
    write = ActiveClip.write
    failures = []

    def full_once(self, packet):
        if not failures:
            failures.append(packet.pts_us)
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, packet)

    monkeypatch.setattr(ActiveClip, "write", full_once)
    two_visits = lambda i: scene(i) if i < 150 else scene(i, 200, 245)  # noqa: E731
    recorder, camera = record(home, doubles, frames=320, scene_fn=two_visits, speed=6.0)

    clips = home.clips()
    assert failures and clips[0].state in ("truncated", "damaged")  # the prefix, if any
    assert clips[-1].state == "complete" and clips[-1].trigger == "motion"
    frames, keyframes = decode(home.video(clips[-1].id)[0])
    indices = [frame_index(f) for f in frames]
    assert indices[0] < 200 and indices[-1] >= 245 and keyframes[0] == indices[0]
    assert recorder.stats.camera == "ok"
