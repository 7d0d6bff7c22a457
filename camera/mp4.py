"""Fragmented MP4 into any object with `write()`: here, the age encrypting writer.

`frag_keyframe+empty_moov+default_base_moof` makes the muxer emit a small header and then one
self-contained fragment per keyframe interval while recording runs, with no seeking back: so
the bytes can be encrypted as they come, and a clip cut short plays up to its last complete
fragment. Browsers play it directly in `<video>`.

The stream is made from the clip's first keyframe's SPS/PPS (read by FFmpeg's H.264 parser)
as a template, not with `add_stream("h264")`: that opens a libx264 encoder nobody uses, with its
frame threads and buffers (7 MB and 4 threads at 720p, in every clip).
"""

import io
from fractions import Fraction
from typing import Protocol

import av

from .demux import NAL_PPS, NAL_SPS, nal_type, nal_units
from .encoder import MICROSECONDS, EncodedPacket

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


class FragmentedMp4Writer:
    """Mux already-encoded H.264 packets; timestamps are rebased so the clip starts at 0."""

    def __init__(self, sink: Sink, width: int, height: int, fps: float):
        self._container = av.open(sink, "w", format="mp4", options={"movflags": MOVFLAGS})
        self._size = (width, height)
        self._rate = round(fps)
        self._stream: av.VideoStream | None = None  # made from the first keyframe
        # Two timelines: first_pts_us / last_pts_us are the source's (the recorder's frames);
        # the muxer gets timestamps rebased to the clip's first packet's decode time, so that
        # none is negative when a camera's B-frames make decode run ahead of presentation.
        self.first_pts_us: int | None = None
        self.last_pts_us: int | None = None
        self._origin_us = 0
        self._last_muxed_dts_us = -1

    def write(self, packet: EncodedPacket) -> None:
        dts_us = packet.pts_us if packet.dts_us is None else packet.dts_us
        if self.first_pts_us is None:
            if not packet.keyframe:
                raise ValueError("a clip must start with a keyframe")
            self.first_pts_us = packet.pts_us
            self._origin_us = dts_us
            self._stream = self._stream_like(packet.data)
        elif packet.pts_us < self.first_pts_us:
            return  # a leading frame of an open GOP: it refers to frames before the clip
        dts = dts_us - self._origin_us
        if dts <= self._last_muxed_dts_us:
            return  # a duplicate or out-of-order timestamp would make the muxer fail
        self._last_muxed_dts_us = dts
        self.last_pts_us = max(packet.pts_us, self.last_pts_us or packet.pts_us)
        av_packet = av.Packet(packet.data)
        av_packet.pts = packet.pts_us - self._origin_us
        av_packet.dts = dts
        av_packet.time_base = MICROSECONDS
        av_packet.stream = self._stream
        av_packet.is_keyframe = packet.keyframe
        self._container.mux(av_packet)

    def _stream_like(self, keyframe: bytes) -> av.VideoStream:
        """An H.264 stream with the parameter sets of `keyframe` (Annex B) as its extradata.
        Only the SPS/PPS are probed: probing the picture would decode it (0.1 s at 720p)."""
        parameter_sets = b"".join(unit for unit in nal_units(keyframe)
                                  if nal_type(unit) in (NAL_SPS, NAL_PPS))
        with av.open(io.BytesIO(parameter_sets or keyframe), format="h264") as probe:
            template = probe.streams.video[0]
            stream = self._container.add_stream_from_template(template)
        if (stream.codec_context.width, stream.codec_context.height) == (0, 0):
            stream.width, stream.height = self._size  # the recorded size
            stream.pix_fmt = "yuv420p"
        stream.codec_context.framerate = Fraction(self._rate)
        stream.time_base = MICROSECONDS
        return stream

    def close(self) -> None:
        """Write the last fragment. The sink itself is left open."""
        self._container.close()
