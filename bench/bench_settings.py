"""Live settings benchmark: what following the settings costs the recorder per frame at 720p.

    .venv/bin/python bench/bench_settings.py [--frames 1050] [--chunk 15] [--dir DIR]

Prints one JSON object on stdout (progress goes to stderr). Three configurations of the real
camera.recorder.Recorder, each as `doorbell record` builds it (H.264, encrypted clips in a
store, live.jpg and recorder.json in a runtime directory on /dev/shm), fed the same frames:

1. baseline: no SettingsWatcher, no MotionTuner (`check_settings()` returns at once);
2. watcher: a camera.reload.SettingsWatcher on the home (config.toml and recipients.txt
   stat'ed once a second; nothing changes, so nothing is read again);
3. watcher_and_tuner: the same plus a camera.tuning.MotionTuner with a motion-tuning.json of
   trial values in the home, so the second detector runs on every frame and the mask PNG and
   overlay JSON are written at the live frame rate. As the viewer's tuner page does, the file
   is rewritten every 5 s with `expires_at` 15 s ahead (outside the timed part: that is the
   viewer's cost; the recorder re-reading it is timed). The tuner needs the watcher: its poll
   runs from `check_settings()`.

Per frame, what the frame loop (camera/loop.py) does is timed: the SoftwarePipeline's next
frame (privacy mask, H.264 encode, pre-roll ring), `recorder.process(frame)`, then
`recorder.check_settings()`. The input is the synthetic doorstep scene (a visitor walking up in
the rain: motion in every frame, so the recorder records and the trial detector has boxes to
find), 40 distinct 1280x720 frames played forwards and backwards, rendered before anything is
timed; every configuration gets the same frame indices and timestamps.

The once-a-second and live-rate work follows the frames' timestamps, not the wall clock: the
watcher's clock, the tuner's clocks, the live frame's rate and the recorder's wall clock are
driven by a 15 fps frame clock, so the watcher polls every 15th frame and the overlay goes out
every 7.5th frame (live.fps 2) exactly as with a real camera, however fast the frames are
processed here. (recorder.json stays on the wall clock, once a second in every configuration;
the clip writer's fsync every 2 s too.)

Each configuration runs in its own child process (this script with --child), so its peak RSS
(ru_maxrss) is its own; the children render the frames the same way (the frames' SHA-256 is
compared) and wait for the parent, which hands the same chunk of frames (--chunk, 1 s of
video) to each in turn, in an order that rotates every round, so a busy moment on a shared
machine hurts every configuration alike. Only one child works at a time. The first 2 s of
frames warm each pipeline up untimed. Besides wall time per frame, each child's CPU time over the
timed frames (getrusage, all its threads: the encoder's too) per frame is reported: on a busy
machine it is the steadier of the two, wall time being what the frame loop waits.

No timed assertions: this reports. The homes (recipients.txt with freshly generated X25519
keys, no identities) go to a temporary directory on the project's file system (or --dir), the
runtime directories to /dev/shm; both are deleted at the end.
"""

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from scratch import pick_directory  # noqa: E402 (bench/ is on sys.path)

WIDTH, HEIGHT, FPS = 1280, 720, 15
DISTINCT_FRAMES = 40
WARMUP_FRAMES = 2 * FPS
CONFIGS = ("baseline", "watcher", "watcher_and_tuner")
TRIAL = {"sensitivity": 0.7, "min_area": 0.002, "trigger_frames": 2}
TRIAL_LIFETIME_S = 15.0  # web/views/settings.py: the tuner page's trial lasts 15 s ...
TRIAL_REFRESH_S = 5.0  # ... and web/static/settings.js sends it again every 5 s
CONFIG_TOML = f"""\
[camera]
width = {WIDTH}
height = {HEIGHT}
fps = {FPS}

[retention]
min_free_bytes = 0
"""


def log(message: str) -> None:
    print(f"[bench_settings] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the parent: homes, children, rounds, summary -----------------------------------------------


def make_home(root: Path, recipients: list) -> None:
    """A recorder's home as `doorbell init` leaves it, minus the private keys (not needed)."""
    from doorbell.storage.home import Home
    from doorbell.storage.recipients import HouseholdKey, write_household_keys

    root.mkdir(parents=True)
    home = Home(root)
    write_household_keys(home.recipients_file, [HouseholdKey("bench", recipients[0]),
                                                HouseholdKey("recovery", recipients[1])])
    home.config_file.write_text(CONFIG_TOML)


def runtime_base(work: Path) -> Path:
    """Where the live files go: a tmpfs, as in production (else beside the homes)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="doorbell-bench-settings-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="run-", dir=work))


class Child:
    """One configuration's process; JSON lines both ways."""

    def __init__(self, name: str, home: Path, run_dir: Path):
        self.name = name
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
        env["DOORBELL_RUNTIME_DIR"] = str(run_dir)
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", name, "--home", str(home)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=PROJECT, text=True,
        )
        self.times_ms: list[float] = []

    def send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"the {self.name} child stopped (exit code {code})")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def summary(times_ms: list[float]) -> dict:
    total_s = sum(times_ms) / 1000
    return {
        "frames": len(times_ms),
        "median_ms": round(statistics.median(times_ms), 3),
        "p95_ms": round(statistics.quantiles(times_ms, n=100, method="inclusive")[94], 3),
        "mean_ms": round(statistics.fmean(times_ms), 3),
        "max_ms": round(max(times_ms), 3),
        "fps": round(len(times_ms) / total_s, 1),
        "x_realtime": round(len(times_ms) / total_s / FPS, 2),
    }


def ratios(numerator: dict, denominator: dict) -> dict:
    out = {key: round(numerator[f"{key}_ms"] / denominator[f"{key}_ms"], 3)
           for key in ("median", "p95", "mean")}
    out["cpu"] = round(numerator["cpu_ms_per_frame"] / denominator["cpu_ms_per_frame"], 3)
    out["extra_ms_per_frame_mean"] = round(numerator["mean_ms"] - denominator["mean_ms"], 3)
    out["extra_cpu_ms_per_frame"] = round(
        numerator["cpu_ms_per_frame"] - denominator["cpu_ms_per_frame"], 3)
    return out


def parent(args) -> None:
    from doorbell.storage.age import X25519Identity

    load_1m = os.getloadavg()[0]
    started = time.perf_counter()
    work = pick_directory(args.dir, "doorbell-bench-settings-")
    run_base = runtime_base(work)
    children: dict[str, Child] = {}
    try:
        recipients = [X25519Identity.generate().recipient, X25519Identity.generate().recipient]
        for name in CONFIGS:
            make_home(work / name, recipients)
            run_dir = run_base / name
            run_dir.mkdir(mode=0o700)
            children[name] = Child(name, work / name, run_dir)
        log(f"rendering {DISTINCT_FRAMES} frames at {WIDTH}x{HEIGHT} and warming up "
            f"{len(CONFIGS)} recorders ({WARMUP_FRAMES} frames each)")
        ready = {name: child.receive() for name, child in children.items()}
        hashes = {r["frames_sha256"] for r in ready.values()}
        if len(hashes) != 1:
            raise RuntimeError(f"the children rendered different frames: {sorted(hashes)}")

        timed_from = WARMUP_FRAMES
        rounds = [(start, min(args.chunk, timed_from + args.frames - start))
                  for start in range(timed_from, timed_from + args.frames, args.chunk)]
        order = list(CONFIGS)
        for number, (start, count) in enumerate(rounds, 1):
            spent = {}
            for name in order:
                children[name].send({"op": "run", "start": start, "count": count})
                reply = children[name].receive()
                children[name].times_ms += reply["ms"]
                spent[name] = statistics.fmean(reply["ms"])
            if number % max(1, len(rounds) // 10) == 0 or number == len(rounds):
                log(f"round {number}/{len(rounds)}: frames {start}-{start + count - 1}, mean ms "
                    + ", ".join(f"{n} {spent[n]:.1f}" for n in CONFIGS))
            order = order[1:] + order[:1]  # who goes first rotates

        finals = {}
        for name, child in children.items():
            child.send({"op": "finish"})
            finals[name] = child.receive()
            child.process.wait(timeout=60)

        results = {}
        for name in CONFIGS:
            frames = len(children[name].times_ms)
            final = finals[name]
            results[name] = {
                **summary(children[name].times_ms),
                "cpu_ms_per_frame": round(final["cpu_s"] * 1000 / frames, 3),
                "peak_rss_mb": round(final["peak_rss_mb"], 1),
                "peak_rss_growth_while_timed_mb": round(
                    final["peak_rss_mb"] - ready[name]["peak_rss_mb"], 1),
                **{k: v for k, v in final.items() if k not in ("cpu_s", "peak_rss_mb")},
            }
        base, watcher, tuner = (results[name] for name in CONFIGS)
        rss_base = base["peak_rss_mb"]
        result = {
            "benchmark": "live settings: recorder per-frame cost with the settings watcher and "
                         "the motion tuner, against the same recorder without them, same frames, "
                         "same run",
            "input": {
                "scene": "synthetic doorstep scene, a visitor in the rain, 40 distinct BGR "
                         "frames played forwards and backwards",
                "width": WIDTH, "height": HEIGHT, "frame_clock_fps": FPS,
                "timed_frames_per_config": args.frames, "warmup_frames": WARMUP_FRAMES,
                "chunk_frames": args.chunk, "rounds": len(rounds),
                "trial_motion_values": TRIAL,
                "runtime_dir_on": "tmpfs (/dev/shm)" if str(run_base).startswith("/dev/shm")
                else "the project's file system",
            },
            "timed": "the software pipeline's next frame (mask, H.264 encode, pre-roll ring) + "
                     "recorder.process(frame) + recorder.check_settings(), per frame",
            "results": results,
            "ratio_watcher_vs_baseline": ratios(watcher, base),
            "ratio_watcher_and_tuner_vs_baseline": ratios(tuner, base),
            "ratio_watcher_and_tuner_vs_watcher": ratios(tuner, watcher),
            "peak_rss_delta_vs_baseline_mb": {
                "watcher": round(watcher["peak_rss_mb"] - rss_base, 1),
                "watcher_and_tuner": round(tuner["peak_rss_mb"] - rss_base, 1),
            },
            "machine": {
                "cpus": os.cpu_count(), "python": platform.python_version(),
                "opencv": ready["baseline"]["opencv"], "av": ready["baseline"]["av"],
                "load_average_1m_at_start": round(load_1m, 2),
            },
            "runtime_s": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(result, indent=2))
    finally:
        for child in children.values():
            child.close()
        shutil.rmtree(run_base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


# -- a child: one configuration -----------------------------------------------------------------


def scene_images():
    """A visitor walking in from the side in the rain: 40 frames from the middle of it, then
    back again, so nothing jumps when the sequence repeats (as bench_motion.py)."""
    from doorbell.camera.synthetic import ScriptedEvent, SyntheticScene

    script = [ScriptedEvent("rain", 0.0, 20.0), ScriptedEvent("visit", 1.0, 16.0, "side")]
    scene = SyntheticScene(WIDTH, HEIGHT, fps=FPS, seed=1, script=script, duration_s=20)
    start = round(2.5 * FPS)
    images = [scene.render(i) for i in range(start, start + DISTINCT_FRAMES)]
    return images + images[-2:0:-1]


class FrameClock:
    """Seconds of video: the timestamp of the frame being processed."""

    def __init__(self):
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def child(name: str, home_root: Path) -> None:
    import av
    import cv2

    from doorbell.camera.frames import Frame
    from doorbell.camera.live import LiveFramePublisher, StatusPublisher, prepare_runtime_dir
    from doorbell.camera.recorder import Recorder
    from doorbell.camera.reload import SettingsWatcher, file_stamp
    from doorbell.camera.software import SoftwarePipeline
    from doorbell.camera.tuning import MotionTuner
    from doorbell.config import load_settings
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.durable import write_atomically
    from doorbell.storage.home import Home
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients

    def reply(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    images = scene_images()
    digest = hashlib.sha256()
    for image in images:
        digest.update(image.tobytes())

    home = Home(home_root)
    prepare_runtime_dir(home.run_dir)
    clock = FrameClock()
    wall0_s = time.time()

    def wall_s() -> float:
        return wall0_s + clock.now_s

    class FrameTimedLive(LiveFramePublisher):
        """The live frame at live.fps of video time (the recorder passes time.monotonic())."""

        def due(self, now_s: float) -> bool:
            return super().due(clock())

        def publish(self, image, now_s: float) -> bool:
            return super().publish(image, clock())

    class HandedFrames:
        """A FrameSource yielding the frame `step` hands it, one per pull."""

        fps = FPS
        frame: Frame | None = None

        def frames(self):
            while True:
                yield self.frame

        def close(self) -> None:
            pass

    class CountingWatcher(SettingsWatcher):
        polls = 0

        def poll(self):
            reload = super().poll()
            self.polls += reload is not None
            return reload

    settings = load_settings(home.root)
    watcher = tuner = None
    if name in ("watcher", "watcher_and_tuner"):
        watcher = CountingWatcher(home, clock=clock)
        settings = watcher.settings
    tuning = name == "watcher_and_tuner"
    if tuning:
        tuner = MotionTuner(home, wall_clock_s=wall_s, clock_s=clock)

    def write_trial() -> None:  # what the viewer's POST /settings/motion/trial writes
        body = {"motion": TRIAL, "expires_at": wall_s() + TRIAL_LIFETIME_S, "member": "bench"}
        write_atomically(home.motion_tuning_file, json.dumps(body).encode(), mode=0o640)

    refresh_every = round(TRIAL_REFRESH_S * FPS)
    counts = {"tuner_active_frames": 0, "overlay_writes": 0, "trial_file_writes": 0}
    overlay_stamp = None

    with ClipIndex(home.index_file) as index:
        store = ClipStore(home.clips_dir, index, read_recipients(home.recipients_file))
        recorder = Recorder(
            settings, store, None, None,
            FrameTimedLive(home.live_frame_file, settings.live.fps, settings.live.width,
                           settings.live.jpeg_quality),
            StatusPublisher(home.recorder_status_file),
            wall_clock_us=lambda: round(wall_s() * 1_000_000),
            watcher=watcher, tuner=tuner,
        )
        source = HandedFrames()
        recorder.attach(SoftwarePipeline(source, settings, "the bench's frames"))
        pipeline_frames = recorder.pipeline.frames()

        def step(index: int) -> float:
            nonlocal overlay_stamp
            clock.now_s = index / FPS
            source.frame = Frame(images[index % len(images)], round(index * 1_000_000 / FPS))
            if tuning and index % refresh_every == 0:
                write_trial()
                counts["trial_file_writes"] += 1
            started = time.perf_counter()
            frame = next(pipeline_frames)  # masked and encoded by the software pipeline
            recorder.process(frame)
            recorder.check_settings()
            elapsed_ms = (time.perf_counter() - started) * 1000
            if tuning:
                counts["tuner_active_frames"] += tuner.active
                stamp = file_stamp(home.motion_overlay_file)
                if stamp is not None and stamp != overlay_stamp:
                    counts["overlay_writes"] += 1
                overlay_stamp = stamp
            return elapsed_ms

        for index in range(WARMUP_FRAMES):
            step(index)
        counts = dict.fromkeys(counts, 0)
        polls_before = watcher.polls if watcher else 0
        clips_before = recorder.stats.clips
        reply({"frames_sha256": digest.hexdigest(), "peak_rss_mb": peak_rss_mb(),
               "opencv": cv2.__version__, "av": av.__version__})
        cpu0 = cpu_seconds()
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] != "run":
                break
            start, count = command["start"], command["count"]
            reply({"ms": [round(step(i), 4) for i in range(start, start + count)]})
        cpu_s = cpu_seconds() - cpu0
        final = {"cpu_s": cpu_s, "peak_rss_mb": peak_rss_mb(),
                 "clips_sealed_while_timed": recorder.stats.clips - clips_before}
        if watcher is not None:
            final["watcher_polls"] = watcher.polls - polls_before
        if tuning:
            final.update(counts)
        recorder.detach()
        if tuner is not None:
            tuner.end()
    reply(final)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1050,
                        help="timed frames per configuration (default 1050: 70 s of video)")
    parser.add_argument("--chunk", type=int, default=FPS,
                        help="frames per configuration per turn (default 15: 1 s of video)")
    parser.add_argument("--dir", help="where to put the temporary homes (default: a temp dir "
                        "on the project's file system)")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.home))
        return
    if args.frames < 1 or args.chunk < 1:
        parser.error("--frames and --chunk must be positive")
    parent(args)


if __name__ == "__main__":
    main()
