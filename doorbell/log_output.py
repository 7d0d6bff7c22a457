"""Where the commands' log lines go, and how they look there.

Under systemd, stderr is a stream to the journal: systemd sets JOURNAL_STREAM to that stream's
"device:inode". The journal stamps every line with its own time, and reads a leading "<N>" as
the line's syslog priority (the sd-daemon convention), so there each line gets its priority
and no timestamp of its own: `journalctl -p warning` then finds the warnings. On a terminal (or
a pipe, or a file) lines keep their timestamp.
"""

import logging
import os
import sys

# syslog priorities (sd-daemon.h: SD_ERR, SD_WARNING, ...) for Python's levels.
_PRIORITY_BY_LEVEL = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7


def syslog_priority(levelno: int) -> int:
    for level, priority in _PRIORITY_BY_LEVEL:
        if levelno >= level:
            return priority
    return _DEBUG_PRIORITY


def stream_is_journal(stream=None, environ=None) -> bool:
    """True if `stream` (default stderr) is the journal stream JOURNAL_STREAM names."""
    stream = sys.stderr if stream is None else stream
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        expected = (int(device), int(inode))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):  # unset, malformed, or no file descriptor
        return False
    return (status.st_dev, status.st_ino) == expected


class JournalFormatter(logging.Formatter):
    """Every line of a record (a traceback too) starts with the record's "<N>" priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def configure_logging(body: str = "%(name)s: %(message)s", level: int = logging.INFO,
                      stream=None) -> logging.Handler:
    """Send the root logger's records to stderr: journal style under systemd, else timestamped.

    `body` is the format after the timestamp. Replaces handlers set up earlier (a command that
    restarts itself in place, or a test calling twice). Returns the handler.
    """
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    if stream_is_journal(stream):
        handler.setFormatter(JournalFormatter(body))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {body}"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
