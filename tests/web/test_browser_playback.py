"""Decrypted clips play and seek in Chromium's <video>, served with HTTP Range like the viewer does.

Needs Debian's Chromium (/usr/bin/chromium) and the playwright package (its own browser download
is never used).
"""

import contextlib
import io
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

PAGE = b"""<!doctype html>
<html><body>
<video id="clip" muted playsinline preload="auto"></video>
</body></html>
"""


class RangeHandler(BaseHTTPRequestHandler):
    """Serves `server.files` (path -> bytes) with single `Range: bytes=` requests."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = self.server.files.get(self.path.split("?")[0])
        if body is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        kind = "text/html" if self.path.endswith(".html") else "video/mp4"
        start, end, status = 0, len(body) - 1, HTTPStatus.OK
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted.removeprefix("bytes=").split(",")[0].strip().partition("-")
            if first:
                start, end = int(first), min(int(last) if last else end, end)
            else:  # a suffix: the last N bytes
                start = max(0, len(body) - int(last))
            if start > end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body[start:end + 1])  # the browser may hang up once it has enough

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    server.files = {"/page.html": PAGE}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def clips(vtest_recording, mp4):
    """(full clip MP4, its duration; recovered prefix of the same clip cut short, its duration)."""
    from doorbell.storage.age.reader import recover_prefix
    from doorbell.storage.clipid import clip_paths

    home, result = vtest_recording
    assert result.returncode == 0, result.stderr
    recorded = home.clips()
    assert recorded, "vtest.avi produced no clip"
    clip = max(recorded, key=lambda c: c.meta["duration_s"])
    video, truncated = home.video(clip.id)
    assert not truncated

    encrypted = clip_paths(home.clips_dir, clip.id)["video"].read_bytes()
    cut = home.scratch / "cut.mp4.age"
    cut.write_bytes(encrypted[: len(encrypted) * 3 // 5 + 12345])  # mid-chunk, like a power cut
    with cut.open("rb") as handle:
        recovered = recover_prefix(handle, [home.identity()])
        assert recovered.truncated
        prefix = recovered.reader.read()
    complete = mp4.complete_frames(prefix)
    assert complete > 0
    # the prefix's playable length, from its own timestamps: up to the last complete fragment
    frames, _ = mp4.decode(prefix)
    interval_s = (frames[-1].time - frames[0].time) / (len(frames) - 1)
    return video, clip.meta["duration_s"], prefix, frames[complete - 1].time + interval_s


@pytest.fixture(scope="module")
def passthrough_clip(recorder_home_factory, tmp_path_factory):
    """(MP4, duration) of a clip `doorbell record` made of an RTSP camera's own H.264 (the real
    GStreamer server serving bikes.mp4, which has B-frames): remuxed, never re-encoded."""
    from tests.camera.rtsp_server import RtspServer, looped_h264, missing_gstreamer
    from tests.recorder_home import video_file

    source = video_file("bikes.mp4")
    if (reason := missing_gstreamer()) is not None:
        pytest.skip(reason)
    server = RtspServer(looped_h264(source, tmp_path_factory.mktemp("rtsp"), repeats=3))
    server.start()
    home = recorder_home_factory("passthrough")
    config = home.root / "config.toml"
    config.write_text(config.read_text().replace(
        "[camera]\n", f'[camera]\nsource = "{server.url()}"\n', 1))
    process, log = home.start("record")
    try:
        deadline = time.monotonic() + 30
        while "started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "started" in log.read_text(), log.read_text()
        time.sleep(7)
    finally:
        process.terminate()  # SIGTERM: the open clip is sealed
        process.wait(timeout=30)
        server.stop()
    clips = [c for c in home.clips() if c.state == "complete"]
    assert clips, log.read_text()
    clip = max(clips, key=lambda c: c.meta["duration_s"])
    video, truncated = home.video(clip.id)
    assert not truncated
    # the camera's own pictures, bit for bit: nothing was decoded and encoded again
    with av.open(str(source)) as container:
        camera = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    with av.open(io.BytesIO(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 25 == 0:
                picture = frame.to_ndarray(format="bgr24")
                assert any(np.array_equal(picture, c) for c in camera), index
    return video, clip.meta["duration_s"]


def play_and_seek(browser, base_url: str, src: str) -> dict:
    page = browser.new_page()
    try:
        page.goto(f"{base_url}/page.html")
        return page.evaluate(
            """async (src) => {
                const v = document.getElementById('clip');
                const event = (name, ms) => new Promise((resolve, reject) => {
                    const timer = setTimeout(
                        () => reject(new Error(name + ' timed out; error ' +
                                               (v.error && v.error.message))), ms);
                    v.addEventListener(name, () => { clearTimeout(timer); resolve(); },
                                       {once: true});
                });
                const loaded = event('loadedmetadata', 15000);
                v.src = src;
                await loaded;
                const out = {duration: v.duration, width: v.videoWidth, height: v.videoHeight};
                await v.play();
                const started = performance.now();
                while (v.currentTime < 0.6 && performance.now() - started < 10000) {
                    await new Promise(r => setTimeout(r, 50));
                }
                out.playedTo = v.currentTime;
                v.pause();
                out.target = v.duration / 2;
                const seeked = event('seeked', 15000);
                v.currentTime = out.target;
                await seeked;
                out.afterSeek = v.currentTime;
                out.error = v.error ? v.error.message : null;
                return out;
            }""",
            src,
        )
    finally:
        page.close()


def test_clip_plays_and_seeks_in_chromium(chromium, served, clips):
    video, duration_s, _, _ = clips
    served.files["/clip.mp4"] = video
    base = f"http://127.0.0.1:{served.server_address[1]}"
    result = play_and_seek(chromium, base, "/clip.mp4")
    assert result["error"] is None
    assert result["width"] > 0 and result["height"] > 0
    assert result["duration"] == pytest.approx(duration_s, abs=0.5), result
    assert result["playedTo"] >= 0.6, f"currentTime did not advance: {result}"
    assert result["afterSeek"] == pytest.approx(result["target"], abs=0.3), result


def test_truncated_clip_prefix_plays_in_chromium(chromium, served, clips):
    _, full_duration_s, prefix, prefix_duration_s = clips
    served.files["/prefix.mp4"] = prefix
    base = f"http://127.0.0.1:{served.server_address[1]}"
    result = play_and_seek(chromium, base, "/prefix.mp4")
    assert result["error"] is None
    assert result["duration"] < full_duration_s
    # it plays up to its last complete fragment (a partly received one may add a little)
    assert result["duration"] >= prefix_duration_s - 0.2, result
    assert result["duration"] <= prefix_duration_s + 2.0, result
    assert result["playedTo"] >= 0.6, f"currentTime did not advance: {result}"
    assert result["afterSeek"] == pytest.approx(result["target"], abs=0.3), result


def test_passthrough_clip_plays_and_seeks_in_chromium(chromium, served, passthrough_clip):
    video, duration_s = passthrough_clip
    served.files["/passthrough.mp4"] = video
    base = f"http://127.0.0.1:{served.server_address[1]}"
    result = play_and_seek(chromium, base, "/passthrough.mp4")
    assert result["error"] is None
    assert (result["width"], result["height"]) == (640, 272)  # the camera's own picture
    assert duration_s >= 4 and result["duration"] == pytest.approx(duration_s, abs=0.5), result
    assert result["playedTo"] >= 0.6, f"currentTime did not advance: {result}"
    assert result["afterSeek"] == pytest.approx(result["target"], abs=0.3), result
