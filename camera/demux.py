"""A camera's own H.264 packets through PyAV: an RTSP stream on the LAN (or an H.264 V4L2 device).

    demuxer = H264Demuxer("rtsp://user:secret@192.168.1.20/stream1")
    for packet, raw in demuxer.packets():    # EncodedPacket: Annex B, SPS/PPS at every keyframe
        for picture in demuxer.decode(raw): ...   # av.VideoFrame, only when asked

Timestamps are the camera's, in microseconds from the first keyframe received, so they are
monotonic and match the packets to the decoded pictures. The stream starts at the first
keyframe. A picture the network delivers in several packets with one timestamp (a keyframe cut
in slices, each with its SPS/PPS in front, as GStreamer's payloader sends them) is put back
together as one access unit: recorded and decoded whole, never as two broken pictures. A
stream that stops (the camera or the network gone, no data for `read_timeout_s`) raises
SourceLost, so the recorder seals the open clip and reconnects with back-off.

A URL's user name and password never reach a log or an error message: `redact_url` removes
them, and PyAV's errors (which quote the URL) are reduced to their reason.
"""

import logging
from collections.abc import Iterator

import av

from .capture import redact_url
from .encoder import EncodedPacket
from .frames import SourceLost

log = logging.getLogger(__name__)

START_CODE = b"\x00\x00\x01"
NAL_SPS, NAL_PPS, NAL_AUD = 7, 8, 9


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B buffer, each with its start code."""
    starts, index = [], data.find(START_CODE)
    while index != -1:
        starts.append(index - 1 if index > 0 and data[index - 1] == 0 else index)
        index = data.find(START_CODE, index + 3)
    return [data[start:end] for start, end in zip(starts, starts[1:] + [len(data)],
                                                   strict=True)]


def nal_type(unit: bytes) -> int | None:
    """The type of one NAL unit (with its start code); None for an empty one."""
    header = unit.find(START_CODE) + 3
    return unit[header] & 0x1F if header < len(unit) else None


def without_parameter_sets(data: bytes) -> bytes:
    """`data` without its SPS, PPS and access unit delimiters (the rest of a picture)."""
    return b"".join(unit for unit in nal_units(data)
                    if nal_type(unit) not in (None, NAL_SPS, NAL_PPS, NAL_AUD))


def nal_types(data: bytes) -> set[int]:
    """The NAL unit types in an Annex B access unit."""
    types, index = set(), data.find(START_CODE)
    while index != -1 and index + 3 < len(data):
        types.add(data[index + 3] & 0x1F)
        index = data.find(START_CODE, index + 3)
    return types


class H264Demuxer:
    def __init__(self, url: str, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0):
        self.description = redact_url(url)
        options = {"rtsp_transport": "tcp"} if url.startswith(("rtsp://", "rtsps://")) else {}
        try:
            self._container = av.open(url, options=options,
                                      timeout=(open_timeout_s, read_timeout_s))
        except av.error.FFmpegError as exc:  # its str() quotes the URL, password included
            raise SourceLost(f"cannot open {self.description}: {exc.strerror}") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceLost(f"{self.description} has no video stream")
        self._stream = self._container.streams.video[0]
        self._decoder = self._stream.codec_context
        self.codec = self._decoder.name  # "h264" can be recorded as it comes
        extradata = self._decoder.extradata or b""
        # SDP's sprop-parameter-sets, in Annex B: put in front of a keyframe that lacks them
        annex_b = extradata.startswith((START_CODE, b"\x00" + START_CODE))
        self._parameter_sets = extradata if annex_b else b""
        self.width = self._decoder.width
        self.height = self._decoder.height
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate and 0.5 <= float(rate) <= 240 else 0.0
        self._time_base = self._stream.time_base
        self._pts0: int | None = None
        self._last_dts_us = -1

    def to_us(self, pts: int) -> int:
        return round((pts - self._pts0) * self._time_base * 1_000_000)

    def packets(self) -> Iterator[tuple[EncodedPacket, av.Packet]]:
        """The camera's pictures in decode order, from its first keyframe, each with PyAV's
        packet for decode(); SourceLost when the stream stops. Held back one packet: the next
        may be more of the same picture."""
        held: tuple[EncodedPacket, av.Packet] | None = None
        last_dts_us = -1
        for encoded, raw in self._packets():
            if held is not None and raw.pts == held[1].pts:
                held = _joined(held, encoded)
                continue
            if held is not None:
                # FFmpeg gave the second half of a picture a decode time of its own, which
                # the pictures after it then repeat: keep decode times rising, within pts
                held_encoded = held[0]
                dts_us = min(held_encoded.pts_us, max(held_encoded.dts_us, last_dts_us + 1))
                last_dts_us = dts_us
                if dts_us != held_encoded.dts_us:
                    held = EncodedPacket(held_encoded.data, held_encoded.pts_us,
                                         held_encoded.keyframe, dts_us), held[1]
                yield held
            held = encoded, raw

    def _packets(self) -> Iterator[tuple[EncodedPacket, av.Packet]]:
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0 or packet.pts is None:
                    continue  # a flush packet, or one the demuxer could not time
                if self._pts0 is None:
                    if not packet.is_keyframe:
                        continue
                    self._pts0 = packet.pts if packet.dts is None else min(packet.pts,
                                                                           packet.dts)
                pts_us = self.to_us(packet.pts)
                dts_us = self.to_us(packet.dts) if packet.dts is not None else \
                    min(pts_us, self._last_dts_us + 1)
                self._last_dts_us = dts_us
                data = bytes(packet)
                if packet.is_keyframe and self._parameter_sets and \
                        NAL_SPS not in nal_types(data):
                    data = self._parameter_sets + data
                yield EncodedPacket(data, pts_us, bool(packet.is_keyframe), dts_us), packet
        except av.error.FFmpegError as exc:
            raise SourceLost(f"{self.description} stopped: {exc.strerror}") from None
        raise SourceLost(f"{self.description} ended")

    def decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        """The pictures `packet` completes (presentation order; none for a skipped frame)."""
        try:
            return self._decoder.decode(packet)
        except av.error.InvalidDataError:
            log.debug("%s: a packet could not be decoded", self.description)
            return []

    def skip_nonreference(self, skip: bool) -> None:
        """Decode only frames others refer to (enough for motion), or every frame."""
        self._decoder.skip_frame = "NONREF" if skip else "DEFAULT"

    def close(self) -> None:
        self._container.close()


def _joined(first: tuple[EncodedPacket, av.Packet], more: EncodedPacket) \
        -> tuple[EncodedPacket, av.Packet]:
    """One access unit of a picture that came in two packets."""
    encoded, raw = first
    data = encoded.data + without_parameter_sets(more.data)
    joined = av.Packet(data)
    joined.pts, joined.dts, joined.time_base = raw.pts, raw.dts, raw.time_base
    joined.is_keyframe = encoded.keyframe
    return EncodedPacket(data, encoded.pts_us, encoded.keyframe, encoded.dts_us), joined
