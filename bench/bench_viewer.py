"""Viewer benchmarks; prints one JSON object on stdout (progress goes to stderr).

    .venv/bin/python bench/bench_viewer.py [--dir DIR] [--quick]

Everything runs against the real viewer (`doorbell serve`, gunicorn, one worker with threads)
on a free 127.0.0.1 port, over HTTP with a session unlocked through POST /login, in a temporary
home made by `doorbell init --work-factor 15`. No traffic leaves the loopback interface.

1. Range time to first byte against clip size: clips of 1 MiB, 100 MiB and 1 GiB (random
   payload) written through storage.clipwriter.ClipStore as the recorder writes them;
   `GET /clips/ID/video` with `Range: bytes=START-START+65535` at the start, middle and end, on a
   kept-alive connection, median of 15 after one warm-up. Time to first byte is request sent ->
   first body byte received; the whole 64 KiB is reported too. The files are in the page cache
   (just written); `cold_cache_middle` evicts the clip file from the page cache
   (posix_fadvise DONTNEED, that file only) before each of 5 requests. Target: flat, the 1 GiB
   clip within 2x of the 1 MiB clip.
2. Timeline page time (`GET /`, the HTML) with 1,000 / 10,000 / 100,000 clips in the index.
   Rows are inserted with storage.index.ClipIndex.put (inside one transaction per batch). The
   newest day holds 200 real clips (video, encrypted thumbnail and metadata: the page decrypts
   the metadata of the clips it shows, 200 per page, for the selected day only); the other rows
   are index-only. Two layouts: `spread_200_per_day` (the rest on earlier days, 200 a day) and
   `one_day` (all of them on the newest day, so the day's query and activity strip see every
   row). `cold` is a fresh session per load (the session caches decrypted metadata), `warm` the
   same session again; median of 5 each. No target is set: look at how it grows.
3. Peak RSS of the viewer (VmHWM of the gunicorn master and worker from /proc/PID/status) in a
   fresh viewer, with one unlocked session (login, timeline page) and one live viewer reading
   /live/stream for 10 s while the recorder (synthetic camera, 640x360) publishes live frames.
   Measured for a member at scrypt 2^15 and for one at the work factor `doorbell init` calibrates
   here (scrypt's memory, 128 * 8 * 2^N bytes, is spent inside the viewer while unlocking).
   Targets (issue 14): master and worker under 60 MB once unlocked (VmRSS), and the worker's
   peak (VmHWM) at most scrypt's memory plus 40 MB.

Files go to a temporary directory on the project's file system (or --dir), removed at the end;
about 1.2 GB is needed for a moment. No timed assertions: this reports; bench/README.md has the
targets.
"""

import argparse
import http.client
import http.cookies
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from scratch import pick_directory  # noqa: E402 (bench/ is on sys.path)

from doorbell.storage.clipid import clip_paths, new_clip_id  # noqa: E402
from doorbell.storage.clipwriter import ClipStore  # noqa: E402
from doorbell.storage.home import Home  # noqa: E402
from doorbell.storage.index import ClipIndex, IndexedClip  # noqa: E402
from doorbell.storage.recipients import read_recipients  # noqa: E402
from doorbell.web.stream_budget import WORKER_THREADS  # noqa: E402

MIB = 1024 * 1024
RANGE_BYTES = 64 * 1024
MEMBER = "bench"
PASSPHRASE = "bench-viewer-passphrase-not-a-secret-7"  # noqa: S105 - a throwaway test key
SESSION_COOKIE = "__Host-doorbell-session"
REAL_CLIPS_ON_NEWEST_DAY = 200  # one timeline page
STEADY_TARGET_MB = 60.0  # each process, VmRSS, once unlocked and streaming
UNLOCK_EXTRA_TARGET_MB = 40.0  # the worker's VmHWM above scrypt's own memory
RANGE_RATIO_TARGET = 2.0


def log(message: str) -> None:
    print(f"[bench_viewer] {message}", file=sys.stderr, flush=True)




def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
    env.update(extra)
    return env


def doorbell(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "doorbell", *args], cwd=PROJECT,
                            env=env or clean_env(), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"doorbell {args[0]} failed: {result.stderr.strip()}")
    return result


def init_home(root: Path, work_factor: int | None) -> Home:
    secret = root.parent / f"{root.name}-passphrase.txt"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    args = ["init", "--home", str(root), "--user", MEMBER, "--passphrase-file", str(secret)]
    if work_factor is not None:
        args += ["--work-factor", str(work_factor)]
    doorbell(*args)
    secret.unlink()
    return Home(root)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vm_status(pid: int) -> dict[str, float]:
    """VmHWM and VmRSS of a process, in MB (10^6 bytes)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = round(int(rest.split()[0]) * 1024 / 1e6, 1)
    return values


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class Viewer:
    """`doorbell serve --bind 127.0.0.1:PORT` as a subprocess, and an HTTP client for it."""

    def __init__(self, home: Home, runtime_dir: Path, log_path: Path):
        self.home = home
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(DOORBELL_RUNTIME_DIR=str(runtime_dir))
        with log_path.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "doorbell", "serve", "--home", str(home.root), "--bind",
                 f"127.0.0.1:{self.port}"], cwd=PROJECT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the viewer exited: {log_path.read_text()[-2000:]}")
            try:
                status, _, _ = self.request("GET", "/login", connection=self.connect())
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the viewer did not answer within 30 s")
            time.sleep(0.2)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method: str, path: str, headers: dict | None = None,
                body: bytes | None = None, connection=None) -> tuple[int, dict, bytes]:
        connection = connection or self.connect()
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, response.headers, data

    def login(self) -> str:
        """POST /login as a browser would; returns the Cookie header value of the session."""
        body = urllib.parse.urlencode({"member": MEMBER, "passphrase": PASSPHRASE}).encode()
        status, headers, data = self.request(
            "POST", "/login", body=body,
            headers={"Origin": self.origin, "Content-Type": "application/x-www-form-urlencoded"})
        if status != 303:
            raise RuntimeError(f"login failed: {status} {data[:300]!r}")
        cookie = http.cookies.SimpleCookie()
        for value in headers.get_all("Set-Cookie") or []:
            cookie.load(value)
        return f"{SESSION_COOKIE}={cookie[SESSION_COOKIE].value}"

    def mapped_libraries(self) -> list[str]:
        """Which big native libraries are loaded into the viewer (from /proc/PID/maps)."""
        maps = Path(f"/proc/{self.process.pid}/maps").read_text()
        marks = {"cv2": "/cv2/", "av (FFmpeg)": "/av/", "numpy": "/numpy/"}
        return sorted(name for name, mark in marks.items() if mark in maps)

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def memory(self) -> dict:
        workers = self.worker_pids()
        return {
            "master": vm_status(self.process.pid),
            "workers": [vm_status(pid) for pid in workers],
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------------------------
# 1. Range time to first byte


def write_random_clip(home: Home, start_us: int, size: int) -> str:
    pattern = memoryview(os.urandom(8 * MIB))
    with ClipIndex(home.index_file) as index:
        store = ClipStore(home.clips_dir, index, read_recipients(home.recipients_file))
        writer = store.begin_clip(start_us)
        written = 0
        while written < size:
            take = min(size - written, len(pattern))
            for offset in range(0, take, RANGE_BYTES):
                writer.video.write(pattern[offset : min(offset + RANGE_BYTES, take)])
            written += take
        clip = writer.finish(None, {"trigger": "motion", "duration_s": 10.0,
                                    "camera": "bench"})
    return clip.id


class KeptAlive:
    """One connection reused like a browser's, reopened if the server closed it."""

    def __init__(self, viewer: Viewer):
        self.viewer = viewer
        self.connection = viewer.connect()

    def timed_range(self, path: str, cookie: str, start: int, length: int) -> tuple[float, float]:
        headers = {"Cookie": cookie, "Range": f"bytes={start}-{start + length - 1}"}
        for attempt in (1, 2):
            try:
                started = time.perf_counter()
                self.connection.request("GET", path, headers=headers)
                response = self.connection.getresponse()
                first = response.read(1)
                first_byte_s = time.perf_counter() - started
                rest = response.read()
                total_s = time.perf_counter() - started
                break
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.connection.close()
                self.connection = self.viewer.connect()
                if attempt == 2:
                    raise
        if response.status != 206 or len(first) + len(rest) != length:
            raise RuntimeError(f"GET {path} {headers['Range']}: {response.status}, "
                               f"{len(first) + len(rest)} bytes")
        return first_byte_s, total_s

    def close(self) -> None:
        self.connection.close()


def evict_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def bench_range(home: Home, viewer: Viewer, cookie: str, sizes: dict[str, int],
                repeats: int) -> dict:
    """Interleaved (every size and position once per round) so load on the machine hits all."""
    base_us = int((time.time() - 3 * 86400) * 1e6)  # three days ago: not the timeline's day
    clips = {}
    for n, (label, size) in enumerate(sizes.items()):
        started = time.perf_counter()
        clips[label] = write_random_clip(home, base_us + n * 60_000_000, size)
        log(f"range: wrote a {label} clip in {time.perf_counter() - started:.1f} s")
    cells = [(label, where, position)
             for label, size in sizes.items()
             for where, position in (("start", 0), ("middle", size // 2),
                                     ("end", size - RANGE_BYTES))]
    client = KeptAlive(viewer)
    times: dict = {(label, where): [] for label, where, _ in cells}
    for round_ in range(repeats + 1):
        for label, where, position in cells:
            measured = client.timed_range(f"/clips/{clips[label]}/video", cookie, position,
                                          RANGE_BYTES)
            if round_:  # round 0 warms up
                times[label, where].append(measured)
    for _ in range(5):
        for label, size in sizes.items():
            evict_from_page_cache(clip_paths(home.clips_dir, clips[label])["video"])
            times[label, "cold_cache_middle"] = [*times.get((label, "cold_cache_middle"), []),
                                                 client.timed_range(
                                                     f"/clips/{clips[label]}/video", cookie,
                                                     size // 2, RANGE_BYTES)]
    client.close()
    results: dict = {"range_bytes": RANGE_BYTES, "repeats": repeats, "cold_cache_repeats": 5,
                     "sizes": {}}
    for (label, where), measured in times.items():
        first_bytes = [t[0] for t in measured]
        results["sizes"].setdefault(label, {})[where] = {
            "first_byte_ms_median": ms(statistics.median(first_bytes)),
            "range_ms_median": ms(statistics.median(t[1] for t in measured)),
            "first_byte_ms_min": ms(min(first_bytes)),
            "first_byte_ms_max": ms(max(first_bytes)),
        }
    for label, per_size in results["sizes"].items():
        log(f"range: {label}: " + ", ".join(
            f"{w} {v['first_byte_ms_median']} ms" for w, v in per_size.items()))
    with ClipIndex(home.index_file) as index:  # free the disk
        store = ClipStore(home.clips_dir, index, read_recipients(home.recipients_file))
        for clip_id in clips.values():
            store.delete(clip_id)
    small, large = results["sizes"][next(iter(sizes))], results["sizes"][list(sizes)[-1]]
    ratios = {where: round(large[where]["first_byte_ms_median"]
                           / small[where]["first_byte_ms_median"], 3) for where in small}
    results["first_byte_ratio_largest_vs_1MiB"] = ratios
    results["ratio_worst"] = max(ratios.values())
    results["target_ratio_at_most"] = RANGE_RATIO_TARGET
    results["meets_target"] = results["ratio_worst"] <= RANGE_RATIO_TARGET
    return results


# ---------------------------------------------------------------------------------------------
# 2. Timeline page time


def local_midnight_us(days_ago: int) -> int:
    day = (datetime.now().astimezone() - timedelta(days=days_ago)).replace(
        hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    return int(day.astimezone().timestamp() * 1_000_000)


def small_jpeg() -> bytes:
    import cv2
    import numpy as np

    image = np.zeros((135, 240, 3), np.uint8)
    image[:, :, 1] = np.linspace(40, 200, 240, dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    if not ok:
        raise RuntimeError("cv2 could not encode a JPEG")
    return data.tobytes()


def write_real_clips(home: Home, newest_day_us: int) -> None:
    """The newest day's page: 200 clips with video, thumbnail and metadata, 12:00 to 22:00."""
    thumbnail = small_jpeg()
    with ClipIndex(home.index_file) as index:
        store = ClipStore(home.clips_dir, index, read_recipients(home.recipients_file))
        for i in range(REAL_CLIPS_ON_NEWEST_DAY):
            start_us = newest_day_us + 12 * 3_600_000_000 + i * 180_000_000
            writer = store.begin_clip(start_us, fsync_interval_s=60)
            writer.video.write(os.urandom(4096))
            writer.finish(thumbnail, {
                "trigger": "doorbell" if i % 7 == 0 else "motion", "duration_s": 12.0 + i % 9,
                "start_us": start_us, "camera": "Front door",
                "motion": {"frames": 120, "peak_area": 0.04},
            })


def fill_index(home: Home, count: int, layout: str, newest_day_us: int) -> None:
    """Replace the index-only rows with `count` of them, laid out as `layout` says."""
    with ClipIndex(home.index_file) as index:
        real = {c.id for c in index.clips(since_us=newest_day_us + 12 * 3_600_000_000)}
        db = index._db  # one transaction for the batch: ClipIndex.put alone commits every row
        db.execute("BEGIN")
        for clip in index.clips():
            if clip.id not in real:
                index.remove(clip.id)
        for i in range(count):
            if layout == "one_day":  # 00:00 to 12:00 of the newest day
                start_us = newest_day_us + (i * 43_200 // max(count, 1)) * 1_000_000
            else:  # 200 a day, on the days before the newest
                day, slot = divmod(i, REAL_CLIPS_ON_NEWEST_DAY)
                start_us = newest_day_us - (day + 1) * 86_400_000_000 + slot * 400_000_000
            start_us -= start_us % 1_000_000
            index.put(IndexedClip(new_clip_id(start_us), start_us, "complete", 1_500_000))
        db.execute("COMMIT")


def time_page(viewer: Viewer, cookie: str) -> float:
    started = time.perf_counter()
    status, _, body = viewer.request("GET", "/", headers={"Cookie": cookie})
    elapsed = time.perf_counter() - started
    if status != 200 or b"class=\"events\"" not in body:
        raise RuntimeError(f"timeline answered {status}")
    return elapsed


def bench_timeline(home: Home, viewer: Viewer, counts: list[int], repeats: int) -> dict:
    newest_day_us = local_midnight_us(1)  # yesterday, local time
    started = time.perf_counter()
    write_real_clips(home, newest_day_us)
    log(f"timeline: wrote {REAL_CLIPS_ON_NEWEST_DAY} real clips in "
        f"{time.perf_counter() - started:.1f} s")
    results: dict = {"repeats": repeats, "clips_with_files_on_page": REAL_CLIPS_ON_NEWEST_DAY,
                     "layouts": {}}
    for layout in ("spread_200_per_day", "one_day"):
        per_layout = {}
        for total in counts:
            fill_index(home, total - REAL_CLIPS_ON_NEWEST_DAY, layout, newest_day_us)
            with ClipIndex(home.index_file) as index:
                in_index, days = index.count(), len(index.day_counts())
            cold = []
            for _ in range(repeats):
                cookie = viewer.login()  # a fresh session: nothing decrypted yet
                cold.append(time_page(viewer, cookie))
            warm = [time_page(viewer, cookie) for _ in range(repeats)]
            per_layout[str(total)] = {
                "clips_in_index": in_index,
                "days": days,
                "cold_ms_median": ms(statistics.median(cold)),
                "warm_ms_median": ms(statistics.median(warm)),
                "cold_ms_all": [ms(t) for t in cold],
            }
            log(f"timeline: {layout} {total}: cold {per_layout[str(total)]['cold_ms_median']} "
                f"ms, warm {per_layout[str(total)]['warm_ms_median']} ms")
        results["layouts"][layout] = per_layout
    return results


# ---------------------------------------------------------------------------------------------
# 3. Peak RSS with one unlocked session and one live viewer


def read_live_stream(viewer: Viewer, cookie: str, seconds: float) -> dict:
    connection = viewer.connect()
    connection.request("GET", "/live/stream", headers={"Cookie": cookie})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"/live/stream answered {response.status}")
    received, frames = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        block = response.read1(65536)
        if not block:
            break
        received += len(block)
        frames += block.count(b"Content-Type: image/jpeg")
    connection.close()
    return {"seconds": seconds, "bytes_received": received, "frames_received": frames}


def bench_rss(directory: Path, work_factor: int | None, live_s: float) -> dict:
    label = f"wf{work_factor}" if work_factor else "calibrated"
    home = init_home(directory / f"rss-{label}", work_factor)
    (home.root / "config.toml").write_text("[camera]\nwidth = 640\nheight = 360\n")
    identity_file = next(home.identities_dir.glob("*.age"))
    scrypt_n = identity_work_factor(identity_file)
    runtime_dir = directory / f"run-{label}"
    runtime_dir.mkdir(mode=0o700)
    env = clean_env(DOORBELL_RUNTIME_DIR=str(runtime_dir))
    with (directory / f"record-{label}.log").open("ab") as output:
        recorder = subprocess.Popen(
            [sys.executable, "-m", "doorbell", "record", "--home", str(home.root), "--source",
             "synthetic"], cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT)
    viewer = Viewer(home, runtime_dir, directory / f"serve-{label}.log")
    try:
        before = viewer.memory()
        deadline = time.monotonic() + 30
        while not home_live_frame(runtime_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        started = time.perf_counter()
        cookie = viewer.login()
        unlock_s = time.perf_counter() - started
        status, _, _ = viewer.request("GET", "/", headers={"Cookie": cookie})
        if status != 200:
            raise RuntimeError(f"timeline answered {status}")
        streamed = read_live_stream(viewer, cookie, live_s)
        after = viewer.memory()
        libraries = viewer.mapped_libraries()
    finally:
        viewer.stop()
        recorder.send_signal(signal.SIGTERM)
        try:
            recorder.wait(timeout=15)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()
    worker_peak = max((w["VmHWM"] for w in after["workers"]), default=0.0)
    peak = max(worker_peak, after["master"]["VmHWM"])
    scrypt_mb = 128 * 8 * (1 << scrypt_n) / 1e6 if scrypt_n else 0.0
    steady = max([after["master"]["VmRSS"], *(w["VmRSS"] for w in after["workers"])])
    return {
        "scrypt_work_factor": scrypt_n,
        "scrypt_memory_mib": 128 * 8 * (1 << scrypt_n) // MIB if scrypt_n else None,
        "unlock_s": round(unlock_s, 3),
        "live": streamed,
        "master_before_login_mb": before["master"],
        "workers_before_login_mb": before["workers"],
        "master_mb": after["master"],
        "workers_mb": after["workers"],
        "peak_vmhwm_mb": peak,
        "native_libraries_in_viewer": libraries,
        "steady_mb": steady,
        "unlock_peak_above_scrypt_mb": round(worker_peak - scrypt_mb, 1),
        "targets": {"steady_mb_under": STEADY_TARGET_MB,
                    "unlock_peak_above_scrypt_mb_at_most": UNLOCK_EXTRA_TARGET_MB},
        "meets_target": steady < STEADY_TARGET_MB
        and worker_peak - scrypt_mb <= UNLOCK_EXTRA_TARGET_MB,
    }


def import_peak_mb(modules: str) -> float:
    """VmHWM of a fresh interpreter after importing `modules` (what a process starts from)."""
    code = (f"import {modules}\n"
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=clean_env(),
                            capture_output=True, text=True, timeout=120, check=True)
    return round(int(result.stdout.strip()) * 1024 / 1e6, 1)


def home_live_frame(runtime_dir: Path) -> bool:
    return (runtime_dir / "live.jpg").exists()


def identity_work_factor(identity_file: Path) -> int | None:
    """log2 N from the scrypt stanza of an identity file (`-> scrypt SALT N`)."""
    for line in identity_file.read_bytes().split(b"\n")[:8]:
        if line.startswith(b"-> scrypt "):
            return int(line.split()[3])
    return None


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="where to put the temporary homes (default: a temp dir "
                        "on the project's file system)")
    parser.add_argument("--quick", action="store_true",
                        help="small clips, fewer rows and repeats: checks the script itself")
    args = parser.parse_args()
    if args.quick:
        sizes = {"1MiB": MIB, "16MiB": 16 * MIB}
        counts, range_repeats, page_repeats, live_s = [1_000, 5_000], 5, 3, 3.0
    else:
        sizes = {"1MiB": MIB, "100MiB": 100 * MIB, "1GiB": 1024 * MIB}
        counts, range_repeats, page_repeats, live_s = [1_000, 10_000, 100_000], 15, 5, 10.0

    directory = pick_directory(args.dir, "doorbell-bench-viewer-")
    started = time.perf_counter()
    result: dict = {
        "benchmark": "viewer",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "quick": args.quick,
        "server": f"doorbell serve (gunicorn gthread, 1 worker, {WORKER_THREADS} threads) on "
                  "127.0.0.1",
    }
    try:
        home = init_home(directory / "home", 15)
        runtime_dir = directory / "run"
        runtime_dir.mkdir(mode=0o700)
        viewer = Viewer(home, runtime_dir, directory / "serve.log")
        try:
            cookie = viewer.login()
            result["range_time_to_first_byte"] = bench_range(home, viewer, cookie, sizes,
                                                             range_repeats)
            result["timeline_page"] = bench_timeline(home, viewer, counts, page_repeats)
            memory = viewer.memory()
            result["timeline_page"]["viewer_vmhwm_mb_after_range_and_timeline"] = {
                "master": memory["master"]["VmHWM"],
                "workers": [w["VmHWM"] for w in memory["workers"]],
            }
        finally:
            viewer.stop()
        log("peak RSS: scrypt 2^15")
        rss = {"wf15": bench_rss(directory, 15, live_s)}
        log("peak RSS: the work factor init calibrates here")
        rss["calibrated"] = bench_rss(directory, None, live_s)
        rss["import_peak_mb"] = {
            "doorbell.cli (what `doorbell serve` imports)": import_peak_mb("doorbell.cli"),
            "doorbell.web, gunicorn (the viewer alone)":
                import_peak_mb("doorbell.web, doorbell.web.server, gunicorn"),
        }
        rss["meets_target"] = all(v["meets_target"] for v in rss.values()
                                  if isinstance(v, dict) and "meets_target" in v)
        result["viewer_peak_rss"] = rss
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
