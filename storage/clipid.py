"""Clip identifiers: `YYYYMMDDTHHMMSSZ-xxxxxx`, the start time in UTC plus 24 random bits.

The id alone says where the clip's files live (clips/YYYY/MM/DD/), and its strict pattern is
what keeps a hostile id from ever becoming a path outside the store.
"""

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from .errors import InvalidClipId

_PATTERN = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-([0-9a-f]{6})")

VIDEO_SUFFIX = ".mp4.age"
THUMBNAIL_SUFFIX = ".jpg.age"
METADATA_SUFFIX = ".json.age"
SUFFIXES = (VIDEO_SUFFIX, THUMBNAIL_SUFFIX, METADATA_SUFFIX)


def new_clip_id(start_us: int) -> str:
    started = datetime.fromtimestamp(start_us / 1e6, UTC)
    return started.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def check_clip_id(clip_id: str) -> str:
    if not isinstance(clip_id, str) or not _PATTERN.fullmatch(clip_id):
        raise InvalidClipId(f"{str(clip_id)[:40]!r} is not a clip id")
    return clip_id


def clip_start_us(clip_id: str) -> int:
    """The start time encoded in the id (whole seconds), in µs since the epoch."""
    match = _PATTERN.fullmatch(check_clip_id(clip_id))
    if match is None:  # unreachable: check_clip_id raised
        raise InvalidClipId(clip_id)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        started = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise InvalidClipId(f"{clip_id!r} names an impossible date") from None
    return int(started.timestamp()) * 1_000_000


def clip_directory(clips_dir: Path, clip_id: str) -> Path:
    check_clip_id(clip_id)
    return clips_dir / clip_id[0:4] / clip_id[4:6] / clip_id[6:8]


def clip_paths(clips_dir: Path, clip_id: str) -> dict[str, Path]:
    directory = clip_directory(clips_dir, clip_id)
    return {
        "video": directory / (clip_id + VIDEO_SUFFIX),
        "thumbnail": directory / (clip_id + THUMBNAIL_SUFFIX),
        "metadata": directory / (clip_id + METADATA_SUFFIX),
    }
