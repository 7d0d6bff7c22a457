"""A clip interrupted before any of its video reached the disk (issue 12, item 2).

Its header was on disk, so it is "truncated" with an empty prefix: the page says there is
nothing to play (no player, no "damaged" warning), the video is an empty 200 and any Range 416.
"""

from .conftest import local_today_at


def test_a_clip_interrupted_before_its_first_chunk_says_there_is_nothing_to_play(unlocked,
                                                                                  home):
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients
    from doorbell.storage.reconcile import reconcile

    h = home.home
    with ClipIndex(h.index_file) as index:
        store = ClipStore(h.clips_dir, index, read_recipients(h.recipients_file))
        writer = store.begin_clip(local_today_at(11, 15))
        writer.video.write(b"\x00\x00\x00\x20ftypisom" + bytes(1000))  # not one whole chunk
        writer.abandon()
        reconcile(h.clips_dir, index)
    clip_id = writer.clip_id
    assert home.index_row(clip_id).state == "truncated"

    page = unlocked.get(f"/clips/{clip_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="truncated-note"' in html and "nothing to play" in html
    assert 'id="damaged-note"' not in html and 'id="player"' not in html

    played = unlocked.get(f"/clips/{clip_id}/video")
    assert (played.status_code, played.get_data()) == (200, b"")
    ranged = unlocked.get(f"/clips/{clip_id}/video", headers={"Range": "bytes=0-"})
    assert ranged.status_code == 416 and ranged.headers["Content-Range"] == "bytes */0"
