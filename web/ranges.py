"""HTTP Range requests (RFC 9110 section 14) for one representation of known size."""

import re
from dataclasses import dataclass

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() accepts "²", which int() refuses


# Longer than any file's size in bytes: read as "beyond the end", never int() of 4,300+ digits.
_MAX_DIGITS = 18
_BEYOND_ANY_FILE = 10**_MAX_DIGITS


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _BEYOND_ANY_FILE if len(digits) > _MAX_DIGITS else int(digits)


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
        count = _number(last)
        if count == 0 or size == 0:
            raise UnsatisfiableRange("an empty suffix range, or an empty representation")
        return ByteRange(max(0, size - count), size - 1)
    if not _DIGITS.fullmatch(first) or (last and not _DIGITS.fullmatch(last)):
        return None
    start = _number(first)
    if last and _number(last) < start:
        return None  # invalid: ignored, as the RFC requires
    if start >= size:
        where = "beyond any file" if start == _BEYOND_ANY_FILE else f"at {start}"
        raise UnsatisfiableRange(f"the range starts {where}, beyond the end ({size} bytes)")
    end = _number(last) if last else size - 1
    return ByteRange(start, min(end, size - 1))
