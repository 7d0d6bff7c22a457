"""Fault benchmark: kill -9 of `doorbell record` at random moments; prints one JSON object.

    .venv/bin/python bench/bench_faults.py [--rounds 50] [--max-delay-s 10] [--video FILE]
                                           [--quiet-camera] [--dir DIR] [--quick]

Each round starts `doorbell record --source VIDEO --until-eof` on one home (made by `doorbell
init` in a scratch directory), waits for its clip to begin, and sends SIGKILL after a random
delay between 0 and --max-delay-s seconds (a delay past the clip's end lets it finish). The
next round's recorder reconciles what the kill left, as it does on a device; after the last
round the store is reconciled once more and every clip is checked with the recovery key:

 * complete: sealed, and every chunk authenticates;
 * truncated: interrupted; its authenticated prefix is counted as having a fragment (a whole
   moof+mdat pair) and as playable (PyAV decodes at least one frame from it);
 * damaged: indexed "damaged" (no valid header), or a truncated clip whose prefix does not open;
 * lost: a clip the recorder logged as saved that is not complete and intact at the end.
Target: 0 lost, 0 damaged, and every truncated clip that holds a fragment plays.
--quiet-camera records with no pre-roll at a low bitrate (crf 30), so the first 64 KiB chunk
takes a while to fill and many kills land before it.
"""

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "bench"))

import av  # noqa: E402
from scratch import pick_directory  # noqa: E402 (bench/ is on sys.path)

from doorbell.storage.age import AgeError, parse_identity  # noqa: E402
from doorbell.storage.clipvideo import open_clip_video  # noqa: E402
from doorbell.storage.index import ClipIndex  # noqa: E402
from doorbell.storage.reconcile import reconcile  # noqa: E402

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "video" / "vtest.avi"
PASSPHRASE = "bench-passphrase-not-a-secret-9"  # noqa: S105 - a throwaway test key
SAVED = re.compile(r"clip (\S+) saved")


def log(message: str) -> None:
    print(f"[bench_faults] {message}", file=sys.stderr, flush=True)


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
    env.update(DOORBELL_HOME=str(home), DOORBELL_RUNTIME_DIR=str(home.parent / "run"),
               PYTHONDONTWRITEBYTECODE="1")
    return env


def init_home(work: Path) -> tuple[Path, str]:
    """A home made by `doorbell init`; (its path, the recovery key init printed)."""
    passphrase = work / "passphrase.txt"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    home = work / "home"
    result = subprocess.run(
        [sys.executable, "-m", "doorbell", "init", "--passphrase-file", str(passphrase),
         "--work-factor", "15"],
        capture_output=True, text=True, env=environment(home), cwd=PROJECT, check=True,
        stdin=subprocess.DEVNULL)
    return home, re.findall(r"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+", result.stdout)[0]


def partials(clips_dir: Path) -> set[Path]:
    return set(clips_dir.rglob("*.mp4.age.partial")) if clips_dir.is_dir() else set()


def one_round(home: Path, video: Path, delay_s: float, record_log: Path) -> str:
    """Start the recorder, wait for a clip to begin, kill it `delay_s` later. How it ended."""
    before = partials(home / "clips")  # the last round's, until this recorder reconciles it
    with record_log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "doorbell", "record", "--source", str(video), "--until-eof"],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=PROJECT,
            env=environment(home))
    try:
        deadline = time.monotonic() + 120
        while partials(home / "clips") <= before:
            if process.poll() is not None:
                tail = record_log.read_text(errors="replace").strip().splitlines()[-3:]
                log("the recorder ended before a clip began: " + " | ".join(tail))
                return "ended before a clip began"
            if time.monotonic() > deadline:
                return "no clip began within 120 s"
            time.sleep(0.005)
        time.sleep(delay_s)
        return "killed" if process.poll() is None else "ended before the kill"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)


def fragments(mp4: bytes) -> int:
    """Whole moof+mdat pairs among the top-level boxes of a (possibly cut) fragmented MP4."""
    position, pairs, pending_moof = 0, 0, False
    while position + 8 <= len(mp4):
        size = int.from_bytes(mp4[position : position + 4], "big")
        kind = mp4[position + 4 : position + 8]
        if size == 1 and position + 16 <= len(mp4):
            size = int.from_bytes(mp4[position + 8 : position + 16], "big")
        if size < 8 or position + size > len(mp4):
            break  # a box cut off by the end of the prefix
        if kind == b"moof":
            pending_moof = True
        elif kind == b"mdat" and pending_moof:
            pairs, pending_moof = pairs + 1, False
        position += size
    return pairs


def decoded_frames(mp4: bytes) -> int:
    """Frames PyAV decodes from the start of `mp4` before it stops (a cut box ends it)."""
    frames = 0
    try:
        with av.open(io.BytesIO(mp4)) as container:
            for _frame in container.decode(video=0):
                frames += 1
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        if not frames:
            log(f"a prefix of {len(mp4)} bytes decodes to nothing: {exc}")
    return frames


def check_store(home: Path, recovery_key: str, saved: set[str]) -> dict:
    identity = parse_identity(recovery_key)
    with ClipIndex(home / "index.sqlite3") as index:
        report = reconcile(home / "clips", index)
        rows = index.clips(newest_first=False)
    counts = {"complete": 0, "truncated": 0, "damaged": 0, "lost": 0}
    truncated = {"with_fragment": 0, "with_fragment_playable": 0, "playable": 0,
                 "empty_prefix": 0, "prefix_bytes_total": 0}
    intact = set()
    for row in rows:
        if row.state == "damaged":
            counts["damaged"] += 1
            continue
        try:
            with open_clip_video(home / "clips", row.id, [identity]) as video:
                video.authenticate_all()
                prefix = b"".join(video.iter_range(0, video.size_bytes - 1))
                whole = not video.truncated
        except AgeError as exc:
            log(f"clip {row.id} ({row.state}) does not open: {exc}")
            counts["damaged"] += 1
            continue
        if row.state == "complete" and whole:
            counts["complete"] += 1
            intact.add(row.id)
            continue
        counts["truncated"] += 1
        truncated["prefix_bytes_total"] += len(prefix)
        truncated["empty_prefix"] += not prefix
        playable = decoded_frames(prefix) > 0 if prefix else False
        truncated["playable"] += playable
        if fragments(prefix):
            truncated["with_fragment"] += 1
            truncated["with_fragment_playable"] += playable
    counts["lost"] = len(saved - intact)
    return {"counts": counts, "truncated": truncated,
            "last_reconcile": report.lines(), "clips_in_index": len(rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--max-delay-s", type=float, default=10.0,
                        help="kill up to this long after the clip begins (default 10)")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--quiet-camera", action="store_true",
                        help="no pre-roll, crf 30: a slow first chunk")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--dir", help="where the scratch directory goes")
    parser.add_argument("--quick", action="store_true", help="5 rounds, to see that it runs")
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds
    rng = random.Random(args.seed)
    load_1m = os.getloadavg()[0]
    work = pick_directory(args.dir, "doorbell-bench-faults-")
    started = time.monotonic()
    try:
        home, recovery_key = init_home(work)
        recording = "[recording]\npre_roll_s = 0\ncrf = 30\n" if args.quiet_camera else ""
        (home / "config.toml").write_text(recording + "[retention]\nmin_free_bytes = 0\n")
        record_log = work / "record.log"
        outcomes: dict[str, int] = {}
        delays = [rng.uniform(0, args.max_delay_s) for _ in range(rounds)]
        for number, delay_s in enumerate(delays, 1):
            outcome = one_round(home, args.video, delay_s, record_log)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            log(f"round {number}/{rounds}: {outcome} {delay_s:.2f} s after the clip began")
        saved = set(SAVED.findall(record_log.read_text(errors="replace")))
        store = check_store(home, recovery_key, saved)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    counts, truncated = store["counts"], store["truncated"]
    result = {
        "benchmark": "faults",
        "video": str(args.video),
        "rounds": rounds,
        "quiet_camera": args.quiet_camera,
        "kill_delay_after_clip_start_s": {"min": round(min(delays), 3),
                                          "max": round(max(delays), 3)},
        "rounds_by_outcome": outcomes,
        "clips_saved_by_the_recorder": len(saved),
        "counts": counts,
        "truncated": truncated,
        "last_reconcile": store["last_reconcile"],
        "target_met": counts["lost"] == 0 and counts["damaged"] == 0
        and truncated["with_fragment_playable"] == truncated["with_fragment"],
        "seconds": round(time.monotonic() - started, 1),
        "load_average_1m_at_start": round(load_1m, 2),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
