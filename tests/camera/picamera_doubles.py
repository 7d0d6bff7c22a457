"""Test doubles for `libcamera` and `pykms`: enough for picamera2's real `Picamera2` class on x86.

libcamera's Python binding is built against a Pi's camera stack (not on PyPI, no Debian bookworm
package) and pykms drives a display, so neither exists here. `install(monkeypatch)` puts modules
named `libcamera` and `pykms` into sys.modules; `import picamera2` then works and its real code
runs on top of them: `Picamera2` (camera discovery, sensor modes, create_video_configuration,
configure, start/stop, its CameraManager thread and NullPreview event loop, capture_request,
pre_callback), `CompletedRequest`/`MappedArray`, the encoders' plumbing and `CircularOutput2`.

Beneath it `FakeCamera` is the sensor: a thread that takes each queued request, fills its buffers
with the next image of a scripted scene (a callable: frame index -> BGR image), converted to each
stream's pixel format and stride, stamps `SensorTimestamp` (a simulated clock at the nominal frame
rate, so timestamps do not depend on how fast the test machine runs) and completes the request
through the manager's event fd, as libcamera does. Its pace is `speed` times real time.

The one picamera2 class replaced as well is `DmaAllocator`, which needs /dev/dma_heap:
`MemfdAllocator` allocates the frame buffers as memfds and maps them the same way.
"""

import contextlib
import enum
import mmap
import os
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable

import cv2
import numpy as np

# -- value types ----------------------------------------------------------------------------------


class Size:
    def __init__(self, width: int = 0, height: int = 0):
        self.width, self.height = int(width), int(height)

    def __eq__(self, other):
        return isinstance(other, Size) and (self.width, self.height) == (other.width, other.height)

    def __hash__(self):
        return hash((self.width, self.height))

    def __repr__(self):
        return f"{self.width}x{self.height}"


class Rectangle:
    def __init__(self, x: int = 0, y: int = 0, width: int = 0, height: int = 0):
        self.x, self.y, self.width, self.height = int(x), int(y), int(width), int(height)

    def __repr__(self):
        return f"({self.x}, {self.y})/{self.width}x{self.height}"


class PixelFormat:
    def __init__(self, name: str):
        self.name = str(name)

    def __str__(self):
        return self.name

    __repr__ = __str__

    def __eq__(self, other):
        return str(self) == str(other)

    def __hash__(self):
        return hash(self.name)


class Transform:
    # No __eq__/__hash__ here, like the binding: picamera2 installs __eq__ itself and relies on
    # identity hashing for its tables keyed by Transform.
    def __init__(self, other=None, hflip=0, vflip=0, transpose=0):
        if isinstance(other, Transform):
            hflip, vflip, transpose = other.hflip, other.vflip, other.transpose
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)

    def __str__(self):
        return f"<Transform hflip={int(self.hflip)} vflip={int(self.vflip)} " \
               f"transpose={int(self.transpose)}>"


class ColorSpace:
    class Primaries(enum.Enum):
        Raw, Smpte170m, Rec709, Rec2020 = range(4)

    class TransferFunction(enum.Enum):
        Linear, Srgb, Rec709 = range(3)

    class YcbcrEncoding(enum.Enum):
        Null, Rec601, Rec709, Rec2020 = range(4)

    class Range(enum.Enum):
        Full, Limited = range(2)

    def __init__(self, other=None, primaries=None, transfer=None, ycbcr=None, range_=None):
        if isinstance(other, ColorSpace):
            primaries, transfer = other.primaries, other.transferFunction
            ycbcr, range_ = other.ycbcrEncoding, other.range
        self.primaries, self.transferFunction = primaries, transfer
        self.ycbcrEncoding, self.range = ycbcr, range_

    @classmethod
    def Raw(cls):  # noqa: N802 - libcamera's names
        return cls(None, cls.Primaries.Raw, cls.TransferFunction.Linear, cls.YcbcrEncoding.Null,
                   cls.Range.Full)

    @classmethod
    def Sycc(cls):  # noqa: N802
        return cls(None, cls.Primaries.Rec709, cls.TransferFunction.Srgb,
                   cls.YcbcrEncoding.Rec601, cls.Range.Full)

    @classmethod
    def Smpte170m(cls):  # noqa: N802
        return cls(None, cls.Primaries.Smpte170m, cls.TransferFunction.Rec709,
                   cls.YcbcrEncoding.Rec601, cls.Range.Limited)

    @classmethod
    def Rec709(cls):  # noqa: N802
        return cls(None, cls.Primaries.Rec709, cls.TransferFunction.Rec709,
                   cls.YcbcrEncoding.Rec709, cls.Range.Limited)

    def __str__(self):
        return f"<ColorSpace {self.primaries.name}/{self.transferFunction.name}/" \
               f"{self.ycbcrEncoding.name}/{self.range.name}>"


class Orientation(enum.Enum):
    Rotate0 = 1
    Rotate0Mirror = 2
    Rotate180 = 3
    Rotate180Mirror = 4
    Rotate90Mirror = 5
    Rotate270 = 6
    Rotate270Mirror = 7
    Rotate90 = 8


class StreamRole(enum.Enum):
    Raw, StillCapture, VideoRecording, Viewfinder = range(4)


class ControlType(enum.Enum):
    None_, Bool, Byte, Integer32, Integer64, Float, String, Rectangle, Size, Point = range(10)


class ControlId:
    _next = 1

    def __init__(self, name: str, type_: ControlType):
        self.name, self.type = name, type_
        self.id = ControlId._next
        ControlId._next += 1

    def __repr__(self):
        return f"libcamera.{self.name}"


class ControlInfo:
    def __init__(self, min_, max_, default):
        self.min, self.max, self.default = min_, max_, default


def _control_module(name: str, ids: dict[str, ControlType]) -> types.ModuleType:
    module = types.ModuleType(name)
    for control, type_ in ids.items():
        setattr(module, control, ControlId(control, type_))
    module.draft = types.SimpleNamespace(
        NoiseReductionModeEnum=enum.IntEnum("NoiseReductionModeEnum",
                                            "Off Fast HighQuality Minimal ZSL", start=0),
        ColorFilterArrangementEnum=enum.IntEnum("ColorFilterArrangementEnum",
                                                "RGGB GRBG GBRG BGGR RGB MONO", start=0),
    )
    return module


I32, I64, F, R = ControlType.Integer32, ControlType.Integer64, ControlType.Float, \
    ControlType.Rectangle
controls = _control_module("libcamera.controls", {
    "SensorTimestamp": I64, "ExposureTime": I32, "ExposureTimeMode": I32, "AnalogueGain": F,
    "AnalogueGainMode": I32, "FrameDuration": I64, "FrameDurationLimits": I64,
    "NoiseReductionMode": I32, "ScalerCrop": R, "AeEnable": ControlType.Bool,
})
properties = _control_module("libcamera.properties", {
    "Model": ControlType.String, "Location": I32, "Rotation": I32,
    "ColorFilterArrangement": I32, "PixelArraySize": ControlType.Size,
})


# -- configuration --------------------------------------------------------------------------------


class SensorConfiguration:
    def __init__(self):
        self.bit_depth = 0
        self.output_size = Size()


class StreamFormats:
    def __init__(self, sizes_by_format: dict[str, list[tuple[int, int]]]):
        self._sizes = sizes_by_format

    @property
    def pixel_formats(self):
        return [PixelFormat(name) for name in self._sizes]

    def sizes(self, pixel_format):
        return [Size(*s) for s in self._sizes[str(pixel_format)]]


class Stream:
    def __init__(self, configuration: "StreamConfiguration"):
        self.configuration = configuration


class StreamConfiguration:
    def __init__(self, role: StreamRole, formats: StreamFormats):
        self.role = role
        self.formats = formats
        self.size = Size(640, 480)
        self.pixel_format = PixelFormat("YUV420")
        self.buffer_count = 4
        self.stride = 0
        self.frame_size = 0
        self.color_space = None
        self.stream = None


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def stride_and_size(fmt: str, width: int, height: int) -> tuple[int, int]:
    """The buffer layout a Pi's ISP uses: rows aligned to 64 bytes (picamera2 handles padding)."""
    if fmt in ("YUV420", "YVU420"):
        stride = _align(width, 64)
        return stride, stride * height * 3 // 2
    if fmt in ("RGB888", "BGR888"):
        stride = _align(width * 3, 64)
    elif fmt in ("XBGR8888", "XRGB8888"):
        stride = _align(width * 4, 64)
    elif fmt.endswith("_CSI2P"):  # packed 10-bit raw
        stride = _align(width * 5 // 4, 32)
    else:
        raise ValueError(f"the camera double does not produce {fmt}")
    return stride, stride * height


class CameraConfiguration:
    class Status(enum.Enum):
        Valid, Adjusted, Invalid = range(3)

    def __init__(self, streams: list[StreamConfiguration]):
        self._streams = streams
        self.orientation = Orientation.Rotate0
        self.sensor_config = None

    def at(self, index: int) -> StreamConfiguration:
        return self._streams[index]

    def __iter__(self):
        return iter(self._streams)

    def __len__(self):
        return len(self._streams)

    @property
    def size(self):
        return len(self._streams)

    def validate(self):
        for config in self._streams:
            fmt = str(config.pixel_format)
            config.stride, config.frame_size = stride_and_size(fmt, config.size.width,
                                                               config.size.height)
            if config.color_space is None:
                config.color_space = ColorSpace.Sycc()
        return CameraConfiguration.Status.Valid


# -- requests and buffers -------------------------------------------------------------------------


class FrameMetadata:
    class Status(enum.Enum):
        Success, Error, Cancelled = range(3)

    def __init__(self, planes: int):
        self.status = FrameMetadata.Status.Success
        self.sequence = 0
        self.timestamp = 0
        self.planes = [types.SimpleNamespace(bytes_used=0) for _ in range(planes)]


class FrameBuffer:
    class Plane:
        def __init__(self):
            self.fd, self.offset, self.length = -1, 0, 0

    def __init__(self, planes, cookie: int = 0):
        self.planes = list(planes)
        self.cookie = cookie
        self.metadata = FrameMetadata(len(self.planes))


class Request:
    class Status(enum.Enum):
        Pending, Complete, Cancelled = range(3)

    def __init__(self, cookie):
        self.cookie = cookie
        self.status = Request.Status.Pending
        self.buffers: dict[Stream, FrameBuffer] = {}
        self.metadata: dict[ControlId, object] = {}
        self.controls: dict[ControlId, object] = {}
        self.sequence = 0

    def add_buffer(self, stream, buffer):
        self.buffers[stream] = buffer

    def set_control(self, control, value):
        self.controls[control] = value

    def reuse(self):
        self.status = Request.Status.Pending
        self.metadata = {}
        self.controls = {}


# -- the camera -----------------------------------------------------------------------------------

Scene = Callable[[int], np.ndarray]  # frame index -> BGR image (any size: it is resized per stream)


def _to_stream(image: np.ndarray, fmt: str, width: int, height: int, stride: int) -> np.ndarray:
    """`image` (BGR) as the bytes of one buffer of this stream, padding included."""
    if (image.shape[1], image.shape[0]) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if fmt == "YUV420":
        i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).reshape(-1)
        out = np.zeros(stride * height * 3 // 2, np.uint8)
        out[:stride * height].reshape(height, stride)[:, :width] = \
            i420[:width * height].reshape(height, width)
        chroma = (height // 2) * (width // 2)
        cstride = stride // 2
        for plane in range(2):
            start = stride * height + plane * (height // 2) * cstride
            out[start:start + (height // 2) * cstride].reshape(height // 2, cstride)[
                :, :width // 2] = i420[width * height + plane * chroma:
                                       width * height + (plane + 1) * chroma
                                       ].reshape(height // 2, width // 2)
        return out
    if fmt == "RGB888":  # picamera2's RGB888 is [B, G, R] in memory
        pixels = image
    elif fmt == "BGR888":
        pixels = image[:, :, ::-1]
    elif fmt == "XRGB8888":
        pixels = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    elif fmt == "XBGR8888":
        pixels = np.dstack([image[:, :, ::-1], np.full(image.shape[:2], 255, np.uint8)])
    else:  # raw Bayer: the test never looks at it
        return np.zeros(stride * height, np.uint8)
    out = np.zeros((height, stride), np.uint8)
    out[:, :pixels.shape[1] * pixels.shape[2]] = pixels.reshape(height, -1)
    return out.reshape(-1)


def _write_buffer(buffer: FrameBuffer, data: np.ndarray) -> None:
    plane = buffer.planes[0]
    with mmap.mmap(plane.fd, plane.length, mmap.MAP_SHARED, mmap.PROT_WRITE | mmap.PROT_READ) as mm:
        mm[:len(data)] = data.tobytes()
    buffer.metadata.planes[0].bytes_used = plane.length


RAW_MODES = {"SRGGB10_CSI2P": [(1536, 864), (2304, 1296), (4608, 2592)]}  # a Camera Module 3


class FakeCamera:
    """A Raspberry Pi camera module as libcamera presents it, with a scripted scene as its view."""

    def __init__(self, manager: "CameraManager", scene: Scene, fps: float = 15.0,
                 speed: float = 4.0, camera_id: str = "/base/soc/i2c0mux/i2c@1/imx708@1a",
                 fail_start: bool = False):
        self.manager = manager
        self.scene = scene
        self.fps = fps
        self.speed = speed
        self.id = camera_id
        self.fail_start = fail_start
        frame_us = round(1e6 / fps)
        self.properties = {
            properties.Model: "imx708", properties.Location: 2, properties.Rotation: 180,
            properties.ColorFilterArrangement: 0, properties.PixelArraySize: Size(4608, 2592),
        }
        self.controls = {
            controls.FrameDurationLimits: ControlInfo(frame_us, 1_000_000, frame_us),
            controls.ExposureTime: ControlInfo(1, 1_000_000, 20_000),
            controls.AnalogueGain: ControlInfo(1.0, 16.0, 1.0),
            controls.NoiseReductionMode: ControlInfo(0, 4, 0),
            controls.ScalerCrop: ControlInfo(Rectangle(0, 0, 64, 64),
                                             Rectangle(0, 0, 4608, 2592),
                                             Rectangle(0, 0, 4608, 2592)),
            controls.AeEnable: ControlInfo(False, True, True),
        }
        self.acquired = False
        self.configuration: CameraConfiguration | None = None
        self.started_controls: dict | None = None
        self.frames_delivered = 0
        self._queue: deque[Request] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self._frame_index = 0

    def __eq__(self, other):  # picamera2 finds "its" camera in the manager's list by ==
        return self is other

    __hash__ = object.__hash__

    # -- libcamera.Camera ---------------------------------------------------------------------

    def acquire(self):
        if self.acquired:
            raise RuntimeError("Failed to acquire camera: it is in use")
        self.acquired = True

    def release(self):
        self.acquired = False

    def generate_configuration(self, roles):
        return CameraConfiguration([StreamConfiguration(role, StreamFormats(RAW_MODES))
                                    for role in roles])

    def configure(self, configuration: CameraConfiguration) -> int:
        for config in configuration:
            config.stream = Stream(config)
        self.configuration = configuration
        return 0

    def create_request(self, cookie=0):
        return Request(cookie)

    def start(self, controls=None):
        if self.fail_start:
            raise RuntimeError("Failed to start camera: -19 (No such device)")
        self.started_controls = dict(controls or {})
        self._running = True
        self._thread = threading.Thread(target=self._sensor, name="fake-sensor", daemon=True)
        self._thread.start()

    def stop(self):
        with self._cv:
            self._running = False
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._cv:
            cancelled, self._queue = list(self._queue), deque()
        for request in cancelled:  # libcamera completes queued requests as cancelled on stop
            request.status = Request.Status.Cancelled
            for buffer in request.buffers.values():
                buffer.metadata.status = FrameMetadata.Status.Cancelled
            self.manager.complete(request)

    def queue_request(self, request):
        with self._cv:
            self._queue.append(request)
            self._cv.notify_all()

    # -- the sensor -----------------------------------------------------------------------------

    def wait_for_frames(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.frames_delivered < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def _sensor(self) -> None:
        frame_ns = round(1e9 / self.fps)
        start_ns = 5_000_000_000 + self._frame_index * frame_ns  # "uptime" of the first frame
        started = time.monotonic()
        produced = 0
        while True:
            with self._cv:
                while self._running and not self._queue:
                    self._cv.wait(0.05)
                if not self._running:
                    return
                request = self._queue.popleft()
            due = started + produced / (self.fps * self.speed)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            image = self.scene(self._frame_index)
            for stream, buffer in request.buffers.items():
                config = stream.configuration
                _write_buffer(buffer, _to_stream(image, str(config.pixel_format),
                                                 config.size.width, config.size.height,
                                                 config.stride))
                buffer.metadata.status = FrameMetadata.Status.Success
                buffer.metadata.sequence = self._frame_index
            timestamp_ns = start_ns + produced * frame_ns
            request.metadata = {
                controls.SensorTimestamp: timestamp_ns,
                controls.ExposureTime: 20_000,
                controls.AnalogueGain: 1.0,
                controls.FrameDuration: frame_ns // 1000,
            }
            request.sequence = self._frame_index
            request.status = Request.Status.Complete
            self._frame_index += 1
            produced += 1
            self.manager.complete(request)
            with self._cv:
                self.frames_delivered += 1
                self._cv.notify_all()


class CameraManager:
    """libcamera.CameraManager: the cameras, and completed requests signalled on an event fd."""

    _instance: "CameraManager | None" = None

    def __init__(self):
        self.cameras: list[FakeCamera] = []
        self.event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ready: deque[Request] = deque()
        self._lock = threading.Lock()

    @classmethod
    def singleton(cls) -> "CameraManager":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def get(self, camera_id):
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise RuntimeError(f"no camera {camera_id}")

    find = get

    def complete(self, request: Request) -> None:
        with self._lock:
            self._ready.append(request)
        os.eventfd_write(self.event_fd, 1)

    def get_ready_requests(self) -> list[Request]:
        with contextlib.suppress(BlockingIOError):  # the fd was read already
            os.eventfd_read(self.event_fd)
        with self._lock:
            ready, self._ready = list(self._ready), deque()
        return ready

    @property
    def version(self):
        return "v0.0.0+test-double"


# -- the modules ----------------------------------------------------------------------------------


def libcamera_module() -> types.ModuleType:
    module = types.ModuleType("libcamera")
    module.__doc__ = "A test double of libcamera's Python binding (tests/camera/picamera_doubles)."
    binding = types.ModuleType("libcamera._libcamera")
    for name, value in {
        "Size": Size, "Rectangle": Rectangle, "PixelFormat": PixelFormat, "Transform": Transform,
        "ColorSpace": ColorSpace, "Orientation": Orientation, "StreamRole": StreamRole,
        "ControlType": ControlType, "ControlId": ControlId, "ControlInfo": ControlInfo,
        "SensorConfiguration": SensorConfiguration, "StreamFormats": StreamFormats,
        "Stream": Stream, "StreamConfiguration": StreamConfiguration,
        "CameraConfiguration": CameraConfiguration, "FrameMetadata": FrameMetadata,
        "FrameBuffer": FrameBuffer, "Request": Request, "Camera": FakeCamera,
        "CameraManager": CameraManager,
    }.items():
        setattr(module, name, value)
        setattr(binding, name, value)
    module._libcamera = binding
    module.controls = controls
    module.properties = properties
    return module


def pykms_module() -> types.ModuleType:
    """pykms only serves picamera2's DRM preview, which a headless recorder never starts."""
    module = types.ModuleType("pykms")

    class _Formats:
        def __getattr__(self, name):
            return name

    module.PixelFormat = _Formats()
    module.PlaneType = types.SimpleNamespace(Primary=1, Overlay=2, Cursor=3)

    def _no_display(*_args, **_kwargs):
        raise RuntimeError("no display in the pykms test double")

    module.Card = module.ResourceManager = module.DumbFramebuffer = _no_display
    return module


def memfd_allocator_class():
    """picamera2's Allocator interface over memfd buffers (DmaAllocator needs /dev/dma_heap)."""
    from picamera2.allocators.allocator import Allocator, Sync

    class MemfdSync(Sync):
        def __init__(self, allocator, fb, write):
            self.allocator, self.fb = allocator, fb

        def __enter__(self):
            return self.allocator.mapped_buffers[self.fb]

        def __exit__(self, *exc):
            return None

    class MemfdAllocator(Allocator):
        def __init__(self):
            super().__init__()
            self.sync = MemfdSync
            self.mapped_buffers: dict[FrameBuffer, mmap.mmap] = {}
            self.frame_buffers: dict[Stream, list[FrameBuffer]] = {}

        def allocate(self, libcamera_config, use_case):
            self.close()
            for config in libcamera_config:
                buffers = []
                for index in range(config.buffer_count):
                    fd = os.memfd_create(f"picamera2-{index}", os.MFD_CLOEXEC)
                    os.ftruncate(fd, config.frame_size)
                    plane = FrameBuffer.Plane()
                    plane.fd, plane.offset, plane.length = fd, 0, config.frame_size
                    buffer = FrameBuffer([plane])
                    self.mapped_buffers[buffer] = mmap.mmap(fd, config.frame_size)
                    buffers.append(buffer)
                self.frame_buffers[config.stream] = buffers

        def buffers(self, stream):
            return self.frame_buffers[stream]

        def close(self):
            for buffer, memory in self.mapped_buffers.items():
                with contextlib.suppress(BufferError):  # an array still points into it: GC
                    memory.close()
                os.close(buffer.planes[0].fd)
            self.mapped_buffers = {}
            self.frame_buffers = {}

        def __del__(self):
            self.close()

    return MemfdAllocator


class Doubles:
    """What `install` set up: the camera manager (put FakeCameras in `.manager.cameras`)."""

    def __init__(self):
        self.manager = CameraManager.singleton()

    def add_camera(self, scene: Scene, **kwargs) -> FakeCamera:
        camera = FakeCamera(self.manager, scene, **kwargs)
        self.manager.cameras.append(camera)
        return camera


def install(monkeypatch) -> Doubles:
    """Put the doubles in sys.modules (for this test), import picamera2 and swap its allocator."""
    libcamera = libcamera_module()
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    monkeypatch.setitem(sys.modules, "libcamera._libcamera", libcamera._libcamera)
    monkeypatch.setitem(sys.modules, "pykms", pykms_module())
    import picamera2.picamera2

    monkeypatch.setattr(picamera2.picamera2, "DmaAllocator", memfd_allocator_class())
    doubles = Doubles()
    monkeypatch.setattr(doubles.manager, "cameras", [])
    return doubles
