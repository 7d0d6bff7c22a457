"""Detector benchmark on real footage; prints one JSON object on stdout (progress to stderr).

    .venv/bin/python bench/bench_detector.py [FOLDER ...] [--max-frames N] [--opencv-threads N]

For every CDnet-layout folder under ../shared/testdata/cdnet (input/inNNNNNN.jpg,
groundtruth/gtNNNNNN.png, ROI.bmp, temporalROI.txt), plus any folder named on the command line,
the project's MotionDetector and OpenCV's MOG2 and KNN (detectShadows=True, foreground = mask > 200,
so shadows count as background) are fed the same decoded frames in the same run, at native size.
CDnet has no timestamps: 25 fps is assumed (frame k gets pts (k - 1) / 25 s).

Per detector and sequence:
- pixel precision, recall and F1 over the labelled frames (temporalROI), ground truth 255 is
  motion, 0 and 50 (hard shadow) are background, 85 and 170 are not scored, nor pixels outside
  ROI.bmp. The project's mask is at detection size; it is scaled up (nearest) to the frame's.
- fps (wall clock; fps_vs_mog2 is the issue's measure) and CPU ms per frame (process time, which
  counts OpenCV's worker threads too), of the detector's call alone, decoding excluded. OpenCV's
  pool (opencv_threads in the output; --opencv-threads sets it, for every method alike) spins its
  workers after each parallel call: on 320x240 frames that adds CPU to the project's many small
  calls (CDnet highway: 1.73 ms per frame with 2 threads, 0.97 with 1) and almost none to MOG2's;
- where events.json exists (events_frames: frame windows with a person): events triggered, the
  trigger latency in seconds, and seconds triggered outside any event (project detector only:
  the subtractors have no trigger).

Also the files in ../shared/testdata/video: frames and seconds triggered by the project's detector
(vtest.avi has people, tree.avi a hand, bikes.mp4 a moving camera that must not trigger), and the
synthetic doorstep (camera.synthetic, 1280x720 at 15 fps): its default script (visits mixed with
every nuisance) and a nuisance-only script (the one tests/camera/test_motion.py uses): visitors
triggered within a second, frames triggered with no visitor in view (or just gone, 2 s grace).
Everywhere: the project's per-step CPU ms (MotionDetector's StepTimes: downscale, light,
foreground, learn, blobs) and MOG2's and KNN's ms per frame on the same frames, same run.
"""

import argparse
import json
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from doorbell.camera.frames import Frame  # noqa: E402
from doorbell.camera.motion import MotionDetector, StepTimes  # noqa: E402
from doorbell.camera.synthetic import ScriptedEvent, SyntheticScene  # noqa: E402

SHARED = PROJECT.parent / "shared" / "testdata"
CDNET_FPS = 25.0
SYNTHETIC_FPS = 15
SYNTHETIC_SIZE = (1280, 720)
VISITOR_LATENCY_S = 1.0
GRACE_S = 2.0  # after a visitor leaves, the detector may stay triggered this long
NUISANCES_ONLY = [  # tests/camera/test_motion.py's script, seed 7: any trigger is a false clip
    ScriptedEvent("cloud", 3.0, 5.0),
    ScriptedEvent("exposure_step", 10.0, 3.0),
    ScriptedEvent("exposure_step", 15.0, 3.0),
    ScriptedEvent("headlights", 20.0, 2.0),
    ScriptedEvent("rain", 24.0, 14.0),
    ScriptedEvent("headlights", 30.0, 3.0),
    ScriptedEvent("branch_gust", 40.0, 10.0),
]
GT_MOTION, GT_SHADOW, GT_STATIC = 255, 50, 0


def log(message: str) -> None:
    print(f"[bench_detector] {message}", file=sys.stderr, flush=True)


def cdnet_frames(folder: Path, max_frames: int | None) -> tuple[list[int], list[np.ndarray]]:
    paths = sorted((folder / "input").glob("in*.jpg"))
    if not paths:
        raise SystemExit(f"{folder} has no input/inNNNNNN.jpg frames")
    if max_frames:
        paths = paths[:max_frames]
    numbers = [int(p.stem[2:]) for p in paths]
    return numbers, [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


class Scores:
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def add(self, fg: np.ndarray, gt: np.ndarray, roi: np.ndarray) -> None:
        scored = roi & ((gt == GT_MOTION) | (gt == GT_STATIC) | (gt == GT_SHADOW))
        truth = gt == GT_MOTION
        self.tp += int(np.count_nonzero(fg & truth & scored))
        self.fp += int(np.count_nonzero(fg & ~truth & scored))
        self.fn += int(np.count_nonzero(~fg & truth & scored))

    def result(self) -> dict:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"f1": round(f1, 3), "precision": round(precision, 3), "recall": round(recall, 3)}


def subtractor_step(subtractor):
    def step(image: np.ndarray, pts_us: int) -> np.ndarray:
        return subtractor.apply(image) > 200
    return step


def project_step(detector: MotionDetector, triggers: list[bool]):
    def step(image: np.ndarray, pts_us: int) -> np.ndarray:
        motion = detector.update(Frame(image=image, pts_us=pts_us))
        triggers.append(motion.triggered)
        h, w = image.shape[:2]
        mask = motion.mask
        if mask.shape != (h, w):
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        return mask > 0
    return step


def event_results(numbers: list[int], triggers: list[bool], events_path: Path) -> dict:
    events = json.loads(events_path.read_text())
    fps = float(events.get("fps", CDNET_FPS))
    windows = [tuple(w) for w in events["events_frames"]]
    by_number = dict(zip(numbers, triggers, strict=True))
    out = []
    for first, last in windows:
        hits = [n for n in range(first, last + 1) if by_number.get(n)]
        out.append({"frames": [first, last], "triggered": bool(hits),
                    "latency_s": round((hits[0] - first) / fps, 2) if hits else None})
    outside = sum(1 for n, t in by_number.items()
                  if t and not any(a <= n <= b for a, b in windows))
    return {"events": out, "triggered": sum(e["triggered"] for e in out), "of": len(out),
            "triggered_outside_events_s": round(outside / fps, 2)}


def bench_cdnet(folder: Path, max_frames: int | None) -> dict:
    numbers, images = cdnet_frames(folder, max_frames)
    first, last = (int(v) for v in (folder / "temporalROI.txt").read_text().split()[:2])
    roi_image = cv2.imread(str(folder / "ROI.bmp"), cv2.IMREAD_GRAYSCALE)
    roi = roi_image > 0 if roi_image is not None else np.ones(images[0].shape[:2], bool)
    h, w = images[0].shape[:2]
    log(f"{folder.name}: {len(images)} frames {w}x{h}, labelled {first}-{last}")
    truths = {}
    for n in numbers:
        if first <= n <= last:
            gt = cv2.imread(str(folder / "groundtruth" / f"gt{n:06d}.png"), cv2.IMREAD_GRAYSCALE)
            if gt is not None:
                truths[n] = gt
    triggers: list[bool] = []
    steps = StepTimes()
    detector = MotionDetector(step_times=steps)
    methods = {
        "mog2": subtractor_step(cv2.createBackgroundSubtractorMOG2(detectShadows=True)),
        "knn": subtractor_step(cv2.createBackgroundSubtractorKNN(detectShadows=True)),
        "project": project_step(detector, triggers),
    }
    scores = {name: Scores() for name in methods}
    cpu_s = dict.fromkeys(methods, 0.0)
    wall_s = dict.fromkeys(methods, 0.0)
    # Interleaved frame by frame: a busy moment on the shared machine hurts every method alike.
    for n, image in zip(numbers, images, strict=True):
        pts_us = round((n - 1) * 1e6 / CDNET_FPS)
        for name, step in methods.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fg = step(image, pts_us)
            cpu_s[name] += time.process_time() - c0
            wall_s[name] += time.perf_counter() - w0
            if n in truths:
                scores[name].add(fg, truths[n], roi)
    frames = len(images)
    result = {"size": [w, h], "frames": frames, "labelled_frames_scored": len(truths),
              "assumed_fps": CDNET_FPS, "methods": {}}
    for name in methods:
        result["methods"][name] = {
            **scores[name].result(),
            "fps": round(frames / wall_s[name], 1),
            "cpu_ms_per_frame": round(cpu_s[name] * 1e3 / frames, 3),
        }
    project = result["methods"]["project"]
    project["steps_ms"] = steps_ms(steps, frames)
    project["fps_vs_mog2"] = round(project["fps"] / result["methods"]["mog2"]["fps"], 2)
    events_path = folder / "events.json"
    if events_path.exists():
        result["events"] = event_results(numbers, triggers, events_path)
    return result


def steps_ms(steps: StepTimes, frames: int) -> dict:
    return {name: round(seconds * 1e3 / frames, 3) for name, seconds in steps.seconds.items()}


class SideBySide:
    """The project's detector, MOG2 and KNN on the same frames: CPU per frame, per-step times."""

    def __init__(self) -> None:
        self.steps = StepTimes()
        self.detector = MotionDetector(step_times=self.steps)
        self.subtractors = {"mog2": cv2.createBackgroundSubtractorMOG2(detectShadows=True),
                            "knn": cv2.createBackgroundSubtractorKNN(detectShadows=True)}
        self.cpu_s = {"project": 0.0, "mog2": 0.0, "knn": 0.0}
        self.frames = 0

    def update(self, frame: Frame):
        c0 = time.process_time()
        motion = self.detector.update(frame)
        self.cpu_s["project"] += time.process_time() - c0
        for name, subtractor in self.subtractors.items():
            c0 = time.process_time()
            subtractor.apply(frame.image)
            self.cpu_s[name] += time.process_time() - c0
        self.frames += 1
        return motion

    def result(self) -> dict:
        ms = {name: round(cpu * 1e3 / self.frames, 3) for name, cpu in self.cpu_s.items()}
        return {"cpu_ms_per_frame": ms,
                "project_speed_vs_mog2": round(ms["mog2"] / max(ms["project"], 1e-9), 2),
                "project_steps_ms": steps_ms(self.steps, self.frames)}


def bench_video(path: Path) -> dict:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or CDNET_FPS
    side = SideBySide()
    frames = triggered = 0
    size = None
    while True:
        ok, image = capture.read()
        if not ok:
            break
        size = [int(image.shape[1]), int(image.shape[0])]
        motion = side.update(Frame(image=image, pts_us=round(frames * 1e6 / fps)))
        frames += 1
        triggered += motion.triggered
    capture.release()
    if frames == 0:
        raise SystemExit(f"{path} could not be decoded")
    return {"size": size, "frames": frames, "fps_of_file": round(fps, 3),
            "triggered_frames": triggered,
            "triggered_s": round(triggered / fps, 2), **side.result()}


def bench_synthetic(name: str, scene: SyntheticScene) -> dict:
    log(f"synthetic {name} at {SYNTHETIC_SIZE[0]}x{SYNTHETIC_SIZE[1]}")
    side = SideBySide()
    pts, triggered = [], []
    for frame in scene.frames():
        triggered.append(side.update(frame).triggered)
        pts.append(frame.pts_us)
    pts_us, hit = np.array(pts), np.array(triggered)
    allowed = np.zeros_like(hit)
    visitors = []
    for truth in scene.ground_truth():
        during = (pts_us >= truth.start_us) & (pts_us <= truth.end_us)
        allowed |= (pts_us >= truth.start_us) & (pts_us <= truth.end_us + round(GRACE_S * 1e6))
        first = pts_us[during & hit]
        latency_s = (int(first[0]) - truth.start_us) / 1e6 if first.size else None
        visitors.append({"path": truth.path, "start_s": round(truth.start_us / 1e6, 2),
                         "latency_s": None if latency_s is None else round(latency_s, 2)})
    in_time = sum(v["latency_s"] is not None and v["latency_s"] <= VISITOR_LATENCY_S
                  for v in visitors)
    return {"size": list(SYNTHETIC_SIZE), "frames": len(pts), "fps_of_scene": SYNTHETIC_FPS,
            "visitors": visitors, "visitors_triggered_within_1s": in_time, "of": len(visitors),
            "false_triggered_frames": int(np.count_nonzero(hit & ~allowed)), **side.result()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="more CDnet-layout folders")
    parser.add_argument("--max-frames", type=int, default=None, help="first N frames only")
    parser.add_argument("--opencv-threads", type=int, default=None,
                        help="cv2.setNumThreads(N) before anything runs (default: OpenCV's own)")
    args = parser.parse_args()
    if args.opencv_threads is not None:
        if args.opencv_threads < 1:
            raise SystemExit("--opencv-threads must be 1 or more")
        cv2.setNumThreads(args.opencv_threads)
    cdnet_root = SHARED / "cdnet"
    folders = sorted(p for p in cdnet_root.iterdir() if (p / "input").is_dir()) \
        if cdnet_root.is_dir() else []
    for folder in args.folders:
        if not (folder / "input").is_dir():
            raise SystemExit(f"{folder} is not a CDnet-layout folder (no input/ in it)")
        folders.append(folder)
    report = {"cdnet": {}, "video": {}, "opencv": cv2.__version__,
              "opencv_threads": cv2.getNumThreads(),
              "note": "MOG2/KNN detectShadows=True, foreground = mask > 200; same frames, same run"}
    for folder in folders:
        report["cdnet"][folder.name] = bench_cdnet(folder, args.max_frames)
    video_root = SHARED / "video"
    for path in sorted(video_root.glob("*")) if video_root.is_dir() else []:
        if path.suffix in (".avi", ".mp4"):
            log(f"video {path.name}")
            report["video"][path.name] = bench_video(path)
    width, height = SYNTHETIC_SIZE
    report["synthetic"] = {
        "default_script": bench_synthetic("default script", SyntheticScene(
            width, height, fps=SYNTHETIC_FPS, seed=0, duration_s=180)),
        "nuisances_only": bench_synthetic("nuisances only", SyntheticScene(
            width, height, fps=SYNTHETIC_FPS, seed=7, script=NUISANCES_ONLY, duration_s=52)),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
