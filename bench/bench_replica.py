"""Replica benchmark; prints one JSON object (progress on stderr).

    .venv/bin/python bench/bench_replica.py [--seconds 40] [--fps 15] [--poll-interval-s 0.5]

The real `doorbell record` on the synthetic camera at 1280x720 and --fps in real time (motion
throughout, 10 s clips), and the real `doorbell replicate` copying to Debian's OpenSSH sshd on a
free loopback port (tests/sftp_server.py). Every 50 ms the growing clip's size on the device and
on the replica are sampled; the lag of a sample is how long ago the device's file first reached
the size the replica has now.

Reported: lag median, p95 and worst; the replicator's CPU seconds per video-second and its peak
RSS; and, as the baseline measured in the same run, the recorder's CPU per video-second and RSS
(the replicator should cost a small fraction of what recording does).

Then the backlog: a home with --backlog-mb of sealed clips (10 MB each) that the replica has
none of, as after a long outage; `doorbell replicate` catches up while its RSS is sampled. The
baseline, in the same run, is a backlog a tenth that size: the replicator's peak RSS should not
grow with the backlog (it streams; it never holds the pending bytes or a list of every file).
Reported per backlog: bytes, seconds to catch up, MB/s and peak RSS. No assertions: this
reports.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.sftp_server import SftpServer  # noqa: E402 - after the path is set

PASSPHRASE = "amber-kettle-under-snow-31"  # noqa: S105 - a throwaway bench household
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--poll-interval-s", type=float, default=0.5)
    parser.add_argument("--backlog-mb", type=int, default=200)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
    home = base / "home"
    env.update(DOORBELL_HOME=str(home), DOORBELL_RUNTIME_DIR=str(base / "run"),
               PYTHONDONTWRITEBYTECODE="1")
    doorbell = [sys.executable, "-m", "doorbell"]
    server = SftpServer(base / "sshd").start()
    processes: list[subprocess.Popen] = []
    try:
        passphrase = base / "passphrase.txt"
        passphrase.write_text(PASSPHRASE + "\n")
        subprocess.run([*doorbell, "init", "--passphrase-file", str(passphrase), "--x25519",
                        "--work-factor", "15"], env=env, cwd=PROJECT, check=True,
                       capture_output=True)
        (home / "config.toml").write_text(
            f"[camera]\nwidth = 1280\nheight = 720\nfps = {args.fps}\n"
            "[recording]\nmax_clip_s = 10\n[retention]\nmin_free_bytes = 0\n")
        subprocess.run([*doorbell, "replicate", "--pair", server.url], env=env, cwd=PROJECT,
                       check=True, capture_output=True)
        log = (base / "processes.log").open("ab")
        replicator = subprocess.Popen(
            [*doorbell, "replicate", "--identity-file", str(server.client_key),
             "--poll-interval-s", str(args.poll_interval_s), "--state-dir", str(base / "state")],
            env=env, cwd=PROJECT, stdout=log, stderr=log)
        processes.append(replicator)
        recorder = subprocess.Popen([*doorbell, "record", "--source", "synthetic"], env=env,
                                    cwd=PROJECT, stdout=log, stderr=log)
        processes.append(recorder)
        history: dict[str, list[tuple[float, int]]] = {}
        lags_s: list[float] = []
        peak = {"replicator": 0, "recorder": 0}
        started = None
        cpu0 = {}
        while True:
            now = time.monotonic()
            for process in processes:
                if process.poll() is not None:
                    sys.exit(f"a process ended: {(base / 'processes.log').read_text()[-2000:]}")
            for partial in (home / "clips").rglob("*.partial") if (home / "clips").is_dir() \
                    else []:
                name = partial.relative_to(home).as_posix()
                try:
                    size = partial.stat().st_size
                except FileNotFoundError:
                    continue
                if started is None:
                    started = now
                    cpu0 = {"replicator": cpu_s(replicator.pid), "recorder": cpu_s(recorder.pid)}
                    print("recording; measuring", file=sys.stderr)
                history.setdefault(name, []).append((now, size))
                copy = server.root / name
                if copy.exists() and started is not None:
                    held = copy.stat().st_size
                    first = next((t for t, s in history[name] if s >= held), now)
                    lags_s.append(now - first)
            for key, process in (("replicator", replicator), ("recorder", recorder)):
                peak[key] = max(peak[key], rss_bytes(process.pid))
            if started is not None and now - started >= args.seconds:
                break
            time.sleep(0.05)
        video_s = time.monotonic() - started
        cpu = {"replicator": cpu_s(replicator.pid) - cpu0["replicator"],
               "recorder": cpu_s(recorder.pid) - cpu0["recorder"]}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        server.stop()
    print("backlog catch-up", file=sys.stderr)
    backlogs = [catch_up(base / f"backlog-{mb}", doorbell, mb * 1_000_000)
                for mb in (max(1, args.backlog_mb // 10), args.backlog_mb)]
    result = {
        "benchmark": "replica",
        "camera": f"synthetic 1280x720 at {args.fps} fps, real time",
        "target": "OpenSSH sshd on 127.0.0.1 (SFTP, paramiko)",
        "poll_interval_s": args.poll_interval_s,
        "video_s": round(video_s, 1),
        "lag_samples": len(lags_s),
        "lag_s": {"median": round(statistics.median(lags_s), 3),
                  "p95": round(percentile(lags_s, 95), 3), "worst": round(max(lags_s), 3)},
        "replicator": {"cpu_s_per_video_s": round(cpu["replicator"] / video_s, 4),
                       "peak_rss_bytes": peak["replicator"]},
        "baseline_recorder": {"cpu_s_per_video_s": round(cpu["recorder"] / video_s, 4),
                              "peak_rss_bytes": peak["recorder"]},
        "replicator_cpu_vs_recorder": round(cpu["replicator"] / max(cpu["recorder"], 1e-9), 4),
        "backlog_baseline": backlogs[0],
        "backlog": backlogs[1],
        "backlog_rss_growth_bytes": backlogs[1]["peak_rss_bytes"] - backlogs[0]["peak_rss_bytes"],
    }
    shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))


CLIP_BYTES = 10_000_000


def catch_up(base: Path, doorbell: list[str], backlog_bytes: int) -> dict:
    """Seconds and peak RSS of `doorbell replicate` copying `backlog_bytes` of sealed clips."""
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
    home = base / "home"
    env.update(DOORBELL_HOME=str(home), DOORBELL_RUNTIME_DIR=str(base / "run"),
               PYTHONDONTWRITEBYTECODE="1")
    server = SftpServer(base / "sshd").start()
    try:
        passphrase = base / "passphrase.txt"
        passphrase.write_text(PASSPHRASE + "\n")
        subprocess.run([*doorbell, "init", "--passphrase-file", str(passphrase), "--x25519",
                        "--work-factor", "15"], env=env, cwd=PROJECT, check=True,
                       capture_output=True)
        now_us = time.time_ns() // 1000
        block = os.urandom(1_000_000)
        with ClipIndex(home / "index.sqlite3") as index:
            store = ClipStore(home / "clips", index, read_recipients(home / "recipients.txt"))
            count = max(1, backlog_bytes // CLIP_BYTES)
            for n in range(count):  # an hour of 10 MB clips a minute apart, ending now
                writer = store.begin_clip(now_us - (count - n) * 60_000_000)
                for _ in range(CLIP_BYTES // len(block)):
                    writer.video.write(block)
                writer.finish(b"jpeg", {})
        device_bytes = sum(p.stat().st_size for p in (home / "clips").rglob("*") if p.is_file())
        subprocess.run([*doorbell, "replicate", "--pair", server.url], env=env, cwd=PROJECT,
                       check=True, capture_output=True)
        started = time.monotonic()
        replicator = subprocess.Popen(
            [*doorbell, "replicate", "--identity-file", str(server.client_key), "--state-dir",
             str(base / "state")], env=env, cwd=PROJECT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        peak_rss = 0
        try:
            while True:
                if replicator.poll() is not None:
                    sys.exit("the replicator ended during the backlog")
                peak_rss = max(peak_rss, rss_bytes(replicator.pid))
                copied = sum(p.stat().st_size for p in (server.root / "clips").rglob("*")
                             if p.is_file()) if (server.root / "clips").is_dir() else 0
                if copied >= device_bytes:
                    break
                time.sleep(0.05)
            seconds = time.monotonic() - started
        finally:
            replicator.terminate()
            replicator.wait(timeout=30)
    finally:
        server.stop()
    return {"bytes": device_bytes, "catch_up_s": round(seconds, 2),
            "mb_per_s": round(device_bytes / 1e6 / seconds, 1), "peak_rss_bytes": peak_rss}


if __name__ == "__main__":
    main()
