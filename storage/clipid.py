"""Clip identifiers: `YYYYMMDDTHHMMSSZ-xxxxxx`, the start time in UTC plus 24 random bits.

The id alone says where the clip's files live (clips/YYYY/MM/DD/), and its strict pattern is
what keeps a hostile id from ever becoming a path outside the store.
"""

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from .durable import PARTIAL_SUFFIX
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
    """`clip_id` if it is one (its pattern, and a start time that exists), else InvalidClipId.

    The date is checked here, not only when the start time is needed: a file named for
    30 February is then not a clip anywhere (reconcile reports it as an orphan), instead of
    passing as one until its start time is asked for."""
    _start(clip_id)
    return clip_id


def clip_start_us(clip_id: str) -> int:
    """The start time encoded in the id (whole seconds), in µs since the epoch."""
    return int(_start(clip_id).timestamp()) * 1_000_000


def _start(clip_id: str) -> datetime:
    match = _PATTERN.fullmatch(clip_id) if isinstance(clip_id, str) else None
    if match is None:
        raise InvalidClipId(f"{str(clip_id)[:40]!r} is not a clip id")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise InvalidClipId(f"{clip_id!r} is not a clip id: it names an impossible date") from None


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


def split_clip_file_name(name: str) -> tuple[str, str, bool] | None:
    """('ID', suffix, is_partial) for a clip file's name ("ID.mp4.age", "ID.jpg.age.partial"),
    else None (not a clip file, or an id naming an impossible date)."""
    partial = name.endswith(PARTIAL_SUFFIX)
    base = name.removesuffix(PARTIAL_SUFFIX)
    for suffix in SUFFIXES:
        if base.endswith(suffix):
            try:
                return check_clip_id(base.removesuffix(suffix)), suffix, partial
            except InvalidClipId:
                return None
    return None
