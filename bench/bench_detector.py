"""Detector benchmark on real footage; prints one JSON object on stdout (progress to stderr).

    .venv/bin/python bench/bench_detector.py [FOLDER ...] [--max-frames N]

For every CDnet-layout folder under ../shared/testdata/cdnet (input/inNNNNNN.jpg,
groundtruth/gtNNNNNN.png, ROI.bmp, temporalROI.txt), plus any folder named on the command line,
the project's MotionDetector and OpenCV's MOG2 and KNN (detectShadows=True, foreground = mask > 200,
so shadows count as background) are fed the same decoded frames in the same run, at native size.
CDnet has no timestamps: 25 fps is assumed (frame k gets pts (k - 1) / 25 s).

Per detector and sequence:
- pixel precision, recall and F1 over the labelled frames (temporalROI), ground truth 255 is
  motion, 0 and 50 (hard shadow) are background, 85 and 170 are not scored, nor pixels outside
  ROI.bmp. The project's mask is at detection size; it is scaled up (nearest) to the frame's.
- fps and CPU ms per frame (process time of the detector's call alone, decoding excluded);
- for the project's detector, per-step times (downscale, rest of update) from cProfile-free
  timers: the downscale is timed by calling it on the same frame outside update.
- where events.json exists (events_frames: frame windows with a person): events triggered, the
  trigger latency in seconds, and seconds triggered outside any event (project detector only:
  the subtractors have no trigger).

Also the files in ../shared/testdata/video: frames and seconds triggered by the project's detector
(vtest.avi has people, tree.avi a hand, bikes.mp4 a moving camera that must not trigger).
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
from doorbell.camera.motion import MotionDetector  # noqa: E402

SHARED = PROJECT.parent / "shared" / "testdata"
CDNET_FPS = 25.0
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
    by_number = dict(zip(numbers, triggers))
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
    detector = MotionDetector()
    methods = {
        "mog2": subtractor_step(cv2.createBackgroundSubtractorMOG2(detectShadows=True)),
        "knn": subtractor_step(cv2.createBackgroundSubtractorKNN(detectShadows=True)),
        "project": project_step(detector, triggers),
    }
    scores = {name: Scores() for name in methods}
    cpu_s = dict.fromkeys(methods, 0.0)
    wall_s = dict.fromkeys(methods, 0.0)
    # Interleaved frame by frame: a busy moment on the shared machine hurts every method alike.
    for n, image in zip(numbers, images):
        pts_us = round((n - 1) * 1e6 / CDNET_FPS)
        for name, step in methods.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fg = step(image, pts_us)
            cpu_s[name] += time.process_time() - c0
            wall_s[name] += time.perf_counter() - w0
            if n in truths:
                scores[name].add(fg, truths[n], roi)
    # Per-step: the downscale alone on the same frames (the rest of update is the remainder).
    downscale = detector._downscale
    c0 = time.process_time()
    for image in images:
        downscale(image)
    downscale_ms = (time.process_time() - c0) * 1e3 / len(images)
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
    project["steps_cpu_ms"] = {"downscale": round(downscale_ms, 3),
                               "rest": round(project["cpu_ms_per_frame"] - downscale_ms, 3)}
    project["fps_vs_mog2"] = round(project["fps"] / result["methods"]["mog2"]["fps"], 2)
    events_path = folder / "events.json"
    if events_path.exists():
        result["events"] = event_results(numbers, triggers, events_path)
    return result


def bench_video(path: Path) -> dict:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or CDNET_FPS
    detector = MotionDetector()
    frames = triggered = 0
    cpu_s = 0.0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        c0 = time.process_time()
        motion = detector.update(Frame(image=image, pts_us=round(frames * 1e6 / fps)))
        cpu_s += time.process_time() - c0
        frames += 1
        triggered += motion.triggered
    capture.release()
    if frames == 0:
        raise SystemExit(f"{path} could not be decoded")
    return {"frames": frames, "fps_of_file": fps, "triggered_frames": triggered,
            "triggered_s": round(triggered / fps, 2),
            "cpu_ms_per_frame": round(cpu_s * 1e3 / frames, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="more CDnet-layout folders")
    parser.add_argument("--max-frames", type=int, default=None, help="first N frames only")
    args = parser.parse_args()
    cdnet_root = SHARED / "cdnet"
    folders = sorted(p for p in cdnet_root.iterdir() if (p / "input").is_dir()) \
        if cdnet_root.is_dir() else []
    for folder in args.folders:
        if not (folder / "input").is_dir():
            raise SystemExit(f"{folder} is not a CDnet-layout folder (no input/ in it)")
        folders.append(folder)
    report = {"cdnet": {}, "video": {}, "opencv": cv2.__version__,
              "note": "MOG2/KNN detectShadows=True, foreground = mask > 200; same frames, same run"}
    for folder in folders:
        report["cdnet"][folder.name] = bench_cdnet(folder, args.max_frames)
    video_root = SHARED / "video"
    for path in sorted(video_root.glob("*")) if video_root.is_dir() else []:
        if path.suffix in (".avi", ".mp4"):
            log(f"video {path.name}")
            report["video"][path.name] = bench_video(path)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
