"""The post-quantum hybrid recipient: ML-KEM-768 + X25519 (X-Wing), `age1pq1...` keys.

As the age specification (C2SP age, "The MLKEM768-X25519 hybrid post-quantum recipient type")
defines it, the file key is sealed with HPKE (RFC 9180) base mode, KEM MLKEM768-X25519, KDF
HKDF-SHA256, AEAD ChaCha20Poly1305, info "age-encryption.org/mlkem768x25519", empty aad:

    -> mlkem768x25519 <base64 enc: 1088 bytes of ML-KEM ciphertext, then 32 of X25519 share>
    <base64 of the 32-byte sealed file key>

All of it is the `cryptography` package's HPKE (cryptography.hazmat.primitives.hpke): nothing
here is a primitive of our own. What this module adds is the age encoding: the recipient is
the 1216-byte encapsulation key (ML-KEM-768's 1184 bytes, then X25519's 32) in Bech32 under
`age1pq`, and the stanza above. A file sealed this way stays confidential against a future
quantum computer as long as either ML-KEM-768 or X25519 holds.

This is the encrypting half; the identity (the 32-byte seed) is in identities.py.
"""

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from . import bech32
from .errors import AgeError
from .header import Stanza, b64encode

STANZA_TYPE = "mlkem768x25519"
RECIPIENT_HRP = "age1pq"
IDENTITY_HRP = "age-secret-key-pq-"
HPKE_INFO = b"age-encryption.org/mlkem768x25519"
MLKEM_PUBLIC_KEY_BYTES = 1184
X25519_KEY_BYTES = 32
PUBLIC_KEY_BYTES = MLKEM_PUBLIC_KEY_BYTES + X25519_KEY_BYTES  # 1216
MLKEM_CIPHERTEXT_BYTES = 1088
ENC_BYTES = MLKEM_CIPHERTEXT_BYTES + X25519_KEY_BYTES  # 1120
SEALED_FILE_KEY_BYTES = 16 + 16  # the file key and its ChaCha20Poly1305 tag


def hpke_suite() -> hpke.Suite:
    return hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class HybridRecipient:
    """An `age1pq1...` public key: ML-KEM-768 + X25519, decryptable by age 1.3.0 and later."""

    def __init__(self, public_key: bytes):
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise AgeError(f"a hybrid public key is {PUBLIC_KEY_BYTES} bytes, "
                           f"not {len(public_key)}")
        try:
            mlkem = MLKEM768PublicKey.from_public_bytes(public_key[:MLKEM_PUBLIC_KEY_BYTES])
            x25519 = X25519PublicKey.from_public_bytes(public_key[MLKEM_PUBLIC_KEY_BYTES:])
        except ValueError:
            raise AgeError("the hybrid public key is not a valid ML-KEM-768 key") from None
        self.public_key = bytes(public_key)
        self._key = hpke.MLKEM768X25519PublicKey(mlkem, x25519)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        sealed = hpke_suite().encrypt(file_key, self._key, info=HPKE_INFO)
        enc, body = sealed[:ENC_BYTES], sealed[ENC_BYTES:]
        return [Stanza(STANZA_TYPE, [b64encode(enc)], body)]

    def __str__(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public_key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HybridRecipient) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        text = str(self)
        return f"HybridRecipient({text[:16]}...{text[-8:]})"
