"""The pre-roll ring: encoded packets, always handed out from a keyframe, bounded in memory."""

import pytest

from doorbell.camera.encoder import EncodedPacket
from doorbell.camera.preroll import PacketRing

FPS = 15
FRAME_US = round(1_000_000 / FPS)
KEYINT = 15  # one keyframe a second, as the recorder's default keyframe_interval_s = 1.0
KEYINT_US = KEYINT * FRAME_US
PRE_ROLL_US = 3_000_000


def packet(index: int, keyint: int = KEYINT) -> EncodedPacket:
    key = index % keyint == 0
    return EncodedPacket(bytes(6000 if key else 800), index * FRAME_US, key)


def recorder_ring() -> PacketRing:
    """Sized the way the recorder sizes it: pre-roll plus one keyframe interval."""
    return PacketRing(PRE_ROLL_US + KEYINT_US)


def test_empty_ring_hands_out_nothing():
    assert PacketRing(PRE_ROLL_US).since(0) == []


@pytest.mark.parametrize("keyint", [15, 7, 45])
def test_since_always_starts_at_a_keyframe_at_or_before_the_requested_time(keyint):
    ring = PacketRing(PRE_ROLL_US + keyint * FRAME_US)
    for index in range(40 * FPS):
        ring.append(packet(index, keyint))
        newest = index * FRAME_US
        for back_us in (0, 1, FRAME_US, 1_000_000, PRE_ROLL_US - 1, PRE_ROLL_US):
            wanted = newest - back_us
            got = ring.since(wanted)
            assert got, f"nothing handed out at frame {index}"
            assert got[0].keyframe, f"pre-roll at frame {index} starts with a non-keyframe"
            oldest = ring.since(-10**12)[0].pts_us
            if wanted >= oldest:
                assert got[0].pts_us <= wanted
                # ... and it is the last such keyframe: no needless extra pre-roll
                assert wanted - got[0].pts_us < keyint * FRAME_US
            # contiguous from there to the newest packet
            pts = [p.pts_us for p in got]
            assert pts == list(range(pts[0], newest + 1, FRAME_US))


def test_ring_holds_about_pre_roll_plus_one_keyframe_interval():
    ring = recorder_ring()
    for index in range(120 * FPS):
        ring.append(packet(index))
        newest = index * FRAME_US
        if newest < ring.duration_us + KEYINT_US:
            continue
        held = ring.since(-10**12)
        span_us = newest - held[0].pts_us
        # covers the whole pre-roll from a keyframe...
        assert span_us >= PRE_ROLL_US
        assert span_us >= ring.duration_us
        # ...but not much more than that
        assert span_us < ring.duration_us + KEYINT_US
        assert len(ring) == len(held)
    # the pre-roll the recorder asks for starts 3-4 s back
    start = ring.since(newest - PRE_ROLL_US)[0]
    assert PRE_ROLL_US <= newest - start.pts_us < PRE_ROLL_US + KEYINT_US


def test_memory_is_bounded_over_a_long_run():
    ring = recorder_ring()
    gop_bytes = 6000 + 800 * (KEYINT - 1)
    bound_bytes = (ring.duration_us // KEYINT_US + 2) * gop_bytes
    peak_bytes = peak_len = 0
    for index in range(3600 * FPS):  # one hour of frames
        ring.append(packet(index))
        if index % 97 == 0:
            peak_bytes = max(peak_bytes, ring.size_bytes)
            peak_len = max(peak_len, len(ring))
    assert peak_bytes <= bound_bytes
    assert peak_len <= (ring.duration_us // KEYINT_US + 2) * KEYINT
    assert ring.size_bytes == sum(len(p.data) for p in ring.since(-10**12))
    assert ring.size_bytes >= 4 * gop_bytes  # and it still holds the pre-roll


def test_a_request_older_than_the_ring_starts_at_its_oldest_keyframe():
    ring = recorder_ring()
    for index in range(30 * FPS):
        ring.append(packet(index))
    got = ring.since(0)
    assert got[0].keyframe
    assert got[0].pts_us == ring.since(-10**12)[0].pts_us


def test_after_clear_the_ring_starts_again_at_a_keyframe():
    """New privacy masks: what the ring held is gone, and until the next keyframe there is
    nothing a clip could start with."""
    ring = recorder_ring()
    for index in range(40):
        ring.append(packet(index))
    ring.clear()
    for index in range(40, 44):  # the rest of a keyframe group: useless without its keyframe
        ring.append(packet(index))
    assert len(ring) == 0 and ring.since(44 * FRAME_US) == []
    ring.append(EncodedPacket(bytes(6000), 44 * FRAME_US, True))  # a forced keyframe
    ring.append(packet(46))
    assert [p.pts_us for p in ring.since(0)] == [44 * FRAME_US, 46 * FRAME_US]
