"""What post-quantum household keys cost per clip; prints one JSON object on stdout.

    .venv/bin/python bench/bench_hybrid.py [--max-recipients N] [--clip-mib M] [--repeats R]

For 1..N recipients (a household's members plus the recovery key), hybrid ML-KEM-768 + X25519
keys against X25519 keys, measured in the same run and interleaved:

 * header_bytes: the age header of a clip (what each recipient adds to every clip file);
 * header_ms: making that header (a fresh file key wrapped to every recipient), median;
 * encrypt_clip_ms: encrypting a whole clip of --clip-mib MiB in 64 KiB blocks to memory,
   header included, median;
 * open_ms: what the viewer pays to open one clip (header parse, unwrap, MAC), median, with the
   identity of the last recipient (the worst case: every stanza before it is tried).

The baseline is the X25519 column of the same run; `*_ratio` is hybrid / X25519. No timed
assertions: this reports; bench/README.md has the targets.
"""

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from doorbell.storage.age import HybridIdentity, X25519Identity, decrypt, encrypt  # noqa: E402

BLOCK = 64 * 1024
MIB = 1024 * 1024


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _encrypt(recipients, payload: bytes) -> bytes:
    dst = io.BytesIO()
    with encrypt(dst, recipients) as writer:
        view = memoryview(payload)
        for offset in range(0, len(payload), BLOCK):
            writer.write(view[offset : offset + BLOCK])
    return dst.getvalue()


def measure(count: int, clip_bytes: int, repeats: int) -> dict:
    kinds = {"x25519": [X25519Identity.generate() for _ in range(count)],
             "hybrid": [HybridIdentity.generate() for _ in range(count)]}
    payload = os.urandom(clip_bytes)
    samples = {kind: {"header": [], "clip": [], "open": []} for kind in kinds}
    sizes = {}
    for _ in range(repeats):
        for kind, identities in kinds.items():  # interleaved: both see the same machine state
            recipients = [identity.recipient for identity in identities]
            started = time.perf_counter()
            empty = _encrypt(recipients, b"")
            samples[kind]["header"].append(time.perf_counter() - started)
            sizes[kind] = len(empty) - 16 - 16  # minus the payload nonce and one empty chunk
            started = time.perf_counter()
            clip = _encrypt(recipients, payload)
            samples[kind]["clip"].append(time.perf_counter() - started)
            started = time.perf_counter()
            decrypt(io.BytesIO(clip), [identities[-1]])
            samples[kind]["open"].append(time.perf_counter() - started)
    row = {"recipients": count}
    for kind in kinds:
        row[kind] = {"header_bytes": sizes[kind],
                     "header_ms": _median_ms(samples[kind]["header"]),
                     "encrypt_clip_ms": _median_ms(samples[kind]["clip"]),
                     "open_ms": _median_ms(samples[kind]["open"])}
    base, pq = row["x25519"], row["hybrid"]
    row["header_bytes_ratio"] = round(pq["header_bytes"] / base["header_bytes"], 2)
    row["encrypt_clip_ratio"] = round(pq["encrypt_clip_ms"] / base["encrypt_clip_ms"], 3)
    row["open_ratio"] = round(pq["open_ms"] / base["open_ms"], 2)
    row["hybrid_header_share_of_clip"] = round(pq["header_bytes"] / clip_bytes, 5)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-recipients", type=int, default=6)
    parser.add_argument("--clip-mib", type=float, default=2.0,
                        help="clip size (default 2 MiB: about 10 s of 720p H.264)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    clip_bytes = int(args.clip_mib * MIB)
    started = time.perf_counter()
    rows = []
    for count in range(1, args.max_recipients + 1):
        print(f"{count} recipient(s)...", file=sys.stderr)
        rows.append(measure(count, clip_bytes, args.repeats))
    result = {
        "benchmark": "hybrid_recipients",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "clip_bytes": clip_bytes,
        "repeats": args.repeats,
        "baseline": "x25519 (same run, interleaved)",
        "per_recipient_count": rows,
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
