"""The doorbell's own settings page shows its replicator's state, read from progress.json:
the paired target, the pinned host key, the last copy; "not paired" without the file, and one
sentence (never a 500) when the file cannot be used."""

import html
import json
import re
import time

import pytest

from tests.web.conftest import new_client, unlock_directly

FINGERPRINT = "SHA256:n3DoqJ8yA0cOq7aNfDk3Lzq1XQ2l8Pq7ZpYb8y2a0nE"


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "replica-state"
    path.mkdir()
    return path


@pytest.fixture
def device_page(make_app, identity, state_dir):
    def fetch(path: str) -> tuple[int, str]:
        app = make_app({"replica.state_dir": str(state_dir)})
        client = new_client(app)
        unlock_directly(app, client, identity)
        page = client.get(path)
        return page.status_code, html.unescape(page.get_data(as_text=True))

    return fetch


@pytest.fixture
def settings_page(device_page):
    return lambda: device_page("/settings")


@pytest.fixture
def berlin(monkeypatch):
    """The device's zone is Europe/Berlin for this test (TZ, as systemd passes it)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_paired_replicator_shows_its_target_key_and_last_copy(settings_page, state_dir,
                                                                berlin):
    (state_dir / "progress.json").write_text(json.dumps({
        "target": "sftp://doorbell@192.168.1.20:22/srv/doorbell/front",
        "host_key_fingerprint": FINGERPRINT, "last_copy_wall_us": 1_764_806_400_000_000,
        "pending_files": 2, "last_error": "the replica server is unreachable",
        "updated_wall_us": 1_764_806_401_000_000}))
    status, page = settings_page()
    assert status == 200
    assert "sftp://doorbell@192.168.1.20:22/srv/doorbell/front" in page
    assert FINGERPRINT in page
    # 2025-12-04 00:00 UTC, on the device's clock with its zone label
    assert 'id="replica-last-copy">4 Dec 2025, 01:00:00 CET</dd>' in page
    assert "the replica server is unreachable" in page


def test_no_progress_file_means_not_paired(settings_page):
    status, page = settings_page()
    assert status == 200 and 'id="replica-unpaired"' in page
    # Paired or not, the page says what a replica learns and how to recover from it.
    assert "learns only when clips were recorded, how big they are and the members' names" in page
    assert "age -d -i recovery-key.txt CLIP.mp4.age > clip.mp4" in page


@pytest.mark.parametrize("content", [b"{not json", b'{"target": 3}', b"[]",
                                     json.dumps({"target": "x"}).encode()])
def test_a_damaged_progress_file_is_one_sentence_not_a_500(settings_page, state_dir, content):
    (state_dir / "progress.json").write_bytes(content)
    status, page = settings_page()
    assert status == 200
    assert 'id="replica-problem"' in page and "is not the replicator's progress file" in page


def test_the_status_page_says_how_long_ago_everything_was_copied(device_page, state_dir):
    now_us = time.time_ns() // 1000
    (state_dir / "progress.json").write_text(json.dumps({
        "target": "sftp://doorbell@192.168.1.20:22/srv/doorbell/front",
        "host_key_fingerprint": FINGERPRINT, "last_copy_wall_us": now_us - 42_000_000,
        "pending_files": 0, "last_error": None, "updated_wall_us": now_us}))
    status, page = device_page("/status")
    assert status == 200
    assert re.search(r'id="st-replica">everything copied 4[2-9] s ago<', page), page[-3000:]
    status, data = device_page("/status.json")
    assert json.loads(data)["replica"]["paired"] is True
    (state_dir / "progress.json").unlink()
    assert 'id="st-replica">not paired<' in device_page("/status")[1]
