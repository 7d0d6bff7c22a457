"""Fixtures for the viewer tests: an initialised home with real encrypted clips, and the app.

The home is made once per test session (`doorbell init` as a subprocess, scrypt at 2^15, then
clips written the way the recorder writes them: ClipStore + recipients.txt, public keys only)
and copied for each test, so every test gets its own index, audit log and rate-limit database.

Logging in through POST /login costs one scrypt (about 0.3 s here): the auth tests do it for
real; the other tests use `unlocked`, which puts a session for the member's real identity
straight into the app's session store and gives the client its cookie.
"""

import io
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import clean_env

PROJECT = Path(__file__).resolve().parents[2]
MEMBER = "alice"
PASSPHRASE = "amber-kettle-under-snow-31"
SESSION_COOKIE = "__Host-doorbell-session"
ORIGIN = "http://localhost"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
FAST_WORK_FACTOR = 15  # scrypt log2 N for identities the tests create (the minimum age allows)


def doorbell(*args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "doorbell", *args], capture_output=True, text=True,
        timeout=timeout, env=clean_env(**extra_env), cwd=PROJECT, stdin=subprocess.DEVNULL,
        check=False,
    )


def local_today_at(hour: int, minute: int = 0, days_ago: int = 0) -> int:
    """µs since the epoch of HH:MM local time, `days_ago` days before today."""
    day = datetime.now().astimezone() - timedelta(days=days_ago)
    moment = day.replace(hour=hour, minute=minute, second=0, microsecond=0)
    # Re-attach the zone of that day (DST): astimezone() on a naive local time does that.
    return int(moment.replace(tzinfo=None).astimezone().timestamp() * 1_000_000)


def make_mp4(frames: int = 20, width: int = 160, height: int = 120, fps: int = 10) -> bytes:
    """A real fragmented H.264 MP4, made by the recorder's own encoder and muxer."""
    import numpy as np

    from doorbell.camera.encoder import H264Encoder
    from doorbell.camera.frames import Frame
    from doorbell.camera.mp4 import FragmentedMp4Writer

    encoder = H264Encoder(width, height, fps, preset="ultrafast")
    buffer = io.BytesIO()
    writer = FragmentedMp4Writer(buffer, width, height, fps)
    for i in range(frames):
        image = np.zeros((height, width, 3), np.uint8)
        image[:, (i * 7) % width :] = (40 + i * 10) % 256
        for packet in encoder.encode(Frame(image, i * 1_000_000 // fps)):
            writer.write(packet)
    for packet in encoder.flush():
        writer.write(packet)
    writer.close()
    return buffer.getvalue()


def make_jpeg(shade: int = 128, width: int = 64, height: int = 36) -> bytes:
    import cv2
    import numpy as np

    image = np.full((height, width, 3), shade, np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def pseudo_random(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Clip:
    id: str
    video: bytes
    thumbnail: bytes | None
    metadata: dict
    start_us: int


def write_clip(root: Path, start_us: int, video: bytes, thumbnail: bytes | None,
               metadata: dict) -> Clip:
    """Record a clip the way the recorder does: ClipStore + recipients.txt, public keys only."""
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.home import Home
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients

    home = Home(root)
    with ClipIndex(home.index_file) as index:
        store = ClipStore(home.clips_dir, index, read_recipients(home.recipients_file))
        writer = store.begin_clip(start_us)
        for offset in range(0, len(video), 50_000):
            writer.video.write(video[offset : offset + 50_000])
        clip = writer.finish(thumbnail, metadata)
    return Clip(clip.id, video, thumbnail, metadata, start_us)


@dataclass
class HomeFixture:
    root: Path
    clips: dict[str, Clip] = field(default_factory=dict)

    @property
    def home(self):
        from doorbell.storage.home import Home

        return Home(self.root)

    def paths(self, clip_id: str) -> dict[str, Path]:
        from doorbell.storage.clipid import clip_paths

        return clip_paths(self.root / "clips", clip_id)

    def audit(self) -> list:
        from doorbell.storage.audit import AuditLog

        return AuditLog(self.root / "audit.jsonl").entries()

    def actions(self, action: str) -> list:
        return [e for e in self.audit() if e.action == action]

    def index_row(self, clip_id: str):
        from doorbell.storage.index import ClipIndex

        with ClipIndex(self.root / "index.sqlite3") as index:
            return index.get(clip_id)

    def write_config(self, text: str) -> None:
        (self.root / "config.toml").write_text(text)


@pytest.fixture(scope="session")
def template_home(tmp_path_factory) -> HomeFixture:
    base = tmp_path_factory.mktemp("template")
    root = base / "home"
    passphrase_file = base / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE + "\n")
    passphrase_file.chmod(0o600)
    result = doorbell("init", "--home", str(root), "--user", MEMBER,
                      "--passphrase-file", str(passphrase_file), "--work-factor", "15")
    assert result.returncode == 0, result.stdout + result.stderr
    fixture = HomeFixture(root)
    fixture.clips["doorbell"] = write_clip(
        root, local_today_at(8, 5), make_mp4(), make_jpeg(200),
        {"trigger": "doorbell", "duration_s": 2.0, "start_us": local_today_at(8, 5)})
    fixture.clips["motion"] = write_clip(
        root, local_today_at(13, 20), pseudo_random(300 * 1024 + 123, 1), make_jpeg(60),
        {"trigger": "motion", "duration_s": 12.5, "start_us": local_today_at(13, 20)})
    fixture.clips["yesterday"] = write_clip(
        root, local_today_at(18, 0, days_ago=1), pseudo_random(20_000, 2), make_jpeg(90),
        {"trigger": "motion", "duration_s": 4.0, "start_us": local_today_at(18, 0, days_ago=1)})
    return fixture


@pytest.fixture(scope="session")
def identity(template_home):
    """alice's unlocked identity (one scrypt for the whole test session)."""
    from doorbell.storage.keyring import Keyring

    return Keyring(template_home.root / "identities").unlock(MEMBER, PASSPHRASE)


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("DOORBELL_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def home(template_home, tmp_path, runtime_dir) -> HomeFixture:
    root = tmp_path / "home"
    shutil.copytree(template_home.root, root)
    return HomeFixture(root, dict(template_home.clips))


@pytest.fixture
def make_app(home):
    """make_app(**{"viewer.key": value}) -> a new app on the same home (a "restart")."""
    from doorbell.config import load_settings
    from doorbell.storage.home import Home
    from doorbell.web import create_app

    def make(overrides: dict | None = None):
        settings = load_settings(home.root)
        if overrides:
            settings = settings.with_overrides(overrides, source="test")
        app = create_app(settings, Home(home.root), testing=True)
        app.extensions["doorbell"].work_factor = FAST_WORK_FACTOR  # new identities: fast scrypt
        return app

    return make


@pytest.fixture
def app(make_app):
    return make_app()


def new_client(app, address: str = "127.0.0.1"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.fixture
def client(app):
    return new_client(app)


def login(client, member: str = MEMBER, passphrase: str = PASSPHRASE, **kwargs):
    """POST /login as a browser on the same origin would."""
    headers = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", **kwargs.pop("headers", {})}
    return client.post("/login", data={"member": member, "passphrase": passphrase},
                       headers=headers, **kwargs)


def csrf_token(client) -> str:
    # Every page carries it; this one shows no footage, so fetching it writes no audit entry.
    page = client.get("/settings")
    assert page.status_code == 200, page.status_code
    match = CSRF_FIELD.search(page.get_data(as_text=True))
    assert match, "no CSRF token in the page"
    return match.group(1)


def session_cookie(client) -> str | None:
    cookie = client.get_cookie(SESSION_COOKIE)
    return cookie.value if cookie else None


def unlock_directly(app, client, identity, member: str = MEMBER) -> str:
    """Put an unlocked session for `identity` into the app and give the client its cookie."""
    session_id, _session = app.extensions["doorbell"].sessions.create(member, identity)
    client.set_cookie(SESSION_COOKIE, session_id, domain="localhost", path="/")
    return session_id


@pytest.fixture
def unlocked(app, client, identity):
    """A client with an unlocked session for alice (without paying for scrypt)."""
    unlock_directly(app, client, identity)
    return client


def post_form(client, path: str, data: dict | None = None, **kwargs):
    """A same-origin form POST carrying the page's CSRF token."""
    form = {"csrf_token": csrf_token(client), **(data or {})}
    headers = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", **kwargs.pop("headers", {})}
    return client.post(path, data=form, headers=headers, **kwargs)


# -- a home before set-up (no household keys yet) ------------------------------------------------

@pytest.fixture
def fresh_home(tmp_path, runtime_dir) -> HomeFixture:
    """An empty home directory, as `doorbell serve` finds it before anyone set the device up."""
    root = tmp_path / "fresh"
    root.mkdir(mode=0o750)
    return HomeFixture(root)


@pytest.fixture
def make_fresh_app(fresh_home):
    """make_fresh_app({"viewer.key": value}) -> a viewer on the empty home, with a new code."""
    from doorbell.config import load_settings
    from doorbell.storage.home import Home
    from doorbell.web import create_app

    def make(overrides: dict | None = None):
        settings = load_settings(fresh_home.root)
        if overrides:
            settings = settings.with_overrides(overrides, source="test")
        app = create_app(settings, Home(fresh_home.root), testing=True)
        app.extensions["doorbell"].work_factor = FAST_WORK_FACTOR
        return app

    return make


@pytest.fixture
def fresh_app(make_fresh_app):
    return make_fresh_app()


@pytest.fixture
def setup_code(fresh_app) -> str:
    """The code the viewer printed to its console, as displayed (XXXX-XXXX-XXXX)."""
    return fresh_app.extensions["doorbell"].setup.display
