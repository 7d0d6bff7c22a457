"""How the viewer shows sizes and times to people: "72.9 GB", "14:03 CET".

Sizes are decimal (1 GB = 1,000,000,000 bytes, as disks are sold and as most file managers
count), with one decimal. Times are the device's local time, always with its zone's label, so
that a page read from a phone in another zone still says which clock it means.
"""

import os
import time
from datetime import UTC, datetime
from pathlib import Path

_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3))
_ZONEINFO = "zoneinfo/"


def human_bytes(size_bytes: int | float) -> str:
    """72_948_000_000 -> "72.9 GB"; under 1 KB, whole bytes."""
    for unit, scale in _UNITS:
        if abs(size_bytes) >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{int(size_bytes)} bytes"


def zone_abbreviation(at_s: float | None = None) -> str:
    """The local zone's label at a moment: "CET", "CEST", "UTC"; "UTC+03" where the zone has no
    letters for it."""
    moment = datetime.fromtimestamp(time.time() if at_s is None else at_s).astimezone()
    name = moment.tzname() or ""
    if not name or name[0] in "+-":
        offset = moment.strftime("%z")  # +0300
        name = f"UTC{offset[:3]}" + (f":{offset[3:]}" if offset[3:] != "00" else "")
    return name


def zone_name() -> str | None:
    """The device's zone as configured ("Europe/Berlin"), if the system says; else None."""
    path = "/etc/localtime"
    if "TZ" in os.environ:  # it wins over the system's setting
        configured = os.environ["TZ"].lstrip(":")
        if not configured.startswith("/"):  # "Europe/Berlin", "UTC"; a POSIX rule: no name
            return configured if configured.replace("/", "").replace("_", "").isalpha() else None
        path = configured
    try:
        target = os.readlink(path)
    except OSError:
        target = ""
    if _ZONEINFO in target:
        return target.split(_ZONEINFO, 1)[1]
    try:
        return Path("/etc/timezone").read_text().strip() or None
    except OSError:
        return None


def zone_sentence(clock_of: str = "doorbell") -> str:
    """What the page says once: "Times are the doorbell's local time, Europe/Berlin (CET)."
    (on a hub, `clock_of="hub"`: the hub's zone, whichever doorbell recorded the clip)."""
    name, label = zone_name(), zone_abbreviation()
    if name and name != label:
        return f"Times are the {clock_of}'s local time, {name} ({label})."
    return f"Times are the {clock_of}'s local time ({label})."


def local_time(at_s: float, seconds: bool = False) -> str:
    """1733317385.2 -> "14:03 CET" (with seconds: "14:03:05 CET"), in the device's zone."""
    moment = datetime.fromtimestamp(at_s).astimezone()
    return f"{moment.strftime('%H:%M:%S' if seconds else '%H:%M')} {zone_abbreviation(at_s)}"


def age_text(seconds: float) -> str:
    """How long ago, in the unit a person would use: "40 minutes", "5.5 hours", "12.3 days"."""
    if seconds < 3600:
        minutes = max(0, round(seconds / 60))
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


def local_date_time(at_s: float, seconds: bool = False) -> str:
    """1733317385.2 -> "4 Dec 2026, 14:03 CET" (with seconds: "4 Dec 2026, 14:03:05 CET")."""
    moment = datetime.fromtimestamp(at_s).astimezone()
    return f"{moment.day} {moment.strftime('%b %Y')}, {local_time(at_s, seconds)}"


def utc_text(at_s: float) -> str:
    """The moment for a <time datetime="..."> attribute: "2026-12-04T13:03:05Z"."""
    return datetime.fromtimestamp(int(at_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_date_time_of_iso(text: str) -> str:
    """An ISO 8601 UTC time as stored ("2026-12-04T02:54:42.790Z") in the device's zone, with
    seconds; text that is not such a time is shown as it is."""
    try:
        return local_date_time(datetime.fromisoformat(text).timestamp(), seconds=True)
    except (ValueError, OverflowError, OSError):
        return text
