"""The age payload: a 16-byte nonce, then ChaCha20-Poly1305 STREAM in 64 KiB chunks.

Chunk i is sealed with the nonce `i as 11 big-endian bytes || last-chunk flag`, so a chunk
cannot be moved, and a file cut at a chunk boundary is recognisably unfinished.
"""

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16
FILE_KEY_SIZE = 16


def payload_aead(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"payload").derive(file_key)
    return ChaCha20Poly1305(key)


def chunk_nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def encrypted_size(plaintext_size: int) -> int:
    """Payload bytes (after the nonce) that `plaintext_size` bytes of plaintext become."""
    chunks = max(1, -(-plaintext_size // CHUNK_SIZE))
    return plaintext_size + chunks * TAG_SIZE
