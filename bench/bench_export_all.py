"""`doorbell export-all` cost; prints one JSON object on stdout (progress to stderr).

    .venv/bin/python bench/bench_export_all.py [--clips N] [--clip-mb MB] [--dir DIR]

A home with N clips of MB megabytes of ciphertext each (written by the real ClipStore to
public keys only), then, in the same run on the same disk:
 * baseline: `cp -r` of clips/ (no fsync, no verification);
 * first export-all into an empty target (every file copied, fsynced, read back, renamed);
 * a second export-all with nothing new (every file compared by size and SHA-256);
 * a third after one more clip (one clip's files copied, the rest compared).
Throughput in MB/s of ciphertext, and each run's ratio to the baseline.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from doorbell.commands.export_all import export_all  # noqa: E402
from doorbell.storage.age.identities import X25519Identity  # noqa: E402
from doorbell.storage.clipwriter import ClipStore  # noqa: E402
from doorbell.storage.home import Home  # noqa: E402
from doorbell.storage.index import ClipIndex  # noqa: E402

START_US = 1_714_564_800_000_000
MINUTE_US = 60_000_000


def write_clips(home: Home, count: int, clip_bytes: int, first: int = 0) -> None:
    recipient = X25519Identity.generate().recipient
    with ClipIndex(home.index_file) as index:
        store = ClipStore(home.clips_dir, index, [recipient])
        for n in range(first, first + count):
            writer = store.begin_clip(START_US + n * MINUTE_US)
            block = os.urandom(1 << 20)
            for _ in range(clip_bytes // len(block)):
                writer.video.write(block)
            writer.finish(b"\xff\xd8thumbnail", {"trigger": "motion"})


def timed(label: str, action) -> float:
    print(f"{label} ...", file=sys.stderr)
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--clip-mb", type=int, default=10)
    parser.add_argument("--dir", help="where to work (default: a temporary directory here)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-", dir=args.dir or PROJECT))
    try:
        home = Home(work / "home")
        home.root.mkdir()
        home.recipients_file.write_text("# bench\n")
        write_clips(home, args.clips, args.clip_mb << 20)
        total_mb = sum(p.stat().st_size for p in home.clips_dir.rglob("*") if p.is_file()) / 1e6
        subprocess.run(["sync"], check=True)

        baseline_s = timed("cp -r", lambda: subprocess.run(
            ["cp", "-r", str(home.clips_dir), str(work / "cp-copy")], check=True))
        first = {}
        first_s = timed("export-all (first)",
                        lambda: first.update(vars(export_all(home, work / "backup"))))
        second = {}
        second_s = timed("export-all (nothing new)",
                         lambda: second.update(vars(export_all(home, work / "backup"))))
        write_clips(home, 1, args.clip_mb << 20, first=args.clips)
        third = {}
        third_s = timed("export-all (one new clip)",
                        lambda: third.update(vars(export_all(home, work / "backup"))))
        print(json.dumps({
            "load_average_1m_at_start": os.getloadavg()[0],
            "clips": args.clips, "clip_mb": args.clip_mb, "ciphertext_mb": round(total_mb, 1),
            "baseline_cp_r": {"seconds": round(baseline_s, 2),
                              "mb_s": round(total_mb / baseline_s, 1)},
            "first_export": {"seconds": round(first_s, 2), "mb_s": round(total_mb / first_s, 1),
                             "files_copied": len(first["copied"]),
                             "ratio_to_cp": round(first_s / baseline_s, 2)},
            "nothing_new": {"seconds": round(second_s, 2), "files_copied": len(second["copied"]),
                            "files_compared": second["up_to_date"],
                            "ratio_to_cp": round(second_s / baseline_s, 2)},
            "one_new_clip": {"seconds": round(third_s, 2), "files_copied": len(third["copied"]),
                             "ratio_to_cp": round(third_s / baseline_s, 2)},
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
