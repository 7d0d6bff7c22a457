"""The C2SP CCTV age vectors: every file gives its expected outcome.

For "payload failure", the plaintext released before the error must match the vector's hash:
a streaming reader may only ever release authenticated data. The 19 post-quantum hybrid
vectors (mlkem768x25519 stanzas, AGE-SECRET-KEY-PQ- identities) are held to the same rules.
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


def _outcome_problem(name: str) -> str | None:
    """None if the vector gives its expected result, else what went wrong."""
    fields, body = _parse_vector(VECTORS / name)
    expect = fields["expect"][0]
    released, error = _decrypt_streaming(fields, body)
    if expect == "success":
        if error is not None:
            return f"{name}: expected success, got {error!r}"
        if hashlib.sha256(released).hexdigest() != fields["payload"][0]:
            return f"{name}: decrypted to the wrong plaintext"
        return None
    if not isinstance(error, EXPECTED_ERRORS[expect]):
        return f"{name}: expected {expect}, got {error!r}"
    if expect == "header failure" and isinstance(error, age.HeaderMACError):
        return f"{name}: expected a header failure, got a MAC failure {error!r}"
    # the released-prefix rule: exactly the plaintext that authenticated came out
    if expect == "payload failure" and "payload" in fields \
            and hashlib.sha256(released).hexdigest() != fields["payload"][0]:
        return f"{name}: released other plaintext than the authenticated prefix"
    return None


@pytest.mark.skipif(not VECTORS.is_dir(), reason=f"CCTV vectors not found at {VECTORS}")
@pytest.mark.parametrize("name", _vector_names())
def test_cctv_vector(name):
    problem = _outcome_problem(name)
    assert problem is None, problem


def test_all_143_vectors_give_their_expected_result():
    if not VECTORS.is_dir():
        pytest.skip(f"CCTV vectors not found at {VECTORS}")
    names = _vector_names()
    assert len(names) == 143
    # the post-quantum hybrid vectors are run like every other one, none is set aside
    assert len([n for n in names if "hybrid" in n]) == 19
    problems = [p for p in map(_outcome_problem, names) if p is not None]
    assert problems == []
    assert len(names) - len(problems) == 143
