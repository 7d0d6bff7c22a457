"""In-memory age round trips for the storage tests."""

import io

from doorbell.storage import age


def seal(plaintext: bytes, recipients) -> bytes:
    dst = io.BytesIO()
    with age.encrypt(dst, recipients) as writer:
        writer.write(plaintext)
    return dst.getvalue()


def open_strict(ciphertext: bytes, identities) -> bytes:
    """Read the whole plaintext; any error (including one after released data) propagates."""
    reader = age.decrypt(io.BytesIO(ciphertext), identities)
    out = bytearray()
    while block := reader.read(1024 * 1024):
        out += block
    return bytes(out)
