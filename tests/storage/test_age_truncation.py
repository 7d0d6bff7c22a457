"""Robustness of the age reader: cut files and flipped bits.

A power cut leaves a clip cut at any byte; the strict reader must refuse every such file, and
`recover_prefix` must release exactly its authenticated whole chunks and say it was truncated
(failures lose nothing that was finished). A flipped bit anywhere must be detected, while
random access to chunks the flip did not touch keeps working.
"""

import io
import os
import random

import pytest

from doorbell.storage import age

CHUNK = 64 * 1024
TAG = 16
ENCRYPTED_CHUNK = CHUNK + TAG
NONCE = 16
HEADER_ERRORS = (age.HeaderError, age.HeaderMACError, age.NoIdentityMatchError)


def seal(plaintext: bytes, recipients) -> bytes:
    dst = io.BytesIO()
    with age.encrypt(dst, recipients) as writer:
        writer.write(plaintext)
    return dst.getvalue()


def header_length(ciphertext: bytes) -> int:
    """Length of the header up to and including the MAC line, found without our parser."""
    mac_line = ciphertext.index(b"\n--- ") + 1
    return ciphertext.index(b"\n", mac_line) + 1


def read_strict(ciphertext: bytes, identities) -> tuple[bytes, Exception | None]:
    """Decrypt and read everything; return what was released and the error that stopped it."""
    released = bytearray()
    try:
        reader = age.decrypt(io.BytesIO(ciphertext), identities)
        while block := reader.read(CHUNK // 2 + 3):
            released += block
    except age.AgeError as exc:
        return bytes(released), exc
    return bytes(released), None


class Sample:
    """One encrypted file and the facts about its layout the tests check against."""

    def __init__(self, plaintext_size: int, seed: int):
        self.identity = age.X25519Identity.generate()
        self.plaintext = random.Random(seed).randbytes(plaintext_size)
        self.ciphertext = seal(self.plaintext, [self.identity.recipient])
        self.header = header_length(self.ciphertext)
        self.payload = self.header + NONCE  # offset of chunk 0
        self.chunks = max(1, -(-plaintext_size // CHUNK))
        assert len(self.ciphertext) == self.payload + plaintext_size + self.chunks * TAG

    def cut_offsets(self, window: int) -> list[int]:
        """Every offset in the header and nonce, `window` bytes either side of each chunk
        boundary, and every 997th byte elsewhere."""
        total = len(self.ciphertext)
        offsets = set(range(0, self.payload + window + 1))
        for k in range(1, self.chunks + 1):
            boundary = min(self.payload + k * ENCRYPTED_CHUNK, total)
            offsets.update(range(boundary - window, boundary + window + 1))
        offsets.update(range(0, total, 997))
        return sorted(o for o in offsets if 0 <= o < total)

    def expected_prefix(self, cut: int) -> int:
        """Plaintext bytes that authenticate in a file cut at `cut` (past the nonce)."""
        return (cut - self.payload) // ENCRYPTED_CHUNK * CHUNK


SHAPES = {
    # ~200 KiB: three full chunks and a short final chunk.
    "4-chunks": (3 * CHUNK + 5000, 1, 400),
    # The final chunk is full: a cut at a boundary leaves a full chunk that is not final.
    "full-final-chunk": (3 * CHUNK, 2, 40),
    # An empty file is one empty final chunk.
    "empty": (0, 3, 40),
}


@pytest.fixture(scope="module")
def four_chunks():
    return Sample(3 * CHUNK + 5000, seed=21)


@pytest.fixture(scope="module", params=list(SHAPES))
def sample(request):
    size, seed, window = SHAPES[request.param]
    result = Sample(size, seed)
    result.window = window
    return result


def test_enough_cut_offsets():
    sample = Sample(*SHAPES["4-chunks"][:2])
    offsets = sample.cut_offsets(SHAPES["4-chunks"][2])
    assert sample.chunks == 4
    assert len(offsets) >= 3000
    assert offsets[0] == 0 and offsets[-1] == len(sample.ciphertext) - 1
    assert set(range(sample.payload + 1)) <= set(offsets)


def test_intact_file(sample):
    reader = age.decrypt(io.BytesIO(sample.ciphertext), [sample.identity])
    assert reader.size == len(sample.plaintext)
    assert reader.read() == sample.plaintext
    assert reader.read() == b""

    recovered = age.recover_prefix(io.BytesIO(sample.ciphertext), [sample.identity])

    assert recovered.truncated is False
    assert recovered.size_bytes == len(sample.plaintext)
    assert recovered.reader.read() == sample.plaintext


def test_strict_reader_refuses_every_cut(sample):
    failures = []
    for cut in sample.cut_offsets(sample.window):
        released, error = read_strict(sample.ciphertext[:cut], [sample.identity])
        if cut < sample.payload:
            expected = age.HeaderError  # the header (or the nonce that completes it) is cut
        elif (cut - sample.payload) % ENCRYPTED_CHUNK == 0:
            expected = age.TruncatedError  # only whole chunks, none of them final
        else:
            expected = age.PayloadError  # a partial chunk cannot authenticate
        if not isinstance(error, expected):
            failures.append(f"cut at {cut}: expected {expected.__name__}, got {error!r}")
        allowed = sample.expected_prefix(cut) if cut >= sample.payload else 0
        if len(released) > allowed or released != sample.plaintext[: len(released)]:
            failures.append(f"cut at {cut}: released {len(released)} bytes, at most {allowed}")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"


def test_size_of_a_cut_file_raises(sample):
    failures = []
    for cut in sample.cut_offsets(sample.window):
        if cut < sample.payload:
            continue
        reader = age.decrypt(io.BytesIO(sample.ciphertext[:cut]), [sample.identity])
        at_boundary = (cut - sample.payload) % ENCRYPTED_CHUNK == 0
        expected = age.TruncatedError if at_boundary else age.PayloadError
        try:
            size = reader.size
        except age.AgeError as exc:
            if not isinstance(exc, expected):
                failures.append(f"cut at {cut}: .size raised {exc!r}")
        else:
            failures.append(f"cut at {cut}: .size returned {size}")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"


def test_recover_prefix_releases_exactly_the_authenticated_chunks(sample):
    failures = []
    for cut in sample.cut_offsets(sample.window):
        src = io.BytesIO(sample.ciphertext[:cut])
        if cut < sample.payload:
            try:
                age.recover_prefix(src, [sample.identity])
            except age.HeaderError:
                continue
            failures.append(f"cut at {cut}: nothing authenticates, yet recover_prefix opened it")
            continue
        expected = sample.expected_prefix(cut)
        try:
            recovered = age.recover_prefix(src, [sample.identity])
            data = recovered.reader.read()
            tail = recovered.reader.read()
            size = recovered.reader.size
        except age.AgeError as exc:
            failures.append(f"cut at {cut}: recover_prefix raised {exc!r}")
            continue
        if recovered.truncated is not True:
            failures.append(f"cut at {cut}: truncated is {recovered.truncated!r}")
        if recovered.size_bytes != expected or size != expected:
            failures.append(f"cut at {cut}: size {recovered.size_bytes}/{size}, want {expected}")
        if data != sample.plaintext[:expected] or tail:
            failures.append(f"cut at {cut}: released {len(data)}+{len(tail)}, want {expected}")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"


def test_recovered_prefix_is_random_access(four_chunks):
    sample = four_chunks
    cut = sample.payload + 2 * ENCRYPTED_CHUNK + 1000  # inside chunk 2
    recovered = age.recover_prefix(io.BytesIO(sample.ciphertext[:cut]), [sample.identity])
    reader = recovered.reader
    assert recovered.size_bytes == 2 * CHUNK

    reader.seek(CHUNK - 10)
    assert reader.read(30) == sample.plaintext[CHUNK - 10 : CHUNK + 20]
    assert reader.seek(-5, os.SEEK_END) == 2 * CHUNK - 5
    assert reader.read(100) == sample.plaintext[2 * CHUNK - 5 : 2 * CHUNK]
    reader.seek(2 * CHUNK + 10)
    assert reader.read(10) == b""  # nothing past the authenticated prefix, not even an error


def test_data_after_the_final_chunk_is_refused(sample):
    damaged = sample.ciphertext + b"trailing garbage"

    released, error = read_strict(damaged, [sample.identity])

    assert isinstance(error, age.PayloadError)
    assert released == sample.plaintext[: len(released)]
    recovered = age.recover_prefix(io.BytesIO(damaged), [sample.identity])
    assert recovered.truncated is True
    assert recovered.size_bytes <= len(sample.plaintext)
    assert recovered.reader.read() == sample.plaintext[: recovered.size_bytes]


# -- bit flips ----------------------------------------------------------------------------------


def flipped(data: bytes, position: int, bit: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 1 << bit
    return bytes(out)


def payload_positions(sample: Sample) -> dict[int, list[int]]:
    """Per chunk: its first and last body bytes, a spread of body bytes and every tag byte."""
    rng = random.Random(22)
    positions = {}
    for k in range(sample.chunks):
        start = sample.payload + k * ENCRYPTED_CHUNK
        end = min(start + ENCRYPTED_CHUNK, len(sample.ciphertext))
        body_end = end - TAG
        chosen = set(range(start, start + 8)) | set(range(body_end - 8, body_end))
        chosen |= {rng.randrange(start, body_end) for _ in range(12)}
        chosen |= set(range(body_end, end))  # the tag
        positions[k] = sorted(chosen)
    return positions


def test_every_header_bit_flip_is_detected(four_chunks):
    sample = four_chunks
    failures = []
    for position in range(sample.header):
        for bit in range(8):
            damaged = flipped(sample.ciphertext, position, bit)
            try:
                age.decrypt(io.BytesIO(damaged), [sample.identity])
            except HEADER_ERRORS:
                continue
            except Exception as exc:  # noqa: BLE001 - anything else is a failure to report
                failures.append(f"byte {position} bit {bit}: {exc!r}")
                continue
            failures.append(f"byte {position} bit {bit}: the header still opened")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"


def test_header_flips_in_other_recipients_stanzas_are_detected():
    identities = [age.X25519Identity.generate() for _ in range(3)]
    ciphertext = seal(b"clip" * 1000, [i.recipient for i in identities])
    header = header_length(ciphertext)
    failures = []
    for identity in (identities[0], identities[2]):
        for position in range(header):
            damaged = flipped(ciphertext, position, position % 8)
            try:
                age.decrypt(io.BytesIO(damaged), [identity])
            except HEADER_ERRORS:
                continue
            failures.append(f"byte {position}: not detected")
    assert not failures, "\n".join(failures[:20])

    # A valid-looking change to the third stanza's body is caught by the MAC, not the parser.
    third = ciphertext.index(b"\n-> X25519 ", ciphertext.index(b"\n-> X25519 ", 25) + 1)
    body = ciphertext.index(b"\n", third + 1) + 1
    replacement = b"A" if ciphertext[body + 3 : body + 4] != b"A" else b"B"
    damaged = ciphertext[: body + 3] + replacement + ciphertext[body + 4 :]
    with pytest.raises(age.HeaderMACError):
        age.decrypt(io.BytesIO(damaged), [identities[0]])


def test_nonce_bit_flips_are_detected(four_chunks):
    sample = four_chunks
    for position in range(sample.header, sample.payload):
        for bit in (0, 3, 7):
            damaged = flipped(sample.ciphertext, position, bit)
            released, error = read_strict(damaged, [sample.identity])
            assert isinstance(error, age.PayloadError), (position, bit, error)
            assert released == b"", (position, bit)
            reader = age.decrypt(io.BytesIO(damaged), [sample.identity])
            for k in range(sample.chunks):
                reader.seek(k * CHUNK)
                with pytest.raises(age.PayloadError):
                    reader.read(1)


def test_payload_bit_flips_are_detected_and_other_chunks_stay_readable(four_chunks):
    sample = four_chunks
    positions = payload_positions(sample)
    assert sum(len(p) for p in positions.values()) >= 150
    failures = []
    for k, chunk_positions in positions.items():
        for position in chunk_positions:
            where = f"chunk {k} byte {position}"
            damaged = flipped(sample.ciphertext, position, position % 8)
            released, error = read_strict(damaged, [sample.identity])
            if not isinstance(error, age.PayloadError) or isinstance(error, age.TruncatedError):
                failures.append(f"{where}: whole read gave {error!r}")
            if len(released) > k * CHUNK or released != sample.plaintext[: len(released)]:
                failures.append(f"{where}: released {len(released)} bytes")
            reader = age.decrypt(io.BytesIO(damaged), [sample.identity])
            for j in range(sample.chunks):
                start = j * CHUNK
                reader.seek(start + 7)
                if j == k:
                    try:
                        reader.read(100)
                    except age.PayloadError:
                        continue
                    failures.append(f"{where}: the flipped chunk's range read without error")
                elif reader.read(CHUNK - 7) != sample.plaintext[start + 7 : start + CHUNK]:
                    failures.append(f"{where}: untouched chunk {j} did not read back")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"


@pytest.mark.parametrize("damaged_chunk", [0, 1, 2, 3])
def test_recover_prefix_of_a_damaged_file_stops_before_the_damage(four_chunks, damaged_chunk):
    """A torn write can damage a chunk in the middle: the prefix ends before it."""
    sample = four_chunks
    position = sample.payload + damaged_chunk * ENCRYPTED_CHUNK + 1234
    damaged = flipped(sample.ciphertext, position, 2)

    recovered = age.recover_prefix(io.BytesIO(damaged), [sample.identity])

    assert recovered.truncated is True
    assert recovered.size_bytes == damaged_chunk * CHUNK
    assert recovered.reader.read() == sample.plaintext[: damaged_chunk * CHUNK]
