"""The pre-roll ring: the last few seconds of encoded packets, always starting at a keyframe.

Keeping encoded packets (not raw frames) costs kilobytes per frame instead of megabytes, which
is what lets a Pi Zero 2 W hold three seconds of 720p pre-roll.
"""

from collections import deque

from .encoder import EncodedPacket


class PacketRing:
    def __init__(self, duration_us: int):
        self.duration_us = duration_us
        self._packets: deque[EncodedPacket] = deque()

    def append(self, packet: EncodedPacket) -> None:
        if not self._packets and not packet.keyframe:
            return  # after clear(): the ring starts at a keyframe again, or a clip could not
        self._packets.append(packet)
        horizon = packet.pts_us - self.duration_us
        # Drop whole keyframe groups that end before the horizon; keep the group the horizon
        # falls in, so a clip can start at a keyframe at or before it.
        while True:
            next_key = self._next_keyframe_index(1)
            if next_key is None or self._packets[next_key].pts_us > horizon:
                break
            for _ in range(next_key):
                self._packets.popleft()

    def _next_keyframe_index(self, start: int) -> int | None:
        for index in range(start, len(self._packets)):
            if self._packets[index].keyframe:
                return index
        return None

    def since(self, pts_us: int) -> list[EncodedPacket]:
        """Packets from the last keyframe at or before `pts_us` (or the oldest keyframe)."""
        packets = list(self._packets)
        start = None
        for index, packet in enumerate(packets):
            if packet.keyframe and (start is None or packet.pts_us <= pts_us):
                start = index
            if packet.pts_us > pts_us and start is not None:
                break
        return packets[start:] if start is not None else []

    def clear(self) -> None:
        """Forget every packet (they show a privacy mask no longer in force, say): the next
        clip's pre-roll is short until the ring refills from the next keyframe."""
        self._packets.clear()

    def __len__(self) -> int:
        return len(self._packets)

    @property
    def size_bytes(self) -> int:
        return sum(len(p.data) for p in self._packets)
