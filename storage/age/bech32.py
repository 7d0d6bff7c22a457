"""Bech32 (BIP 173) as age uses it for keys: checksum as specified, no 90-character limit."""

from .errors import AgeError

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class Bech32Error(AgeError, ValueError):
    """A string is not valid Bech32."""


def _polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                checksum ^= _GENERATOR[i]
    return checksum


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits or (acc << (to_bits - bits)) & max_value:
        raise Bech32Error("invalid Bech32 padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode `data` under the human-readable part `hrp` (lower case result)."""
    values = _convert_bits(data, 8, 5, pad=True)
    checksum = _polymod(_hrp_expand(hrp) + values + [0] * 6) ^ 1
    values += [(checksum >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values)


def decode(text: str) -> tuple[str, bytes]:
    """Decode a Bech32 string into (lower-case hrp, data). Mixed case is refused."""
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed-case Bech32 string")
    text = text.lower()
    separator = text.rfind("1")
    if separator < 1 or separator + 7 > len(text):
        raise Bech32Error("Bech32 separator misplaced")
    hrp, rest = text[:separator], text[separator + 1 :]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid character in Bech32 prefix")
    try:
        values = [_CHARSET.index(c) for c in rest]
    except ValueError:
        raise Bech32Error("invalid character in Bech32 data") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise Bech32Error("invalid Bech32 checksum")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, pad=False))
