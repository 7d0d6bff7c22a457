"""HTTP Range (RFC 9110 section 14): the parser, the answers on /clips/ID/video, and that a
range decrypts only the chunks that cover it."""

import pytest

from doorbell.web.ranges import ByteRange, UnsatisfiableRange, parse_range

from .conftest import local_today_at, pseudo_random, write_clip

SIZE = 1000


# -- the parser

@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-99", (0, 99)),
    ("bytes=0-0", (0, 0)),
    ("bytes=100-", (100, 999)),
    ("bytes=999-", (999, 999)),
    ("bytes=-500", (500, 999)),
    ("bytes=-1", (999, 999)),
    ("bytes=-5000", (0, 999)),  # a suffix longer than the body is the whole body
    ("bytes=0-999999", (0, 999)),  # an end past the size is clamped
    ("bytes=998-5000", (998, 999)),
    ("bytes= 10-19", (10, 19)),
    ("bytes=10 - 19", (10, 19)),
])
def test_parse_single_ranges(header, expected):
    wanted = parse_range(header, SIZE)
    assert wanted == ByteRange(*expected)
    assert wanted.length == expected[1] - expected[0] + 1


@pytest.mark.parametrize("header", [
    None, "", "bytes=", "bytes=-", "bytes=abc", "bytes=5-1", "items=0-1", "bytes 0-1",
    "bytes=0x10-20", "bytes=+1-2", "bytes=1-2-3", "bytes=1", "bytes=-1-2", "bytes=1.5-2",
    "bytes=²-3",
])
def test_malformed_ranges_are_ignored(header):
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=0-1, 5-6", "bytes=-5,0-1",
                                    "bytes=0-,0-"])
def test_several_ranges_get_the_whole_body(header):
    # Documented choice: browsers' media players only ever ask for one range.
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-1005", "bytes=999999999-999999999",
                                    "bytes=1000-1000"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(UnsatisfiableRange):
        parse_range(header, SIZE)


def test_an_empty_suffix_is_unsatisfiable():
    with pytest.raises(UnsatisfiableRange):
        parse_range("bytes=-0", SIZE)


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=1000-"])
def test_open_ended_range_beyond_the_end_is_unsatisfiable(header):
    with pytest.raises(UnsatisfiableRange):
        parse_range(header, SIZE)


def test_empty_body():
    with pytest.raises(UnsatisfiableRange):
        parse_range("bytes=0-10", 0)
    assert parse_range(None, 0) is None


def test_a_suffix_of_an_empty_body_is_unsatisfiable():
    with pytest.raises(UnsatisfiableRange):
        parse_range("bytes=-10", 0)


# -- through the app

@pytest.fixture
def clip(home):
    return home.clips["motion"]  # 300 KiB + 123 bytes: five age chunks, the last one short


def _get(client, clip, range_header=None):
    headers = {"Range": range_header} if range_header is not None else {}
    return client.get(f"/clips/{clip.id}/video", headers=headers)


def test_full_body(unlocked, clip):
    response = _get(unlocked, clip)
    assert response.status_code == 200
    assert response.headers["Accept-Ranges"] == "bytes"
    assert int(response.headers["Content-Length"]) == len(clip.video)
    assert "Content-Range" not in response.headers
    assert response.get_data() == clip.video
    assert response.headers["Cache-Control"] == "no-store"


def _assert_partial(response, clip, start: int, end: int) -> None:
    size = len(clip.video)
    assert response.status_code == 206
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert int(response.headers["Content-Length"]) == end - start + 1
    assert response.get_data() == clip.video[start : end + 1]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-99", 0, 99),
    ("bytes=100-", 100, None),
    ("bytes=-500", None, None),
    ("bytes=65530-65545", 65530, 65545),  # across a chunk boundary
    ("bytes=131072-196607", 131072, 196607),  # exactly one chunk
    ("bytes=100-999999999", 100, None),  # end past the size: clamped
    ("bytes=-999999999", 0, None),
    ("bytes=0-", 0, None),
])
def test_single_ranges(unlocked, clip, header, start, end):
    size = len(clip.video)
    if start is None:
        start = size - 500
    if end is None:
        end = size - 1
    _assert_partial(_get(unlocked, clip, header), clip, start, end)


def test_last_byte(unlocked, clip):
    size = len(clip.video)
    _assert_partial(_get(unlocked, clip, f"bytes={size - 1}-{size - 1}"), clip, size - 1, size - 1)
    _assert_partial(_get(unlocked, clip, "bytes=-1"), clip, size - 1, size - 1)


@pytest.mark.parametrize("header", ["bytes=999999999-999999999", "SIZE-SIZE5"])
def test_beyond_the_end_is_416(unlocked, clip, header):
    size = len(clip.video)
    header = header.replace("SIZE5", str(size + 5)).replace("SIZE-", f"bytes={size}-")
    response = _get(unlocked, clip, header)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"
    assert b"beyond the end" in response.get_data()  # a sentence, no footage


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=SIZE-"])
def test_open_ended_beyond_the_end_is_416(unlocked, clip, header):
    size = len(clip.video)
    response = _get(unlocked, clip, header.replace("SIZE", str(size)))
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"


def test_empty_suffix_is_416(unlocked, clip):
    response = _get(unlocked, clip, "bytes=-0")
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(clip.video)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=0-99, 200-299"])
def test_several_ranges_answer_the_whole_body(unlocked, clip, header):
    response = _get(unlocked, clip, header)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(clip.video)
    assert response.get_data() == clip.video


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=5-1", "items=0-99", "bytes=", "0-99",
                                    "bytes=--1"])
def test_malformed_range_answers_the_whole_body(unlocked, clip, header):
    response = _get(unlocked, clip, header)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(clip.video)
    assert response.get_data() == clip.video


def test_small_real_mp4_ranges(unlocked, home):
    clip = home.clips["doorbell"]  # one chunk: the final chunk is also the first
    size = len(clip.video)
    _assert_partial(_get(unlocked, clip, "bytes=0-7"), clip, 0, 7)
    _assert_partial(_get(unlocked, clip, "bytes=-8"), clip, size - 8, size - 1)
    _assert_partial(_get(unlocked, clip, "bytes=4-"), clip, 4, size - 1)


# -- only the chunks asked for are decrypted

CHUNK = 64 * 1024


@pytest.fixture
def big_clip(home):
    video = pseudo_random(10 * 1024 * 1024 + 4321, 10)
    return write_clip(home.root, local_today_at(6, 0), video, None,
                      {"trigger": "motion", "duration_s": 60.0})


@pytest.fixture
def decryptions(monkeypatch):
    """Every payload-chunk decryption attempt, by chunk index."""
    import doorbell.storage.age.stream as stream

    real = stream.ChaCha20Poly1305
    indices = []

    class Counting:
        def __init__(self, key):
            self._inner = real(key)

        def decrypt(self, nonce, data, associated_data):
            indices.append(int.from_bytes(nonce[:11], "big"))
            return self._inner.decrypt(nonce, data, associated_data)

        def encrypt(self, nonce, data, associated_data):
            return self._inner.encrypt(nonce, data, associated_data)

    monkeypatch.setattr(stream, "ChaCha20Poly1305", Counting)
    return indices


@pytest.mark.parametrize("start", [0, 5 * 1024 * 1024 + 12345, 10 * 1024 * 1024 - 70_000,
                                   77 * CHUNK])
def test_a_64k_range_decrypts_only_its_chunks(unlocked, big_clip, decryptions, start):
    size = len(big_clip.video)
    last_chunk = (size - 1) // CHUNK
    end = min(start + CHUNK - 1, size - 1)
    response = _get(unlocked, big_clip, f"bytes={start}-{end}")
    assert response.get_data() == big_clip.video[start : end + 1]
    assert response.status_code == 206
    assert len(decryptions) <= 3, decryptions
    covering = set(range(start // CHUNK, end // CHUNK + 1))
    assert set(decryptions) <= covering | {last_chunk}, decryptions


def test_seeking_cost_does_not_grow_with_the_position(unlocked, big_clip, decryptions):
    for start in (0, 2 * 1024 * 1024, 9 * 1024 * 1024):
        decryptions.clear()
        _get(unlocked, big_clip, f"bytes={start}-{start + 1023}").get_data()
        assert len(decryptions) <= 2, (start, decryptions)
    decryptions.clear()
    whole = _get(unlocked, big_clip).get_data()
    assert whole == big_clip.video
    assert len(decryptions) >= (len(big_clip.video) // CHUNK)  # the counter does count
