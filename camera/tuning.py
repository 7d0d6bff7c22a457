"""The motion tuner's overlay: trial motion values tried on the live picture, recording untouched.

While the viewer's tuner page is open it keeps `motion-tuning.json` in the home (no footage;
a storage.exchange.MotionTrial):

    {"motion": {"sensitivity": 0.7, "min_area": 0.002, ...}, "expires_at": 1714564830}

(any motion.* key) and refreshes `expires_at` every few seconds. The recorder checks the file
once a second. While it holds valid values (checked exactly like config.toml) and has not
expired, a second MotionDetector runs with them on the same masked frames as the real one, and
at the live frame rate the recorder writes, atomically, into the runtime directory:

    motion-mask.png      the trial detector's motion mask, at detection resolution
    motion-overlay.json  a storage.exchange.MotionOverlay: {"updated", "frame_width",
                         "frame_height", "boxes" (x, y, w, h as fractions of the frame),
                         "score", "triggered", "light_change", "motion" (the trial values
                         in force)}

The mask is footage-derived, so like live.jpg it only ever goes to the runtime directory (a
tmpfs), never under the home. A file that is removed, expires or stops being valid ends tuning:
both outputs are deleted and the second detector is dropped. Expiry is capped at two minutes
from when the file was read (storage.exchange.MAX_TRIAL_EXPIRY_S), so a viewer that vanishes
without cleaning up costs little.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from doorbell.config import ConfigError, MotionSettings, Settings
from doorbell.storage.exchange import ExchangeFileError, MotionOverlay, MotionTrial, replace_file
from doorbell.storage.home import Home

from .frames import Frame
from .motion import MotionDetector
from .reload import Stamp, file_stamp

log = logging.getLogger("doorbell.recorder")


def read_tuning(path: Path, base: Settings, now_s: float) -> tuple[MotionSettings, float]:
    """(trial motion settings, expiry in unix seconds) from the tuner's file.

    Raises ExchangeFileError (not the file's shape), ConfigError (a value config.toml would
    refuse, named by key; str() names the file) or OSError (FileNotFoundError included).
    """
    trial = MotionTrial.load(path)
    if trial is None:
        raise FileNotFoundError(f"{path} is gone")
    return trial.apply_to(base, source=str(path)), trial.expiry_s(now_s)


class MotionTuner:
    """The second detector and its overlay files; `poll` once a second, `update` every frame."""

    def __init__(self, home: Home, wall_clock_s: Callable[[], float] = time.time,
                 clock_s: Callable[[], float] = time.monotonic):
        self.tuning_file = home.motion_tuning_file
        self.mask_file = home.motion_mask_file
        self.overlay_file = home.motion_overlay_file
        self.detector: MotionDetector | None = None
        self._wall_clock_s = wall_clock_s
        self._clock_s = clock_s
        self._stamp: Stamp = None
        self._base: Settings | None = None
        self._expires_at_s = 0.0
        self._interval_s = 0.5
        self._last_write_s: float | None = None
        self._files_out = True  # so the first end() removes what a killed recorder left

    @property
    def active(self) -> bool:
        return self.detector is not None

    def poll(self, settings: Settings) -> None:
        """Start, follow or end tuning as the viewer's file says (`settings`: those in force)."""
        now_s = self._wall_clock_s()
        self._interval_s = 1.0 / settings.live.fps
        stamp = file_stamp(self.tuning_file)
        if stamp is None:
            self._stamp = None
            self.end()
            return
        if stamp != self._stamp or settings is not self._base:
            # Read again when the viewer rewrote the file, and when config.toml changed: the
            # trial is the settings in force with the tuner's values over them.
            new_file, self._stamp, self._base = stamp != self._stamp, stamp, settings
            try:
                motion, self._expires_at_s = read_tuning(self.tuning_file, settings, now_s)
            except (OSError, ExchangeFileError, ConfigError) as exc:
                if new_file:  # one line per version of the file, not one a second
                    log.warning("motion tuning ignored: %s", exc)
                self.end()
                return
            if self._expires_at_s > now_s and (self.detector is None
                                               or self.detector.settings != motion):
                # Same values (the viewer only pushed the expiry on): keep the detector,
                # which has learnt the scene; new values: a detector that learns afresh.
                if self.detector is None:
                    log.info("motion tuning started")
                self.detector = MotionDetector(motion)
                self._last_write_s = None
        if now_s >= self._expires_at_s:
            self.end()

    def update(self, frame: Frame, full_size: tuple[int, int] | None = None) -> None:
        """Run the trial detector on this (masked) frame; write the overlay at the live rate.

        `full_size`: the camera's frame size when `frame` is a smaller copy (picamera2's lores
        stream); boxes are fractions of the frame either way.
        """
        if self.detector is None:
            return
        motion = self.detector.update(frame)
        now_s = self._clock_s()
        if self._last_write_s is not None and now_s - self._last_write_s < self._interval_s:
            return
        self._last_write_s = now_s
        ok, png = cv2.imencode(".png", motion.mask)
        if not ok:
            return
        width, height = frame.width, frame.height
        frame_width, frame_height = full_size or (width, height)
        overlay = MotionOverlay(
            updated=round(self._wall_clock_s(), 3),
            frame_width=int(frame_width),
            frame_height=int(frame_height),
            boxes=tuple((round(float(x) / width, 5), round(float(y) / height, 5),
                         round(float(w) / width, 5), round(float(h) / height, 5))
                        for x, y, w, h in motion.boxes),
            score=round(float(motion.score), 5),
            triggered=bool(motion.triggered),
            light_change=bool(motion.light_change),
            motion=self.detector.settings,
        )
        # The mask first: once the overlay says "updated", the mask beside it is as new.
        self._files_out = True
        replace_file(self.mask_file, png.tobytes())
        overlay.write(self.overlay_file)

    def reset(self) -> None:
        """The picture changed under the detector (new privacy masks): learn it afresh."""
        if self.detector is not None:
            self.detector.reset()

    def end(self) -> None:
        """No tuning (the file went, expired or is invalid; the recorder stops): clean up."""
        if self.detector is not None:
            log.info("motion tuning ended")
        self.detector = None
        if self._files_out:
            self._files_out = False
            for path in (self.mask_file, self.overlay_file):
                path.unlink(missing_ok=True)
