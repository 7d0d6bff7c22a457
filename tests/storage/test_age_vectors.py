"""The C2SP CCTV age vectors: every file gives its expected outcome.

For "payload failure", the plaintext released before the error must match the vector's hash:
a streaming reader may only ever release authenticated data.
"""

import hashlib
import io
import zlib
from pathlib import Path

import pytest

from doorbell.storage import age
from doorbell.storage.age.armor import dearmor

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "age"

EXPECTED_ERRORS = {
    "no match": age.NoIdentityMatchError,
    "HMAC failure": age.HeaderMACError,
    "header failure": age.HeaderError,
    "payload failure": age.PayloadError,
    "armor failure": age.ArmorError,
}


def _vector_names() -> list[str]:
    if not VECTORS.is_dir():
        return []
    return sorted(p.name for p in VECTORS.iterdir() if p.is_file())


def _parse_vector(path: Path) -> tuple[dict[str, list[str]], bytes]:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    if fields.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return fields, body


def _identities(fields):
    identities = [age.parse_identity(text) for text in fields.get("identity", [])]
    identities += [age.ScryptIdentity(p) for p in fields.get("passphrase", [])]
    return identities


def _decrypt_streaming(fields, body) -> tuple[bytes, Exception | None]:
    released = bytearray()
    try:
        if fields.get("armored") == ["yes"]:
            body = dearmor(body)
        reader = age.decrypt(io.BytesIO(body), _identities(fields))
        while chunk := reader.read(4096):
            released += chunk
    except age.AgeError as exc:
        return bytes(released), exc
    return bytes(released), None


@pytest.mark.skipif(not VECTORS.is_dir(), reason=f"CCTV vectors not found at {VECTORS}")
@pytest.mark.parametrize("name", _vector_names())
def test_cctv_vector(name):
    fields, body = _parse_vector(VECTORS / name)
    expect = fields["expect"][0]
    if name.startswith("hybrid") or name == "armor_hybrid":
        # Post-quantum hybrid recipients are not implemented: they must be refused cleanly
        # (an AgeError subclass, never a crash), and never "succeed" with wrong plaintext.
        released, error = _decrypt_streaming(fields, body)
        if expect == "success":
            assert isinstance(error, (age.NoIdentityMatchError, age.UnsupportedRecipientError))
        else:
            assert isinstance(error, age.AgeError)
        return
    released, error = _decrypt_streaming(fields, body)
    if expect == "success":
        assert error is None, f"{name}: {error!r}"
        assert hashlib.sha256(released).hexdigest() == fields["payload"][0]
        return
    expected = EXPECTED_ERRORS[expect]
    assert isinstance(error, expected), f"{name}: expected {expect}, got {error!r}"
    if expect == "header failure":
        assert not isinstance(error, age.HeaderMACError), f"{name}: {error!r}"
    if expect == "payload failure" and "payload" in fields:
        assert hashlib.sha256(released).hexdigest() == fields["payload"][0], name


def test_vectors_are_all_there():
    if not VECTORS.is_dir():
        pytest.skip(f"CCTV vectors not found at {VECTORS}")
    assert len(_vector_names()) == 143
