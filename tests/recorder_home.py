"""A recorder's home for tests (a pytest plugin, loaded by tests/conftest.py), and MP4 readers.

`doorbell init --work-factor 15 --passphrase-file` runs once per session into a template home;
each `recorder_home` is a copy (same keys, fresh clips) with a 640x360 camera via
home/config.toml and its own DOORBELL_RUNTIME_DIR. `recorder_home.record(...)` runs the Recorder
in-process with a fixed wall-clock origin (wall time = ORIGIN_US + pts), so clip times map back
to the synthetic ground truth exactly. The recorder, `doorbell record` and browser playback tests
all use it (tests/camera calls it `home`).

Fixtures: `recorder_home`, `recorder_home_factory`, `mp4`, `footage`, `vtest_recording`.
"""

import io
import os
import shutil
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import clean_env

PROJECT = Path(__file__).resolve().parents[1]
VIDEO_DIR = PROJECT.parent / "shared" / "testdata" / "video"
PASSPHRASE = "amber-kettle-under-snow-31"
ORIGIN_US = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z: wall clock of the first frame
WIDTH, HEIGHT, FPS = 640, 360, 15


def camera_config(width: int, height: int, fps: int) -> str:
    """config.toml for a test recorder: this frame size and rate, no free-space pruning."""
    return f"""\
[camera]
width = {width}
height = {height}
fps = {fps}

[retention]
# the test machine's free space must not decide which clips survive
min_free_bytes = 0
"""


BASE_CONFIG = camera_config(WIDTH, HEIGHT, FPS)

_IDENTITIES: dict[bytes, object] = {}


# -- reading MP4 without trusting the muxer: boxes, fragments, decoding ---------------------------


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """(type, offset, size) of the ISO BMFF boxes in data[start:end]."""
    end = len(data) if end is None else end
    found, offset = [], start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        elif size == 0:
            size = end - offset
        if size < 8:
            break
        found.append((kind.decode("latin-1"), offset, size))
        offset += size
    return found


def trun_sample_count(data: bytes, moof_offset: int, moof_size: int) -> int:
    """Samples in a fragment: moof > traf > trun's sample_count."""
    total = 0
    for kind, offset, size in mp4_boxes(data, moof_offset + 8, moof_offset + moof_size):
        if kind == "traf":
            for inner, inner_offset, _ in mp4_boxes(data, offset + 8, offset + size):
                if inner == "trun":
                    total += struct.unpack(">I", data[inner_offset + 12:inner_offset + 16])[0]
    return total


def mp4_fragments(data: bytes) -> list[tuple[int, int, int]]:
    """[(moof offset, end of its mdat, samples)] for each moof+mdat pair present in data.

    A fragment is complete when its end <= len(data); the last one of a cut file may not be.
    """
    top = mp4_boxes(data)
    out = []
    for (kind, offset, size), following in zip(top, top[1:] + [None], strict=True):
        if kind == "moof" and offset + size <= len(data):
            end = following[1] + following[2] if following and following[0] == "mdat" else \
                len(data) + 1
            out.append((offset, end, trun_sample_count(data, offset, size)))
    return out


def complete_fragment_frames(data: bytes) -> int:
    return sum(n for _, end, n in mp4_fragments(data) if end <= len(data))


def decode_mp4(data: bytes, ndarray: bool = False) -> tuple[list, Exception | None]:
    """Frames PyAV decodes from an MP4 in memory, and the error that ended decoding (if any)."""
    import av

    frames, error = [], None
    try:
        with av.open(io.BytesIO(data)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="bgr24") if ndarray else frame)
    except av.FFmpegError as exc:
        error = exc
    return frames, error


@pytest.fixture(scope="session")
def mp4():
    """MP4 helpers for the tests: boxes, fragments, complete_frames, decode."""
    return SimpleNamespace(boxes=mp4_boxes, fragments=mp4_fragments,
                           complete_frames=complete_fragment_frames, decode=decode_mp4)


@dataclass
class RecordedClip:
    id: str
    state: str
    size_bytes: int
    meta: dict | None  # decrypted metadata (None for an interrupted clip)

    @property
    def start_us(self) -> int:
        return self.meta["start_us"]

    @property
    def end_us(self) -> int:
        return self.meta["start_us"] + round(self.meta["duration_s"] * 1e6)

    @property
    def trigger(self) -> str:
        return self.meta["trigger"]


@dataclass
class RecorderHome:
    root: Path
    run_dir: Path
    passphrase_file: Path
    scratch: Path  # a directory outside the home for keys, exports, logs
    processes: list = field(default_factory=list)

    # -- paths and settings ---------------------------------------------------------------------

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    @property
    def identities_dir(self) -> Path:
        return self.root / "identities"

    def configure(self, extra_toml: str = "") -> None:
        (self.root / "config.toml").write_text(BASE_CONFIG + extra_toml)

    def settings(self):
        from doorbell.config import load_settings

        return load_settings(self.root)

    # -- the command line -----------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(DOORBELL_HOME=str(self.root), DOORBELL_RUNTIME_DIR=str(self.run_dir),
                         **extra)

    def doorbell(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "doorbell", *args], capture_output=True, text=True,
            timeout=timeout, env=self.env(), cwd=PROJECT, stdin=subprocess.DEVNULL, check=False,
        )

    def start(self, *args: str, log_name: str = "record.log") -> tuple[subprocess.Popen, Path]:
        """Start `doorbell ARGS` in the background; its stderr and stdout go to a log file."""
        log = self.scratch / log_name
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "doorbell", *args], stdout=handle,
                stderr=subprocess.STDOUT, env=self.env(), cwd=PROJECT, stdin=subprocess.DEVNULL,
            )
        self.processes.append(process)
        return process, log

    # -- keys (the household's side: tests only) ------------------------------------------------

    def identity(self):
        """The owner's unlocked X25519 identity (scrypt once per session)."""
        from doorbell.storage.keyring import Keyring

        key = (self.identities_dir / "owner.age").read_bytes()
        if key not in _IDENTITIES:
            _IDENTITIES[key] = Keyring(self.identities_dir).unlock("owner", PASSPHRASE)
        return _IDENTITIES[key]

    def identity_file(self) -> Path:
        """The owner's secret key as a plain age identity file (mode 0600), outside the home."""
        path = self.scratch / "owner-identity.txt"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{self.identity()}\n")
        return path

    # -- reading what was recorded --------------------------------------------------------------

    def index_rows(self):
        from doorbell.storage.index import ClipIndex

        with ClipIndex(self.root / "index.sqlite3") as index:
            return index.clips(newest_first=False)

    def clips(self) -> list[RecordedClip]:
        from doorbell.storage.clipreader import read_metadata

        return [RecordedClip(row.id, row.state, row.size_bytes,
                             read_metadata(self.clips_dir, row.id, [self.identity()]))
                for row in self.index_rows()]

    def video(self, clip_id: str) -> tuple[bytes, bool]:
        """(decrypted MP4 bytes, truncated) through the store's prefix-recovering reader."""
        from doorbell.storage.clipreader import open_video

        opened = open_video(self.clips_dir, clip_id, [self.identity()])
        try:
            return opened.reader.read(), opened.truncated
        finally:
            opened.close()

    def thumbnail(self, clip_id: str) -> bytes | None:
        from doorbell.storage.clipreader import read_thumbnail

        return read_thumbnail(self.clips_dir, clip_id, [self.identity()])

    # -- the recorder in-process ----------------------------------------------------------------

    def record(self, source, presses=None, stop: threading.Event | None = None,
               until_eof: bool = True, live: bool = True, **recorder_kwargs):
        """Run the Recorder here over `source`: a FrameSource, or a callable opening one,
        recorded by the software pipeline."""
        from doorbell.camera.live import LiveFramePublisher, StatusPublisher, prepare_runtime_dir
        from doorbell.camera.recorder import Recorder
        from doorbell.camera.software import SoftwarePipeline
        from doorbell.storage.audit import AuditLog
        from doorbell.storage.clipwriter import ClipStore
        from doorbell.storage.index import ClipIndex
        from doorbell.storage.recipients import read_recipients

        settings = self.settings()
        open_source = source if callable(source) else (lambda: source)
        prepare_runtime_dir(self.run_dir)
        recorder_kwargs.setdefault("wall_clock_us", lambda: ORIGIN_US)
        with ClipIndex(self.root / "index.sqlite3") as index:
            store = ClipStore(self.clips_dir, index, read_recipients(self.root / "recipients.txt"))
            publisher = None
            if live:
                publisher = LiveFramePublisher(self.run_dir / "live.jpg", settings.live.fps,
                                               settings.live.width, settings.live.jpeg_quality)
            recorder = Recorder(settings, store, AuditLog(self.root / "audit.jsonl"), presses,
                                publisher, StatusPublisher(self.run_dir / "recorder.json"),
                                **recorder_kwargs)
            recorder.run(lambda settings: SoftwarePipeline(open_source(), settings),
                         stop or threading.Event(), until_eof=until_eof)
        return recorder


@pytest.fixture(scope="session")
def recorder_template_home(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("template")
    passphrase = base / "passphrase.txt"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    root = base / "home"
    result = subprocess.run(
        [sys.executable, "-m", "doorbell", "init", "--home", str(root), "--passphrase-file",
         str(passphrase), "--work-factor", "15"],
        capture_output=True, text=True, timeout=120, env=clean_env(), cwd=PROJECT,
        stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 0, result.stderr
    return root


def _make_home(template: Path, base: Path) -> RecorderHome:
    base.mkdir(parents=True, exist_ok=True)
    root = base / "home"
    shutil.copytree(template, root)
    passphrase = base / "passphrase.txt"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    scratch = base / "scratch"
    scratch.mkdir()
    home = RecorderHome(root, base / "run", passphrase, scratch)
    home.configure()
    return home


def _stop_processes(home: RecorderHome) -> None:
    for process in home.processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def recorder_home(recorder_template_home, tmp_path, monkeypatch) -> RecorderHome:
    """A fresh home for one test; DOORBELL_RUNTIME_DIR is its own run dir while the test runs."""
    made = _make_home(recorder_template_home, tmp_path)
    monkeypatch.setenv("DOORBELL_RUNTIME_DIR", str(made.run_dir))
    monkeypatch.delenv("DOORBELL_HOME", raising=False)
    yield made
    _stop_processes(made)


def video_file(name: str) -> Path:
    path = VIDEO_DIR / name
    if not path.is_file():
        pytest.skip(f"test video {path} is not available (../shared/testdata/video)")
    return path


@pytest.fixture(scope="session")
def recorder_home_factory(recorder_template_home, tmp_path_factory):
    """For module- and session-scoped recordings: `recorder_home_factory("name")` -> a home."""
    made: list[RecorderHome] = []

    def make(name: str) -> RecorderHome:
        new = _make_home(recorder_template_home, tmp_path_factory.mktemp(name))
        made.append(new)
        return new

    yield make
    for new in made:
        _stop_processes(new)


@pytest.fixture(scope="session")
def footage():
    """`footage("vtest.avi")`: a test video's path, or skip the test if it is not there."""
    return video_file


@pytest.fixture(scope="session")
def vtest_recording(recorder_home_factory):
    """`doorbell record --source vtest.avi --until-eof` once per session: (home, result)."""
    source = video_file("vtest.avi")
    made = recorder_home_factory("vtest")
    result = made.doorbell("record", "--source", str(source), "--until-eof", timeout=300)
    return made, result
