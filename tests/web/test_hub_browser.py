"""Chromium plays a replica clip on the hub: `doorbell serve` (gunicorn) over a replica folder
filled by the real replicator over a real sshd; unlock through the login form, open the clip
from the timeline, play and seek it."""

import shutil
import subprocess
import sys
import urllib.request

import pytest

from tests.helpers import clean_env, free_port
from tests.sftp_server import SftpServer
from tests.web import browser_fixtures
from tests.web.browser_fixtures import stop_process, unlock, wait_until, watch_page
from tests.web.conftest import PROJECT, local_today_at, make_jpeg, make_mp4, write_clip
from tests.web.hub_replicas import replicate_until_copied

chromium = browser_fixtures.chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Plays the page's <video id="player"> (muted) for a moment, then seeks to its middle.
PLAY_AND_SEEK = """async () => {
    const v = document.getElementById('player');
    const event = (name, ms) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(name + ' timed out')), ms);
        v.addEventListener(name, () => { clearTimeout(timer); resolve(); }, {once: true});
    });
    if (v.readyState < 1) await event('loadedmetadata', 20000);
    const out = {duration: v.duration, width: v.videoWidth, height: v.videoHeight};
    v.muted = true;
    await v.play();
    const started = performance.now();
    while (v.currentTime < 0.8 && performance.now() - started < 15000) {
        await new Promise(r => setTimeout(r, 50));
    }
    out.playedTo = v.currentTime;
    v.pause();
    out.target = v.duration / 2;
    const seeked = event('seeked', 20000);
    v.currentTime = out.target;
    await seeked;
    out.afterSeek = v.currentTime;
    out.error = v.error ? v.error.message : null;
    return out;
}"""


@pytest.fixture
def hub(template_home, tmp_path):
    """`doorbell serve` as a hub over one camera's replica; yields (base URL, clip)."""
    home = tmp_path / "front-home"
    shutil.copytree(template_home.root, home)
    clip = write_clip(home, local_today_at(10, 10), make_mp4(frames=40, width=320, height=240),
                      make_jpeg(150), {"trigger": "doorbell", "duration_s": 4.0})
    server = SftpServer(tmp_path / "sshd").start()
    try:
        replicate_until_copied(server, {"front": home})
    finally:
        server.stop()
    hub_home = tmp_path / "hub-home"
    hub_home.mkdir()
    (hub_home / "config.toml").write_text(
        f'[hub]\ncameras = {{ front = "{server.root / "front"}" }}\n')
    (tmp_path / "run").mkdir(mode=0o700)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("ab") as output:
        viewer = subprocess.Popen(
            [sys.executable, "-m", "doorbell", "serve", "--home", str(hub_home), "--bind",
             f"127.0.0.1:{port}"], cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
            env=clean_env(DOORBELL_RUNTIME_DIR=str(tmp_path / "run")))
    base_url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert viewer.poll() is None, log.read_text()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{base_url}/login", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(answers, 30, "the hub's viewer", describe=log.read_text)
        yield base_url, clip
    finally:
        stop_process(viewer)


def test_chromium_plays_and_seeks_a_replica_clip_on_the_hub(chromium, hub):
    base_url, clip = hub
    with watch_page(chromium, base_url) as (page, watch):
        unlock(page)
        link = f'a[href="/clips/{clip.id}?camera=front"]'
        assert page.locator(link).count() == 1, page.content()[:3000]
        page.click(link)
        page.wait_for_url(f"**/clips/{clip.id}?camera=front")
        assert page.locator("#clip-camera").inner_text().startswith("Camera front")
        result = page.evaluate(PLAY_AND_SEEK)
        assert result["error"] is None, result
        assert result["width"] == 320 and result["height"] == 240, result
        assert result["duration"] == pytest.approx(4.0, abs=0.5), result
        assert result["playedTo"] >= 0.8, f"currentTime did not advance: {result}"
        assert result["afterSeek"] == pytest.approx(result["target"], abs=0.3), result
        assert any(url.endswith(f"/clips/{clip.id}/video?camera=front")
                   for url in watch.requests), watch.requests
        watch.assert_clean(page)
