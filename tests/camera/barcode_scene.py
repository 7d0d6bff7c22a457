"""A scene that says which camera frame it is, for the pipeline tests (both cameras).

Each frame stamps its index as a 12-bit barcode in the top rows, so a decoded clip (or an
analysis frame, even the Pi's small luma one) says exactly which camera frames it holds: pre-roll,
post-roll and split points are checked in frames. A neighbour's window flashes under the privacy
mask (private, and never motion); a dark, person-sized visitor walks across between PERSON_IN and
PERSON_OUT.

Two ways to record it: `BarcodeSource` (a FrameSource for the software pipeline) and
`record_on_picamera` (picamera2's real classes over the libcamera doubles, `doubles` fixture in
conftest.py).
"""

import io
import threading
from collections.abc import Callable, Iterator

import av
import cv2
import numpy as np

from doorbell.camera.frames import Frame, PixelFormat

ORIGIN_US = 1_714_564_800_000_000  # the recorder's injected wall clock (tests.recorder_home)
WIDTH, HEIGHT, FPS = 640, 360, 15  # the camera tests.recorder_home configures
SPEED = 4.0  # the Pi double's fake sensor runs this many times faster than real time
MASK = [(0.72, 0.25), (0.97, 0.25), (0.97, 0.8), (0.72, 0.8)]  # over the flashing "window"
MASK_PX = (round(0.72 * (WIDTH - 1)), round(0.25 * (HEIGHT - 1)),
           round(0.97 * (WIDTH - 1)), round(0.8 * (HEIGHT - 1)))  # x0, y0, x1, y1
ZONE = [(0.0, 0.12), (1.0, 0.12), (1.0, 1.0), (0.0, 1.0)]  # motion counts below the barcode
BITS, BAR = 12, 16  # the frame-index barcode: 12 blocks of 16 x 16 px along the top
PERSON_IN, PERSON_OUT = 60, 105  # frames: the visitor walks in at 4.0 s and is gone at 7.0 s


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
    """The index stamped in `image`: a full-size BGR frame, or any smaller frame or luma plane
    of the same picture (scaled back up first)."""
    if image.shape[:2] != (HEIGHT, WIDTH):
        image = cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
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


def polygon_toml(points) -> str:
    return "[" + ", ".join(f"[{x}, {y}]" for x, y in points) + "]"


def configure(home, pre_roll=1.0, post_roll=1.5, max_clip=120.0, masks=True, doorbell_clip=15.0,
              extra_masks=()):
    """The home's config.toml for this scene: the window masked, motion below the barcode."""
    polygons = ([MASK] if masks else []) + list(extra_masks)
    mask = "\n[privacy]\nmasks = [" + ", ".join(map(polygon_toml, polygons)) + "]\n" \
        if polygons else ""
    home.configure(f"""{mask}
[motion]
zones = [{polygon_toml(ZONE)}]

[recording]
pre_roll_s = {pre_roll}
post_roll_s = {post_roll}
max_clip_s = {max_clip}
doorbell_clip_s = {doorbell_clip}
keyframe_interval_s = 1.0
""")


class BarcodeSource:
    """The scene as a camera for the software pipeline: `frames` frames at FPS, then the end."""

    fps = FPS

    def __init__(self, frames: int, scene_fn: Callable[[int], np.ndarray] = scene):
        self.count = frames
        self.scene_fn = scene_fn

    def frames(self) -> Iterator[Frame]:
        for index in range(self.count):
            yield Frame(self.scene_fn(index), round(index * 1_000_000 / FPS), PixelFormat.BGR)

    def close(self) -> None:
        pass


def record_on_picamera(home, doubles, frames: int, scene_fn=scene, speed: float = SPEED,
                       presses=None, during: Callable | None = None, live: bool = True,
                       **recorder_kwargs):
    """Run the Recorder on picamera2's pipeline until the fake sensor has delivered `frames`
    (after `during(camera)`, run on a thread, if given). Returns (recorder, camera)."""
    from doorbell.camera.live import LiveFramePublisher, StatusPublisher, prepare_runtime_dir
    from doorbell.camera.picamera import PiCameraPipeline
    from doorbell.camera.recorder import Recorder
    from doorbell.camera.sources import plan_source
    from doorbell.storage.audit import AuditLog
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients

    watcher = recorder_kwargs.get("watcher")
    settings = watcher.settings if watcher is not None else home.settings()
    camera = doubles.add_camera(scene_fn, fps=FPS, speed=speed)
    plan = plan_source("picamera2", settings)
    assert plan.open is PiCameraPipeline
    stop = threading.Event()

    def script():
        if during is not None:
            during(camera)
        camera.wait_for_frames(frames, 60)
        stop.set()

    prepare_runtime_dir(home.run_dir)
    recorder_kwargs.setdefault("wall_clock_us", lambda: ORIGIN_US)
    with ClipIndex(home.root / "index.sqlite3") as index:
        recipients = watcher.recipients if watcher is not None else \
            read_recipients(home.root / "recipients.txt")
        store = ClipStore(home.clips_dir, index, recipients)
        publisher = LiveFramePublisher(home.run_dir / "live.jpg", settings.live.fps,
                                       settings.live.width, settings.live.jpeg_quality) \
            if live else None
        recorder = Recorder(settings, store, AuditLog(home.root / "audit.jsonl"),
                            presses if presses is not None else plan.presses, publisher,
                            StatusPublisher(home.run_dir / "recorder.json"), **recorder_kwargs)
        threading.Thread(target=script, daemon=True).start()
        recorder.run(plan.open, stop)
    return recorder, camera
