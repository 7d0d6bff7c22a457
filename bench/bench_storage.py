"""Storage benchmarks; prints one JSON object on stdout (progress goes to stderr).

    .venv/bin/python bench/bench_storage.py [--dir DIR] [--quick]

1. Encrypt throughput: the same 100 MiB, in 64 KiB blocks as an encoder hands them over, written
   to the same disk in the same run, once plainly and once through the age writer, each ending
   with an fsync; best of 3 each, interleaved. Target: encrypted / plain >= 0.9.
2. Time to first byte of a 64 KiB range at the start, middle and end of 1 MiB, 100 MiB and 1 GiB
   age files: open + decrypt() (header, X25519 unwrap, HMAC) + seek + read(65536); median of 20
   after one warm-up. Target: 1 GiB within 2x of 1 MiB (flat in file size).
3. Identity unlock (Keyring.unlock: scrypt + decrypt) at the calibrated work factor and at 2^15.

Files go to a temporary directory on the same file system as the project (override with --dir)
and are deleted at the end. No timed assertions: this reports; bench/README.md has the targets.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from scratch import pick_directory  # noqa: E402 (bench/ is on sys.path)

from doorbell.storage.age import X25519Identity, decrypt, encrypt  # noqa: E402
from doorbell.storage.keyring import Keyring, calibrate_work_factor  # noqa: E402

MIB = 1024 * 1024
BLOCK = 64 * 1024
READ = 64 * 1024
PASSPHRASE = "bench-passphrase-not-a-secret-9"  # noqa: S105 - a throwaway test key


def log(message: str) -> None:
    print(f"[bench_storage] {message}", file=sys.stderr, flush=True)




def blocks_of(data: memoryview, block: int = BLOCK):
    for offset in range(0, len(data), block):
        yield data[offset : offset + block]


def write_plain(path: Path, data: memoryview) -> float:
    started = time.perf_counter()
    with path.open("wb") as handle:
        for block in blocks_of(data):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def write_encrypted(path: Path, data: memoryview, recipients) -> float:
    started = time.perf_counter()
    with path.open("wb") as handle:
        writer = encrypt(handle, recipients)
        for block in blocks_of(data):
            writer.write(block)
        writer.close()
        handle.flush()
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


class _NullSink:
    def write(self, data) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def encrypt_only(data: memoryview, recipients) -> float:
    """The age writer into a sink that discards: the CPU cost of encryption alone."""
    started = time.perf_counter()
    writer = encrypt(_NullSink(), recipients)
    for block in blocks_of(data):
        writer.write(block)
    writer.close()
    return time.perf_counter() - started


def bench_throughput(directory: Path, size: int, runs: int, recipients) -> dict:
    log(f"throughput: {size // MIB} MiB, best of {runs}, plain and encrypted interleaved")
    data = memoryview(os.urandom(size))
    plain, encrypted, cpu_only = [], [], []
    for _ in range(runs):
        plain.append(write_plain(directory / "plain.bin", data))
        encrypted.append(write_encrypted(directory / "clip.mp4.age", data, recipients))
        cpu_only.append(encrypt_only(data, recipients))
    best_plain, best_encrypted = min(plain), min(encrypted)
    return {
        "bytes": size,
        "block_bytes": BLOCK,
        "runs": runs,
        "plain_mb_s": round(size / best_plain / 1e6, 1),
        "encrypted_mb_s": round(size / best_encrypted / 1e6, 1),
        "ratio": round(best_plain / best_encrypted, 3),
        "target_ratio_at_least": 0.9,
        "meets_target": best_plain / best_encrypted >= 0.9,
        "encrypt_cpu_only_mb_s": round(size / min(cpu_only) / 1e6, 1),
        "plain_s_all": [round(t, 3) for t in plain],
        "encrypted_s_all": [round(t, 3) for t in encrypted],
    }


def make_age_file(path: Path, size: int, recipients) -> None:
    pattern = memoryview(os.urandom(8 * MIB))
    with path.open("wb") as handle:
        writer = encrypt(handle, recipients)
        written = 0
        while written < size:
            take = min(size - written, len(pattern))
            for block in blocks_of(pattern[:take]):
                writer.write(block)
            written += take
        writer.close()
        handle.flush()
        os.fsync(handle.fileno())


def time_first_byte(path: Path, position: int, identities, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        with path.open("rb") as handle:
            reader = decrypt(handle, identities)
            reader.seek(position)
            data = reader.read(READ)
        times.append(time.perf_counter() - started)
        assert len(data) == READ, (path, position, len(data))
    return times[1:]  # the first one warms caches


def bench_first_byte(directory: Path, sizes: dict[str, int], repeats: int, identity) -> dict:
    results: dict = {"read_bytes": READ, "repeats": repeats, "median_ms": {}}
    for label, size in sizes.items():
        path = directory / f"{label}.mp4.age"
        started = time.perf_counter()
        make_age_file(path, size, [identity.recipient])
        log(f"first byte: wrote {label} in {time.perf_counter() - started:.1f} s")
        positions = {"start": 0, "middle": size // 2, "end": size - READ}
        results["median_ms"][label] = {
            where: round(statistics.median(time_first_byte(path, pos, [identity], repeats)) * 1e3,
                         3)
            for where, pos in positions.items()
        }
        path.unlink()
    small, large = results["median_ms"]["1MiB"], results["median_ms"][list(sizes)[-1]]
    per_position = {where: round(large[where] / small[where], 3) for where in small}
    results["ratio_largest_vs_1MiB"] = per_position
    results["ratio_worst"] = max(per_position.values())
    results["target_ratio_at_most"] = 2.0
    results["meets_target"] = results["ratio_worst"] <= 2.0
    return results


def bench_unlock(directory: Path, repeats: int) -> dict:
    keyring = Keyring(directory / "identities")
    started = time.perf_counter()
    calibrated = calibrate_work_factor()
    calibration_s = time.perf_counter() - started
    results: dict = {"calibrated_work_factor": calibrated,
                     "calibration_s": round(calibration_s, 3)}
    for label, work_factor in (("calibrated", calibrated), ("wf15", 15)):
        name = f"bench{work_factor}"
        if not keyring.exists(name):
            keyring.create(name, PASSPHRASE, work_factor=work_factor)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            keyring.unlock(name, PASSPHRASE)
            times.append(time.perf_counter() - started)
        results[label] = {
            "work_factor": work_factor,
            "scrypt_memory_mib": 128 * 8 * (1 << work_factor) // MIB,
            "unlock_s_median": round(statistics.median(times), 3),
            "unlock_s_all": [round(t, 3) for t in times],
        }
        log(f"unlock at 2^{work_factor}: {statistics.median(times):.3f} s")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="where to write the test files (default: a temp dir on "
                        "the project's file system)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller files and fewer repeats, to check the script itself")
    args = parser.parse_args()

    directory = pick_directory(args.dir, "doorbell-bench-")
    identity = X25519Identity.generate()
    recipients = [identity.recipient, X25519Identity.generate().recipient]  # member + recovery
    if args.quick:
        size, runs, repeats = 8 * MIB, 2, 5
        sizes = {"1MiB": MIB, "16MiB": 16 * MIB}
    else:
        size, runs, repeats = 100 * MIB, 3, 20
        sizes = {"1MiB": MIB, "100MiB": 100 * MIB, "1GiB": 1024 * MIB}
    started = time.perf_counter()
    try:
        result = {
            "benchmark": "storage",
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
            "directory_same_fs_as_project": os.stat(directory).st_dev == os.stat(PROJECT).st_dev,
            "quick": args.quick,
            "encrypt_throughput": bench_throughput(directory, size, runs, recipients),
            "time_to_first_byte": bench_first_byte(directory, sizes, repeats, identity),
            "identity_unlock": bench_unlock(directory, repeats=3),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
