"""ASCII armor (the PEM-like `-----BEGIN AGE ENCRYPTED FILE-----` form), strict like age's."""

import base64
import binascii

from .errors import ArmorError

BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
END = b"-----END AGE ENCRYPTED FILE-----"
_COLUMNS = 64
_MAX_WHITESPACE = 1024


def armor(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    lines = [encoded[i : i + _COLUMNS] for i in range(0, len(encoded), _COLUMNS)]
    return b"\n".join([BEGIN, *lines, END]) + b"\n"


def dearmor(text: bytes) -> bytes:
    """Decode an armored file. Leading and trailing whitespace is tolerated, nothing else."""
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    skipped = 0
    while lines and not lines[0].strip():
        skipped += len(lines.pop(0)) + 1
        if skipped > _MAX_WHITESPACE:
            raise ArmorError("too much leading whitespace before the armor")
    if not lines or lines[0] != BEGIN:
        raise ArmorError("the armor does not start with the BEGIN line")
    data = bytearray()
    index = 1
    while True:
        if index >= len(lines):
            raise ArmorError("the armor has no END line")
        line = lines[index]
        index += 1
        if line == END:
            break
        if not line:
            raise ArmorError("empty line inside the armor")
        if len(line) > _COLUMNS:
            raise ArmorError("armor line longer than 64 columns")
        try:
            decoded = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise ArmorError("invalid base64 in the armor") from None
        if base64.b64encode(decoded) != line:
            raise ArmorError("non-canonical base64 in the armor")
        data += decoded
        if len(line) < _COLUMNS:
            if index >= len(lines) or lines[index] != END:
                raise ArmorError("only the last armor line may be short")
            index += 1
            break
    trailing = b"\n".join(lines[index:])
    if trailing.strip():
        raise ArmorError("data after the END line of the armor")
    if len(trailing) >= _MAX_WHITESPACE:
        raise ArmorError("too much trailing whitespace after the armor")
    return bytes(data)
