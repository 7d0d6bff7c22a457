"""One clip: ids that are not clips, tampering, exact bytes, export, delete, interrupted clips."""

import hashlib
import re

import pytest

from .conftest import MEMBER, post_form, pseudo_random

BAD_IDS = [
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e",
    "..",
    "20261128T194250Z-zzzzzz",
    "20261128T194250Z-ABCDEF",
    "20261128T194250Z-abcdef0",
    "20261128T194250Z-abcde",
    "20261128T194250Z_abcdef",
    "x" * 5000,
    "20261128T194250Z-" + "a" * 3000,
    "20261128T194250Z-abcdéf",
    "２０２６1128T194250Z-abcdef",
    "20261128T194250Z-abcdef%00",
    "20261128T194250Z-abcdef.mp4.age",
    "20261128T194250Z-abcdef%0a",
    "%00",
    "' OR 1=1 --",
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_ids_and_traversal_are_404(unlocked, home, bad):
    for suffix in ("", "/video", "/thumbnail.jpg", "/delete"):
        response = unlocked.get(f"/clips/{bad}{suffix}")
        assert response.status_code == 404, (bad, suffix, response.status_code)
        assert b"root:" not in response.get_data()
    for suffix in ("/export", "/delete"):
        response = post_form(unlocked, f"/clips/{bad}{suffix}")
        assert response.status_code in (404, 405), (bad, suffix, response.status_code)
    assert not home.actions("clip.export") and not home.actions("clip.delete")
    assert all(home.paths(c.id)["video"].exists() for c in home.clips.values())


@pytest.mark.parametrize("clip_id", [
    "20240501T120000Z-abcdef",  # well formed, no such clip
    "20261399T999999Z-abcdef",  # well formed, impossible date
    "00000000T000000Z-000000",
])
def test_well_formed_but_unknown_ids_are_404(unlocked, home, clip_id):
    for suffix in ("", "/video", "/thumbnail.jpg", "/delete"):
        response = unlocked.get(f"/clips/{clip_id}{suffix}")
        assert response.status_code == 404, (clip_id, suffix, response.status_code)
    assert post_form(unlocked, f"/clips/{clip_id}/export").status_code == 404
    assert post_form(unlocked, f"/clips/{clip_id}/delete").status_code == 404
    assert not home.actions("clip.delete")


def test_good_clip_decrypts_to_the_exact_bytes_written(unlocked, home):
    for clip in home.clips.values():
        video = unlocked.get(f"/clips/{clip.id}/video")
        assert video.status_code == 200
        assert video.mimetype == "video/mp4"
        assert video.get_data() == clip.video
        assert int(video.headers["Content-Length"]) == len(clip.video)
        thumbnail = unlocked.get(f"/clips/{clip.id}/thumbnail.jpg")
        assert thumbnail.status_code == 200
        assert thumbnail.mimetype == "image/jpeg"
        assert thumbnail.get_data() == clip.thumbnail
        for response in (video, thumbnail):
            assert response.headers["Cache-Control"] == "no-store"
    assert home.clips["doorbell"].video[4:8] == b"ftyp"  # a real MP4 from the recorder's muxer


def test_player_page_is_audited(unlocked, home):
    clip = home.clips["doorbell"]
    page = unlocked.get(f"/clips/{clip.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'src="/clips/{clip.id}/video"' in html
    assert "Doorbell" in html
    assert "interrupted" not in html
    assert f"{len(clip.video):,}" in html
    views = home.actions("clip.view")
    assert [(e.actor, e.details["clip"]) for e in views] == [(MEMBER, clip.id)]


def _flip(path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def _tamper(home, clip, where: str) -> int:
    """Flip one bit of the clip's video file; return the 64 KiB chunk it lands in (or -1)."""
    path = home.paths(clip.id)["video"]
    data = path.read_bytes()
    mac_line = data.index(b"\n---") + 1
    header_end = data.index(b"\n", mac_line) + 1
    chunks_start = header_end + 16  # after the payload nonce
    position = {
        "header": 30,
        "mac": mac_line + 10,
        "nonce": header_end + 3,
        "middle": chunks_start + (len(data) - chunks_start) // 2,
        "last chunk": len(data) - 20,
    }[where]
    _flip(path, position)
    return (position - chunks_start) // (64 * 1024 + 16) if position >= chunks_start else -1


def _stream(client, url: str, **kwargs):
    """Read a response as a browser would: (response, bytes that arrived, error if it broke)."""
    response = None
    received = bytearray()
    error = None
    try:
        # The test client pulls the first block itself, to see the status line.
        response = client.get(url, buffered=False, **kwargs)
        for block in response.response:
            received += block
    except Exception as exc:  # the server side failed after (or while) sending the headers
        error = exc
    finally:
        if response is not None:
            response.close()
    return response, bytes(received), error


@pytest.mark.parametrize("where", ["middle", "last chunk"])
def test_tampered_payload_never_serves_tampered_bytes(unlocked, home, where):
    clip = home.clips["motion"]
    damaged = _tamper(home, clip, where)
    response, received, _error = _stream(unlocked, f"/clips/{clip.id}/video")
    assert response.status_code in (200, 206, 416, 422), response.status_code
    if response.status_code == 422:  # refused up front: an error page, no video bytes
        assert clip.video[:64] not in received
    else:  # whatever arrived authenticated: a prefix of the plaintext before the damage
        assert clip.video.startswith(received)
        assert len(received) <= damaged * 64 * 1024
    start = damaged * 64 * 1024 + 10
    response, received, _error = _stream(unlocked, f"/clips/{clip.id}/video",
                                         headers={"Range": f"bytes={start}-{start + 99}"})
    # No answer at all (the server failed before its headers) is clean enough; data is not.
    assert response is None or response.status_code in (206, 416, 422), response.status_code
    assert received == b"" or response.status_code in (416, 422) and \
        clip.video[:64] not in received
    other = home.clips["doorbell"]
    assert unlocked.get(f"/clips/{other.id}/video").get_data() == other.video
    assert unlocked.get(f"/clips/{clip.id}/thumbnail.jpg").get_data() == clip.thumbnail


def test_tampered_middle_chunk_video_fails_cleanly(unlocked, home):
    clip = home.clips["motion"]
    _tamper(home, clip, "middle")
    response, received, error = _stream(unlocked, f"/clips/{clip.id}/video")
    assert error is None, repr(error)
    assert response.status_code == 422 or (
        int(response.headers["Content-Length"]) == len(received)
        and clip.video.startswith(received))


def test_tampered_middle_chunk_range_fails_cleanly(unlocked, home):
    clip = home.clips["motion"]
    damaged = _tamper(home, clip, "middle")
    start = damaged * 64 * 1024 + 10
    response, _received, error = _stream(unlocked, f"/clips/{clip.id}/video",
                                         headers={"Range": f"bytes={start}-{start + 99}"})
    assert error is None, repr(error)
    assert response.status_code in (416, 422)


def test_tampered_middle_chunk_export_is_422(unlocked, home):
    from doorbell.storage.age.errors import AgeError

    clip = home.clips["motion"]
    _tamper(home, clip, "middle")
    try:
        response = post_form(unlocked, f"/clips/{clip.id}/export")
    except AgeError as exc:  # TESTING propagates what would be a 500
        pytest.fail(f"500: {exc!r}")
    assert response.status_code == 422
    assert not home.actions("clip.export")


@pytest.mark.parametrize("where", ["middle", "last chunk", "nonce"])
def test_tampered_clip_player_says_it_is_damaged(unlocked, home, where):
    clip = home.clips["motion"]
    assert home.index_row(clip.id).state == "complete"
    _tamper(home, clip, where)
    page = unlocked.get(f"/clips/{clip.id}")
    html = page.get_data(as_text=True)
    assert "power cut or crash" not in html
    assert page.status_code == 422 or re.search(r"damaged|tampered", html)


@pytest.mark.parametrize("where", ["header", "mac"])
def test_tampered_header_is_422_with_a_clear_message(unlocked, home, where):
    clip = home.clips["motion"]
    _tamper(home, clip, where)
    for url in (f"/clips/{clip.id}", f"/clips/{clip.id}/video"):
        response = unlocked.get(url)
        assert response.status_code == 422, (url, response.status_code)
        assert "damaged or tampered" in response.get_data(as_text=True)
        assert response.headers["Cache-Control"] == "no-store"
    assert post_form(unlocked, f"/clips/{clip.id}/export").status_code == 422
    assert not home.actions("clip.export")


def test_tampered_thumbnail_is_422(unlocked, home):
    clip = home.clips["motion"]
    path = home.paths(clip.id)["thumbnail"]
    _flip(path, path.stat().st_size - 5)
    response = unlocked.get(f"/clips/{clip.id}/thumbnail.jpg")
    assert response.status_code == 422
    assert clip.thumbnail not in response.get_data()


def test_tampered_metadata_still_shows_the_timeline(unlocked, home):
    clip = home.clips["motion"]
    path = home.paths(clip.id)["metadata"]
    _flip(path, path.stat().st_size - 5)
    page = unlocked.get("/")
    assert page.status_code == 200
    assert "unreadable" in page.get_data(as_text=True)
    assert unlocked.get(f"/clips/{clip.id}").status_code == 200


def test_export_shows_the_sha256_and_is_audited(unlocked, home):
    clip = home.clips["doorbell"]
    response = post_form(unlocked, f"/clips/{clip.id}/export")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    digest = hashlib.sha256(clip.video).hexdigest()
    assert f'id="export-sha256">{digest}<' in html
    assert f"/clips/{clip.id}/video?download=1" in html
    entries = home.actions("clip.export")
    assert len(entries) == 1
    assert entries[0].actor == MEMBER
    assert entries[0].details["clip"] == clip.id
    assert entries[0].details["sha256"] == digest
    download = unlocked.get(f"/clips/{clip.id}/video?download=1")
    assert download.headers["Content-Disposition"] == f'attachment; filename="{clip.id}.mp4"'
    assert hashlib.sha256(download.get_data()).hexdigest() == digest


def test_delete_removes_files_and_row_and_is_audited(unlocked, home):
    clip = home.clips["motion"]
    paths = home.paths(clip.id)
    assert all(p.exists() for p in paths.values())
    response = post_form(unlocked, f"/clips/{clip.id}/delete")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert not any(p.exists() for p in paths.values())
    assert not list(paths["video"].parent.glob(f"{clip.id}*"))
    assert home.index_row(clip.id) is None
    entries = home.actions("clip.delete")
    assert [(e.actor, e.details["clip"]) for e in entries] == [(MEMBER, clip.id)]
    assert clip.id not in unlocked.get("/").get_data(as_text=True)
    assert unlocked.get(f"/clips/{clip.id}").status_code == 404
    assert unlocked.get(f"/clips/{clip.id}/video").status_code == 404
    # Deleting again changes nothing and says so.
    assert post_form(unlocked, f"/clips/{clip.id}/delete").status_code == 404
    assert len(home.actions("clip.delete")) == 1
    other = home.clips["doorbell"]
    assert all(p.exists() for p in home.paths(other.id).values())


def test_interrupted_clip_plays_its_prefix_and_says_so(unlocked, home):
    from doorbell.storage.clipid import clip_paths
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients
    from doorbell.storage.reconcile import reconcile

    from .conftest import local_today_at

    video = pseudo_random(5 * 64 * 1024 + 777, 7)
    h = home.home
    with ClipIndex(h.index_file) as index:
        store = ClipStore(h.clips_dir, index, read_recipients(h.recipients_file))
        writer = store.begin_clip(local_today_at(10, 30))
        writer.video.write(video)
        writer.abandon()  # the power went out
        clip_id = writer.clip_id
        assert index.get(clip_id) is None
        report = reconcile(h.clips_dir, index)
        assert report.recovered_truncated == [clip_id]
        assert index.get(clip_id).state == "truncated"
    assert clip_paths(h.clips_dir, clip_id)["video"].exists()

    page = unlocked.get(f"/clips/{clip_id}")
    assert page.status_code == 200
    assert 'id="truncated-note"' in page.get_data(as_text=True)
    assert "interrupted" in page.get_data(as_text=True)

    played = unlocked.get(f"/clips/{clip_id}/video")
    assert played.status_code == 200
    body = played.get_data()
    assert 0 < len(body) < len(video)
    assert len(body) % (64 * 1024) == 0  # whole authenticated chunks only
    assert video.startswith(body)
    ranged = unlocked.get(f"/clips/{clip_id}/video", headers={"Range": "bytes=-100"})
    assert ranged.status_code == 206
    assert ranged.get_data() == body[-100:]
    assert ranged.headers["Content-Range"] == f"bytes {len(body) - 100}-{len(body) - 1}/{len(body)}"

    timeline = unlocked.get("/").get_data(as_text=True)
    assert clip_id in timeline and "truncated" in timeline

    export = post_form(unlocked, f"/clips/{clip_id}/export")
    assert export.status_code == 200
    assert hashlib.sha256(body).hexdigest() in export.get_data(as_text=True)
    assert "interrupted" in export.get_data(as_text=True)
    assert home.actions("clip.export")[-1].details["truncated"] is True
