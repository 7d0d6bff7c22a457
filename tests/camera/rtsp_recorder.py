"""The recorder over an RTSP camera in a thread, for the tests against the real RTSP server
(tests/camera/rtsp_server.py): `start_recorder(home, url)` -> (recorder, finish), `wait_for`, and
`small_h264`, a camera's low-resolution substream made from the same video.
"""

import threading
import time
from fractions import Fraction
from pathlib import Path

from doorbell.camera.sources import plan_source


def start_recorder(home, url, watcher=None, settings=None):
    """The recorder in a thread over the RTSP plan `doorbell record --source URL` uses;
    with a `watcher`, it follows the home's config.toml as `doorbell record` does."""
    from doorbell.camera.live import StatusPublisher, prepare_runtime_dir
    from doorbell.camera.recorder import Recorder
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients

    settings = settings or home.settings()
    plan = plan_source(url, settings)
    prepare_runtime_dir(home.run_dir)
    stop, started = threading.Event(), threading.Event()
    made = []

    def run():  # SQLite objects belong to the thread that made them
        with ClipIndex(home.root / "index.sqlite3") as index:
            store = ClipStore(home.clips_dir, index,
                              read_recipients(home.root / "recipients.txt"))
            made.append(Recorder(settings, store, None, None, None,
                                 StatusPublisher(home.run_dir / "recorder.json"),
                                 watcher=watcher))
            started.set()
            made[0].run(plan.open, stop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    recorder = made[0]

    def finish():
        stop.set()
        thread.join(timeout=30)

    return recorder, finish


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def small_h264(video: Path, directory: Path, width: int) -> Path:
    """`video` at `width` pixels wide (same frames, same timestamps), H.264 without B-frames
    and a keyframe a second, as a camera's substream is."""
    import av

    out_path = directory / f"{video.stem}-{width}.mp4"
    with av.open(str(video)) as source, av.open(str(out_path), "w") as out:
        stream = source.streams.video[0]
        rate = stream.average_rate
        height = round(stream.codec_context.height * width / stream.codec_context.width) // 2 * 2
        encoded = out.add_stream("libx264", rate=rate)
        encoded.width, encoded.height, encoded.pix_fmt = width, height, "yuv420p"
        encoded.options = {"preset": "veryfast", "bf": "0", "g": str(round(rate))}
        encoded.codec_context.time_base = Fraction(1, round(rate))
        for index, frame in enumerate(source.decode(stream)):
            small = frame.reformat(width=width, height=height, format="yuv420p")
            small.pts, small.time_base = index, Fraction(1, round(rate))
            for packet in encoded.encode(small):
                out.mux(packet)
        for packet in encoded.encode(None):
            out.mux(packet)
    return out_path
