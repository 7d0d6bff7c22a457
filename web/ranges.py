"""HTTP Range requests (RFC 9110 section 14) for one representation of known size."""

import re
from dataclasses import dataclass

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() accepts "²", which int() refuses


class UnsatisfiableRange(ValueError):
    """The range lies wholly beyond the end (answer 416)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range asked for, or None to answer with the whole body (200).

    Several ranges are answered with the whole body, which RFC 9110 allows: browsers' media
    players only ever ask for one. A malformed header is ignored, as the RFC requires.
    """
    if not header or not header.startswith("bytes="):
        return None
    spec = header.removeprefix("bytes=").strip()
    if "," in spec:
        return None
    first, dash, last = spec.partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not first:  # suffix: the last N bytes
        if not _DIGITS.fullmatch(last):
            return None
        count = int(last)
        if count == 0 or size == 0:
            raise UnsatisfiableRange("an empty suffix range, or an empty representation")
        return ByteRange(max(0, size - count), size - 1)
    if not _DIGITS.fullmatch(first) or (last and not _DIGITS.fullmatch(last)):
        return None
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as the RFC requires
    if start >= size:
        raise UnsatisfiableRange(f"the range starts at {start}, beyond the end ({size} bytes)")
    end = int(last) if last else size - 1
    return ByteRange(start, min(end, size - 1))
