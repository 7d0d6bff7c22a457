"""The age v1 header: recipient stanzas and the MAC line, parsed strictly and written canonically.

    age-encryption.org/v1
    -> X25519 <base64 ephemeral share>
    <base64 body, 64 columns per line, last line shorter (possibly empty)>
    --- <base64 HMAC-SHA-256 of everything above, up to and including "---">

Parsing is strict (canonical unpadded base64, no CR, no empty arguments) because two parsers
that disagree about a header are how format attacks start; the CCTV vectors pin every rule.
"""

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import HeaderError, HeaderMACError

VERSION_LINE = b"age-encryption.org/v1\n"
BODY_COLUMNS = 64
_BODY_BYTES_PER_LINE = BODY_COLUMNS // 4 * 3
_MAX_LINE_BYTES = 64 * 1024  # a header line longer than this is hostile, not a key


@dataclass(slots=True)
class Stanza:
    """One recipient stanza: a type, its arguments and a binary body."""

    type: str
    args: list[str] = field(default_factory=list)
    body: bytes = b""

    def to_bytes(self) -> bytes:
        line = " ".join(["->", self.type, *self.args]).encode("ascii") + b"\n"
        encoded = b64encode(self.body).encode("ascii")
        lines = [encoded[i : i + BODY_COLUMNS] for i in range(0, len(encoded), BODY_COLUMNS)]
        if not lines or len(lines[-1]) == BODY_COLUMNS:
            lines.append(b"")  # the body always ends with a short (maybe empty) line
        return line + b"".join(part + b"\n" for part in lines)


@dataclass(slots=True)
class Header:
    """A parsed header: its stanzas, its MAC, and the exact bytes the MAC covers."""

    stanzas: list[Stanza]
    mac: bytes
    mac_input: bytes  # the header up to and including "---"
    size_bytes: int  # length of the whole header, MAC line included

    def verify_mac(self, file_key: bytes) -> None:
        expected = header_mac(file_key, self.mac_input)
        if not hmac.compare_digest(expected, self.mac):
            raise HeaderMACError("the header MAC does not verify: the header was modified")


def b64encode(data: bytes) -> str:
    """Unpadded standard base64, as age writes it."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str | bytes) -> bytes:
    """Strict unpadded standard base64: refuses padding, stray characters and non-canonical bits."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise HeaderError("invalid base64: non-ASCII data") from None
    if "=" in text or "\n" in text or "\r" in text or len(text) % 4 == 1:
        raise HeaderError(f"invalid base64 {text[:20]!r}")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise HeaderError(f"invalid base64 {text[:20]!r}") from None
    if b64encode(data) != text:
        raise HeaderError(f"non-canonical base64 {text[:20]!r}")
    return data


def header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=b"header").derive(file_key)
    h = hmac.new(mac_key, mac_input, "sha256")
    return h.digest()


def encode_header(stanzas: list[Stanza], file_key: bytes) -> bytes:
    """Serialise a header with its MAC, ready to be written before the payload."""
    mac_input = VERSION_LINE + b"".join(s.to_bytes() for s in stanzas) + b"---"
    return mac_input + b" " + b64encode(header_mac(file_key, mac_input)).encode("ascii") + b"\n"


def _valid_arg(arg: bytes) -> bool:
    return bool(arg) and all(33 <= c <= 126 for c in arg)


def _read_line(src: BinaryIO) -> bytes:
    line = src.readline(_MAX_LINE_BYTES)
    if not line.endswith(b"\n"):
        raise HeaderError("the header ends early or has an overlong line")
    return line


def _read_body(src: BinaryIO, consumed: list[bytes]) -> bytes:
    body = bytearray()
    while True:
        line = _read_line(src)
        consumed.append(line)
        chunk = b64decode(line[:-1])
        if len(line) - 1 > BODY_COLUMNS:
            raise HeaderError("a stanza body line is longer than 64 columns")
        body += chunk
        if len(chunk) < _BODY_BYTES_PER_LINE:
            return bytes(body)  # only the last line of a body is short


def read_header(src: BinaryIO) -> Header:
    """Parse a header from `src`, leaving `src` positioned at the first byte of the payload."""
    first = src.readline(len(VERSION_LINE))
    if first != VERSION_LINE:
        if first.startswith(b"age-encryption.org/"):
            raise HeaderError("unsupported age format version")
        raise HeaderError("not an age file (the version line is missing)")
    consumed = [first]
    stanzas: list[Stanza] = []
    while True:
        line = _read_line(src)
        consumed.append(line)
        if line.startswith(b"---"):
            parts = line[:-1].split(b" ")
            if parts[0] != b"---" or len(parts) != 2:
                raise HeaderError("malformed MAC line")
            mac = b64decode(parts[1])
            if len(mac) != 32:
                raise HeaderError("the header MAC has the wrong length")
            header_bytes = b"".join(consumed)
            mac_input = header_bytes[: len(header_bytes) - len(line) + 3]
            return Header(stanzas, mac, mac_input, len(header_bytes))
        if not line.startswith(b"->"):
            raise HeaderError("malformed header line (expected a stanza or the MAC line)")
        parts = line[:-1].split(b" ")
        if parts[0] != b"->" or len(parts) < 2 or not all(_valid_arg(a) for a in parts[1:]):
            raise HeaderError("malformed stanza line")
        args = [a.decode("ascii") for a in parts[1:]]
        stanzas.append(Stanza(args[0], args[1:], _read_body(src, consumed)))
