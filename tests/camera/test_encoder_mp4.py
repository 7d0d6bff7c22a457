"""H.264 (PyAV libx264) into fragmented MP4 through a write-only sink, decoded back with PyAV."""

import io
import random

import av
import cv2
import numpy as np
import pytest

from doorbell.camera.encoder import H264Encoder
from doorbell.camera.frames import Frame
from doorbell.camera.mp4 import FragmentedMp4Writer
from tests.recorder_home import mp4_boxes as boxes
from tests.recorder_home import trun_sample_count

WIDTH, HEIGHT, FPS = 320, 240, 15
FRAME_US = round(1_000_000 / FPS)


class WriteOnlySink:
    """Has `write` and nothing else: no seek, no tell (like the age writer behind a pipe)."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def make_frame(index: int, width: int = WIDTH, height: int = HEIGHT) -> Frame:
    """A textured background with a square moving across it, and a little noise."""
    rng = np.random.default_rng(index)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.dstack([(xs * 255 // width), (ys * 255 // height), ((xs + ys) % 64) * 4])
    image = image.astype(np.uint8)
    x = (index * 7) % (width - 60)
    cv2.rectangle(image, (x, height // 3), (x + 50, height // 3 + 50), (20, 30, 220), -1)
    image = cv2.add(image, rng.integers(0, 6, image.shape, dtype=np.uint8))
    return Frame(image, index * FRAME_US)


def encode(count: int, start: int = 0, **encoder_options):
    encoder = H264Encoder(WIDTH, HEIGHT, FPS, **encoder_options)
    packets = []
    for index in range(start, start + count):
        packets += encoder.encode(make_frame(index))
    packets += encoder.flush()
    return packets


def mux(packets) -> tuple[bytes, int]:
    """(the MP4 bytes, how many bytes reached the sink before close)."""
    sink = WriteOnlySink()
    writer = FragmentedMp4Writer(sink, WIDTH, HEIGHT, FPS)
    for p in packets:
        writer.write(p)
    before_close = len(sink.data)
    writer.close()
    return sink.data, before_close






def fragments(data: bytes):
    """[(moof_offset, end_of_its_mdat, samples)] for each moof+mdat pair."""
    top = boxes(data)
    out = []
    for (kind, offset, size), following in zip(top, top[1:] + [None], strict=True):
        if kind == "moof" and following is not None and following[0] == "mdat":
            out.append((offset, following[1] + following[2], trun_sample_count(data, offset,
                                                                                size)))
    return out


def decode(data: bytes) -> tuple[list, Exception | None]:
    """Decoded frames, and the error that ended decoding early (if any)."""
    frames, error = [], None
    try:
        with av.open(io.BytesIO(data)) as container:
            for frame in container.decode(video=0):
                frames.append(frame)
    except av.FFmpegError as exc:
        error = exc
    return frames, error


@pytest.fixture(scope="module")
def stream():
    packets = encode(100)
    data, before_close = mux(packets)
    return packets, data, before_close


def test_encoder_makes_one_packet_per_frame_with_regular_keyframes(stream):
    packets, _, _ = stream
    assert len(packets) == 100
    keyframes = [i for i, p in enumerate(packets) if p.keyframe]
    assert keyframes == list(range(0, 100, FPS))  # keyframe_interval_s = 1.0
    assert [p.pts_us for p in packets] == [i * FRAME_US for i in range(100)]


def test_muxed_stream_decodes_to_the_same_frames_and_size(stream):
    _, data, _ = stream
    frames, error = decode(data)
    assert error is None
    assert len(frames) == 100
    assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert container.duration / 1e6 == pytest.approx(100 / FPS, abs=0.15)
    # the picture survives: the moving square is where it was drawn
    decoded = frames[40].to_ndarray(format="bgr24")
    expected = make_frame(40).image
    assert float(np.abs(decoded.astype(int) - expected.astype(int)).mean()) < 8


def test_mp4_is_fragmented_with_avcc_and_bytes_arrive_while_encoding(stream):
    _, data, before_close = stream
    top = [kind for kind, _, _ in boxes(data)]
    assert top[:2] == ["ftyp", "moov"]
    assert top.count("moof") == top.count("mdat") == -(-100 // FPS)
    body = top[2:-1] if top[-1] == "mfra" else top[2:]  # mfra: the random-access index at close
    assert body == ["moof", "mdat"] * (len(body) // 2)
    moov = next((o, s) for k, o, s in boxes(data) if k == "moov")
    moov_bytes = data[moov[0]:moov[0] + moov[1]]
    assert b"avcC" in moov_bytes
    assert b"mvex" in moov_bytes  # fragments follow
    assert sum(n for _, _, n in fragments(data)) == 100
    # streamed: all but the last fragment reached the sink before close()
    assert before_close >= fragments(data)[-2][1]


def test_each_fragment_starts_with_a_keyframe(stream):
    _, data, _ = stream
    frames, _ = decode(data)
    starts, index = [], 0
    for _, _, samples in fragments(data):
        starts.append(index)
        index += samples
    assert all(frames[i].key_frame for i in starts)


def test_cut_stream_decodes_up_to_its_last_complete_fragment(stream):
    _, data, _ = stream
    frags = fragments(data)
    header_end = frags[0][0]
    rng = random.Random(1234)
    cuts = sorted({header_end + 1, header_end + 200, *(end for _, end, _ in frags[:-1]),
                   *(end - 1 for _, end, _ in frags), *(end + 9 for _, end, _ in frags[:-1]),
                   *(rng.randrange(header_end, len(data)) for _ in range(12))})
    for cut in cuts:
        complete = sum(n for _, end, n in frags if end <= cut)
        started = sum(n for start, _, n in frags if start + 8 <= cut)
        frames, error = decode(data[:cut])
        assert complete <= len(frames) <= started, (cut, complete, len(frames), started, error)
        if any(end == cut for _, end, _ in frags):
            # cut exactly after a fragment: a clean stream, no error at all
            assert error is None and len(frames) == complete
        assert all(f.width == WIDTH and f.height == HEIGHT for f in frames)


def test_a_clip_must_start_with_a_keyframe():
    packets = encode(20)
    assert not packets[3].keyframe
    writer = FragmentedMp4Writer(WriteOnlySink(), WIDTH, HEIGHT, FPS)
    with pytest.raises(ValueError, match="keyframe"):
        writer.write(packets[3])


def test_a_clip_cut_from_mid_stream_starts_at_zero():
    packets = encode(60)
    data, _ = mux(packets[30:])  # the pre-roll ring hands out packets from a keyframe
    frames, error = decode(data)
    assert error is None and len(frames) == 30
    assert frames[0].key_frame
    assert frames[0].time == pytest.approx(0.0, abs=1e-3)
    assert frames[-1].time == pytest.approx(29 / FPS, abs=0.01)


def test_encoder_rejects_an_odd_frame_size():
    with pytest.raises(ValueError, match="even"):
        H264Encoder(321, 240, FPS)
