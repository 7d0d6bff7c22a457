"""Recorder pipeline benchmark; prints one JSON object on stdout (progress on stderr).

    .venv/bin/python bench/bench_pipeline.py [--seconds 30] [--keep]

1. Makes a 720p15 H.264 test file (~30 s of the synthetic doorstep scene, with a visit in it)
   with PyAV, in a temporary directory.
2. Baseline, same file, same run: decode only, with OpenCV (what any pipeline pays at least).
3. The whole pipeline in-process (file source -> privacy mask -> motion -> state machine ->
   H.264 -> fragmented MP4 -> age writer -> store), as fast as it goes: multiple of real time
   and CPU seconds per video second (resource.getrusage of this process, all threads).
4. Peak RSS of `doorbell record --source FILE --until-eof` as a subprocess (VmHWM of that
   child, /proc/PID/status, polled: wait4's ru_maxrss would count this process's memory, which
   a child has before it execs). Target: under 150 MB, so it fits a Pi Zero 2 W.
5. An IP camera: the same file served by GStreamer's RTSP server on loopback (real time,
   tests/camera/rtsp_server.py; skipped without it), with a 320x180 substream of the same scene
   on a second server. Each case is a child process streaming for `--rtsp-seconds`; CPU seconds
   per video second are read from /proc/PID/stat over that window only (start-up excluded),
   peak RSS is its VmHWM:
     rtsp_decode_only_opencv   OpenCV (FFmpeg) reading and decoding the main stream: the baseline
     rtsp_passthrough          `doorbell record --source rtsp://...`: the camera's H.264 recorded
     rtsp_main_and_substream   the same with camera.detect_source = the substream
     rtsp_re_encode_masked     the same as passthrough with a privacy mask (re-encoding)
   Target: passthrough <= 1.5x the decode-only CPU.

No timed assertions: this reports; bench/README.md has the targets. Everything lives in a temporary
directory that is deleted at the end (unless --keep).
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import av  # noqa: E402
import cv2  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 15
SUB_WIDTH, SUB_HEIGHT = 320, 180
PASSTHROUGH_CPU_TARGET = 1.5  # x the decode-only CPU
PASSPHRASE = "bench-passphrase-not-a-secret-9"  # noqa: S105 - a throwaway test key
RSS_TARGET_MB = 150


def log(message: str) -> None:
    print(f"[bench_pipeline] {message}", file=sys.stderr, flush=True)


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def make_test_file(path: Path, seconds: float, size: tuple[int, int] = (WIDTH, HEIGHT)) -> int:
    """The synthetic scene's first `seconds` (a visit at 8-24 s) as 720p15 H.264 MP4 (or at
    `size`: the substream), a keyframe a second and no B-frames, as IP cameras send."""
    from doorbell.camera.synthetic import SyntheticScene

    scene = SyntheticScene(*size, FPS, duration_s=seconds)
    frames = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20", "g": str(FPS), "bf": "0"}
        stream.codec_context.time_base = Fraction(1, FPS)
        for index, frame in enumerate(scene.frames()):
            planes = cv2.cvtColor(frame.image, cv2.COLOR_BGR2YUV_I420)
            video_frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            video_frame.pts = index
            video_frame.time_base = Fraction(1, FPS)
            for packet in stream.encode(video_frame):
                container.mux(packet)
            frames += 1
        for packet in stream.encode(None):
            container.mux(packet)
    return frames


def decode_only_baseline(path: Path, video_s: float) -> dict:
    capture = cv2.VideoCapture(str(path))
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    frames = 0
    while True:
        ok, _ = capture.read()
        if not ok:
            break
        frames += 1
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    capture.release()
    return {"frames": frames, "wall_s": round(wall, 3), "x_realtime": round(video_s / wall, 2),
            "cpu_s_per_video_s": round(cpu / video_s, 3)}


def init_home(root: Path, env: dict) -> None:
    passphrase = root.parent / "passphrase.txt"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    subprocess.run(
        [sys.executable, "-m", "doorbell", "init", "--home", str(root), "--passphrase-file",
         str(passphrase), "--work-factor", "15"],
        check=True, capture_output=True, env=env, cwd=PROJECT, stdin=subprocess.DEVNULL,
    )
    (root / "config.toml").write_text(
        f"[camera]\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = {FPS}\n\n"
        "[retention]\nmin_free_bytes = 0\n"
    )


def pipeline_in_process(home: Path, path: Path, video_s: float) -> dict:
    from doorbell.camera.filesource import VideoFileSource
    from doorbell.camera.live import LiveFramePublisher, StatusPublisher, prepare_runtime_dir
    from doorbell.camera.recorder import Recorder
    from doorbell.camera.software import SoftwarePipeline
    from doorbell.config import load_settings
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients

    settings = load_settings(home)
    run_dir = Path(os.environ["DOORBELL_RUNTIME_DIR"])
    prepare_runtime_dir(run_dir)
    with ClipIndex(home / "index.sqlite3") as index:
        store = ClipStore(home / "clips", index, read_recipients(home / "recipients.txt"))
        recorder = Recorder(
            settings, store, None, None,
            LiveFramePublisher(run_dir / "live.jpg", settings.live.fps, settings.live.width,
                               settings.live.jpeg_quality),
            StatusPublisher(run_dir / "recorder.json"),
        )
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        recorder.run(lambda in_force: SoftwarePipeline(
            VideoFileSource(path, loop=False, realtime=False), in_force, f"video file {path.name}"),
            threading.Event(), until_eof=True)
        wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
        clips = index.clips()
    return {
        "frames": recorder.stats.frames, "clips": len(clips),
        "clip_bytes": sum(c.size_bytes for c in clips),
        "wall_s": round(wall, 3), "x_realtime": round(video_s / wall, 2),
        "cpu_s_per_video_s": round(cpu / video_s, 3),
    }


def recorder_subprocess(home: Path, path: Path, env: dict, video_s: float) -> dict:
    wall0 = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "doorbell", "record", "--home", str(home), "--source", str(path),
         "--until-eof"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=PROJECT,
        stdin=subprocess.DEVNULL,
    )
    peak = PeakRss(process.pid)
    stderr_thread_output: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_thread_output.append(process.stderr.read()))
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    wall = time.perf_counter() - wall0
    peak_mb = peak.stop()
    result = {
        "exit_code": process.returncode, "wall_s": round(wall, 3),
        "x_realtime": round(video_s / wall, 2),
        "cpu_s_per_video_s": round((usage.ru_utime + usage.ru_stime) / video_s, 3),
        "peak_rss_mb": round(peak_mb, 1), "target_mb": RSS_TARGET_MB,
        "under_target": peak_mb < RSS_TARGET_MB,
    }
    if process.returncode != 0:
        result["stderr_tail"] = b"".join(stderr_thread_output).decode(errors="replace")[-600:]
    return result


# -- an IP camera over RTSP ------------------------------------------------------------------------

BASELINE_SCRIPT = """
import os, sys, time
os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
import cv2
capture = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
if not capture.isOpened():
    sys.exit("cannot open the stream")
print("camera open", file=sys.stderr, flush=True)
while capture.read()[0]:
    pass
"""


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size of process `pid` since it exec'd (None: it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class PeakRss:
    """Polls a child's VmHWM until it exits; `mb` is the last (highest) value read."""

    def __init__(self, pid: int, interval_s: float = 0.1):
        self.mb = 0.0
        self._pid, self._interval_s = pid, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            value = peak_rss_mb(self._pid)
            if value is None:
                return
            self.mb = max(self.mb, value)
            self._stop.wait(self._interval_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.mb, 1)


def process_cpu_s(pid: int) -> float:
    """CPU seconds used so far by process `pid`, all its threads (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def streaming_child(command: list[str], env: dict, seconds: float, log_path: Path) -> dict:
    """Run `command` until it says "camera open", let it settle 2 s, measure its CPU over
    `seconds` of real-time streaming, then SIGTERM it: CPU s per video second, peak RSS."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file, env=env,
                                   cwd=PROJECT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while b"camera open" not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            return {"error": log_path.read_bytes().decode(errors="replace")[-600:]}
        time.sleep(0.1)
    time.sleep(2.0)
    cpu0, wall0 = process_cpu_s(process.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = process_cpu_s(process.pid), time.monotonic()
    peak_mb = peak_rss_mb(process.pid)
    alive = process.poll() is None
    process.terminate()
    process.wait()
    result = {"seconds": round(wall1 - wall0, 2),
              "cpu_s_per_video_s": round((cpu1 - cpu0) / (wall1 - wall0), 3),
              "peak_rss_mb": round(peak_mb or 0.0, 1), "target_mb": RSS_TARGET_MB}
    if not alive:
        result["error"] = "it stopped before the end: " + \
            log_path.read_bytes().decode(errors="replace")[-600:]
    return result


def rtsp_cases(work: Path, video: Path, env: dict, seconds: float) -> dict:
    """The four RTSP cases of the docstring, against real GStreamer RTSP servers."""
    from doorbell.storage.clipid import VIDEO_SUFFIX
    from tests.camera.rtsp_server import RtspServer, looped_h264, missing_gstreamer

    if (reason := missing_gstreamer()) is not None:
        return {"skipped": reason}
    repeats = max(2, int((seconds + 30) // (video_s_of(video))) + 1)
    sub_video = work / "synthetic-180p15.mp4"
    make_test_file(sub_video, video_s_of(video), (SUB_WIDTH, SUB_HEIGHT))
    main_server = RtspServer(looped_h264(video, work, repeats))
    sub_server = RtspServer(looped_h264(sub_video, work, repeats))
    main_server.start()
    sub_server.start()
    results = {}
    try:
        log("RTSP: decode only with OpenCV (baseline)")
        results["rtsp_decode_only_opencv"] = streaming_child(
            [sys.executable, "-c", BASELINE_SCRIPT, main_server.url()], env, seconds,
            work / "baseline.log")
        cases = {
            "rtsp_passthrough": "",
            "rtsp_main_and_substream": f'detect_source = "{sub_server.url()}"\n',
            "rtsp_re_encode_masked": "",
        }
        for name, camera_extra in cases.items():
            log(f"RTSP: {name}")
            home = work / name / "home"
            shutil.copytree(work / "template" / "home", home)
            config = (f"[camera]\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = {FPS}\n"
                      f"{camera_extra}\n[retention]\nmin_free_bytes = 0\n")
            if name == "rtsp_re_encode_masked":  # the top-left corner
                config += ("\n[privacy]\n"
                           "masks = [[[0.0, 0.0], [0.3, 0.0], [0.3, 0.2], [0.0, 0.2]]]\n")
            (home / "config.toml").write_text(config)
            results[name] = streaming_child(
                [sys.executable, "-m", "doorbell", "record", "--home", str(home), "--source",
                 main_server.url()], env, seconds, work / f"{name}.log")
            results[name]["clips_saved"] = len(list((home / "clips").rglob(
                "*" + VIDEO_SUFFIX)))
    finally:
        main_server.stop()
        sub_server.stop()
    baseline_cpu = results["rtsp_decode_only_opencv"].get("cpu_s_per_video_s")
    if baseline_cpu:
        for name in cases:
            cpu = results[name].get("cpu_s_per_video_s")
            if cpu is not None:
                results[name]["cpu_vs_decode_only"] = round(cpu / baseline_cpu, 2)
        passthrough = results["rtsp_passthrough"].get("cpu_vs_decode_only")
        results["passthrough_cpu_target"] = PASSTHROUGH_CPU_TARGET
        results["passthrough_within_target"] = passthrough is not None and \
            passthrough <= PASSTHROUGH_CPU_TARGET
    return results


def video_s_of(video: Path) -> float:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return float(stream.frames / FPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the test file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--rtsp-seconds", type=float, default=20.0,
                        help="real-time seconds measured per RTSP case (0: skip them)")
    args = parser.parse_args()

    load_1m = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="doorbell-bench-pipeline-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
    env["DOORBELL_RUNTIME_DIR"] = str(work / "run")
    os.environ["DOORBELL_RUNTIME_DIR"] = env["DOORBELL_RUNTIME_DIR"]
    try:
        video = work / "synthetic-720p15.mp4"
        log(f"making a {args.seconds:.0f} s 720p15 test file in {work}")
        frames = make_test_file(video, args.seconds)
        video_s = frames / FPS

        log("baseline: decode only with OpenCV")
        baseline = decode_only_baseline(video, video_s)

        (work / "a").mkdir()
        init_home(work / "a" / "home", env)
        (work / "b").mkdir()
        shutil.copytree(work / "a" / "home", work / "b" / "home")
        shutil.copytree(work / "a" / "home", work / "template" / "home")
        shutil.copy(work / "a" / "passphrase.txt", work / "b" / "passphrase.txt")

        log("whole pipeline in-process, as fast as possible")
        in_process = pipeline_in_process(work / "a" / "home", video, video_s)

        log("peak RSS of `doorbell record --source FILE --until-eof`")
        subprocess_result = recorder_subprocess(work / "b" / "home", video, env, video_s)

        rtsp = rtsp_cases(work, video, env, args.rtsp_seconds) if args.rtsp_seconds > 0 \
            else {"skipped": "--rtsp-seconds 0"}

        result = {
            "benchmark": "recorder pipeline",
            "input": {"file": video.name, "width": WIDTH, "height": HEIGHT, "fps": FPS,
                      "frames": frames, "seconds": round(video_s, 2),
                      "bytes": video.stat().st_size},
            "pipeline_in_process": in_process,
            "baseline_decode_only_opencv": baseline,
            "pipeline_vs_decode_only_cpu": round(
                in_process["cpu_s_per_video_s"] / max(baseline["cpu_s_per_video_s"], 1e-9), 2),
            "recorder_subprocess": subprocess_result,
            "ip_camera": rtsp,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "av": av.__version__, "opencv": cv2.__version__,
                        "load_average_1m_at_start": round(load_1m, 2)},
        }
        print(json.dumps(result, indent=2))
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
