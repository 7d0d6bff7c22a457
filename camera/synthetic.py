"""A generated doorstep scene: the demo's camera and the tests' ground truth.

The picture is a front yard seen from a camera at the door, 1.5 m above the ground: a brick porch
wall with a side door on the left, the doorstep at the bottom, a paved path up to a gate in a hedge,
houses across the street, a patch of sky and a tree whose branch sways over it.

Scripted events play on top of it:

    visit          a person comes up to the door, lingers and leaves
    doorbell       the same, pressing the bell on arrival (see GroundTruth.pressed_at_us)
    cloud          the whole scene dims by ~30% over a second, then recovers
    exposure_step  the camera's auto-exposure jumps up or down at once (bright areas clip)
    headlights     a car's headlights sweep a bright patch across the yard
    rain           streaks in every frame, and a duller light
    branch_gust    the branch swings much harder than its usual sway

Visits take one of two paths: "side" (in from the right edge, across the lawn to the path) or
"straight" (out of the gate and straight at the camera: the figure grows in place with little
lateral motion, the case a frame-difference detector misses). Sensor noise is always on.

Every frame is a pure function of (seed, frame index, script), so a scene is deterministic by seed,
`frame_at(i)` can render any frame, and removing an event changes only what that event drew.
The static background is rendered once; a 720p frame then costs a few milliseconds.
"""

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from doorbell.camera.frames import Frame

EVENT_KINDS = (
    "visit", "doorbell", "cloud", "exposure_step", "headlights", "rain", "branch_gust",
)
VISIT_KINDS = ("visit", "doorbell")
VISIT_PATHS = ("side", "straight")

# The camera and the yard, in metres. Image y grows downwards; the horizon is a fixed row and the
# focal length is one frame height, so the scene keeps its look at any resolution.
CAMERA_HEIGHT_M = 1.5
HORIZON_ROW = 0.40  # fraction of the frame height
HEDGE_Z_M = 6.5  # distance of the hedge from the camera
HEDGE_HEIGHT_M = 2.0  # taller than a person: whoever is behind it is hidden
GATE_X_M = (-0.55, 0.55)  # the opening in the hedge
SIDEWALK_Z_M = 7.2  # where people walk behind the hedge
PATH_X_M = 0.0  # the garden path runs straight at the camera
DOOR_SPOT = (PATH_X_M, 1.7)  # where a visitor stands to ring (X, Z)
TREE_Z_M = 5.0
STEP_Z_M = 2.9  # the doorstep's far edge; the ground is out of view nearer than ~2.5 m
WALK_SPEED_M_S = 1.3
PERSON_HEIGHT_M = 1.75

LOOP_TAIL_S = 5.0  # quiet seconds after the last event before the script repeats


@dataclass(frozen=True, slots=True)
class ScriptedEvent:
    kind: str  # one of EVENT_KINDS
    start_s: float  # seconds from the start of the script
    duration_s: float
    path: str = "side"  # visits only: "side" or "straight"

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {EVENT_KINDS}")
        if self.path not in VISIT_PATHS:
            raise ValueError(f"unknown visit path {self.path!r}; expected one of {VISIT_PATHS}")
        if self.start_s < 0 or self.duration_s <= 0:
            raise ValueError("an event needs start_s >= 0 and duration_s > 0")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True, slots=True)
class GroundTruth:
    kind: str  # "visit" or "doorbell"
    start_us: int  # first frame in which part of the person is visible
    end_us: int  # last frame in which part of the person is visible
    pressed_at_us: int | None = None  # doorbell only: the frame the button is pressed
    path: str = "side"  # how they came: "side" or "straight" (at the camera, from the gate)
    at_door_us: int = 0  # when they reach the door: the approach is start_us .. at_door_us


# --------------------------------------------------------------------------------------------
# Small helpers


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def _ramp_envelope(t_s: float, duration_s: float, ramp_s: float) -> float:
    """0 -> 1 over ramp_s, hold, 1 -> 0 over the last ramp_s (ramps shrink for short events)."""
    ramp_s = min(ramp_s, duration_s / 2)
    return min(_smoothstep(t_s / ramp_s), _smoothstep((duration_s - t_s) / ramp_s))


def _event_rng(seed: int, event: ScriptedEvent) -> np.random.Generator:
    # Keyed by the event's start, not its position in the list, so that removing one event does not
    # change how the others look (the ground-truth test relies on it).
    return np.random.default_rng([seed, 7, round(event.start_s * 1000)])


class _Projection:
    """Ground-plane perspective: world (X lateral, Z depth, height) in metres -> pixels."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.focal_px = float(height)
        self.horizon_px = HORIZON_ROW * height

    def x(self, x_m: float, z_m: float) -> float:
        return self.width / 2 + self.focal_px * x_m / z_m

    def y(self, height_m: float, z_m: float) -> float:
        return self.horizon_px + self.focal_px * (CAMERA_HEIGHT_M - height_m) / z_m

    def scale(self, z_m: float) -> float:
        """Pixels per metre at depth z."""
        return self.focal_px / z_m


# --------------------------------------------------------------------------------------------
# The static background


def _noise_texture(rng: np.random.Generator, h: int, w: int, sigma_px: float) -> np.ndarray:
    """Smooth random texture in about -1..1 (float32)."""
    noise = rng.standard_normal((h, w)).astype(np.float32)
    if sigma_px > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma_px)
    return noise / max(float(noise.std()), 1e-6) / 3.0


def _paint(region: np.ndarray, base_bgr: Sequence[float], texture: np.ndarray, amount: float):
    """Fill region with a colour modulated by texture (both views of the same shape)."""
    shaded = np.asarray(base_bgr, np.float32)[None, None, :] * (1.0 + amount * texture[..., None])
    region[:] = np.clip(shaded, 0, 255).astype(np.uint8)


def _bricks(rng: np.random.Generator, h: int, w: int, brick_h: int) -> np.ndarray:
    """A brick wall texture, BGR uint8."""
    brick_h = max(3, brick_h)
    brick_w = brick_h * 3
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    course = rows // brick_h
    shifted = cols + (course % 2) * (brick_w // 2)
    brick_id = course * (w // brick_w + 2) + shifted // brick_w
    shades = rng.uniform(0.75, 1.15, size=int(brick_id.max()) + 1).astype(np.float32)
    base = np.array([60, 80, 150], np.float32)  # BGR: a red-brown brick
    wall = base[None, None, :] * shades[brick_id][..., None]
    mortar = (rows % brick_h == 0) | (shifted % brick_w == 0)
    wall[mortar] = (165, 170, 175)
    return np.clip(wall, 0, 255).astype(np.uint8)


def _render_background(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    proj = _Projection(width, height)
    img = np.zeros((height, width, 3), np.uint8)
    h, w = height, width

    # Sky: a vertical gradient, pale near the horizon.
    sky_rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    sky = np.array([235, 190, 140], np.float32) * (1 - sky_rows) + np.array(
        [250, 230, 205], np.float32
    ) * sky_rows
    img[:] = np.clip(sky, 0, 255).astype(np.uint8)

    # Houses across the street (Z = 15 m): two facades with windows, sky between and to the right.
    street_z = 15.0
    for x0_m, x1_m, top_m, colour in ((-12.0, -1.0, 7.0, (150, 170, 190)),
                                      (0.5, 4.5, 6.0, (120, 135, 165))):
        x0, x1 = int(proj.x(x0_m, street_z)), int(proj.x(x1_m, street_z))
        y0, y1 = int(proj.y(top_m, street_z)), int(proj.y(0.0, street_z))
        x0c, x1c = max(0, x0), min(w, x1)
        if x1c > x0c:
            tex = _noise_texture(rng, y1 - y0, x1c - x0c, 1.0)
            _paint(img[y0:y1, x0c:x1c], colour, tex, 0.15)
            step_m = 1.6
            win = proj.scale(street_z)
            for wx_m in np.arange(x0_m + 0.6, x1_m - 0.8, step_m):
                for wy_m in (1.2, 4.0):
                    if wy_m + 1.4 > top_m:
                        continue
                    cv2.rectangle(
                        img,
                        (int(proj.x(wx_m, street_z)), int(proj.y(wy_m + 1.4, street_z))),
                        (int(proj.x(wx_m, street_z) + 0.9 * win), int(proj.y(wy_m, street_z))),
                        (70, 60, 55), -1,
                    )
    # Street and sidewalk up to the hedge (seen through the gate).
    y_street = int(proj.y(0.0, street_z))
    y_hedge_bottom = int(proj.y(0.0, HEDGE_Z_M))
    tex = _noise_texture(rng, y_hedge_bottom - y_street, w, 1.5)
    _paint(img[y_street:y_hedge_bottom], (120, 125, 128), tex, 0.2)

    # The hedge, with a gate opening and two brick posts.
    y_hedge_top = int(proj.y(HEDGE_HEIGHT_M, HEDGE_Z_M))
    gate_x0, gate_x1 = (int(proj.x(x, HEDGE_Z_M)) for x in GATE_X_M)
    hedge_tex = _noise_texture(rng, y_hedge_bottom - y_hedge_top, w, 2.5)
    hedge = np.empty((y_hedge_bottom - y_hedge_top, w, 3), np.uint8)
    _paint(hedge, (40, 95, 45), hedge_tex, 0.9)
    img[y_hedge_top:y_hedge_bottom, :gate_x0] = hedge[:, :gate_x0]
    img[y_hedge_top:y_hedge_bottom, gate_x1:] = hedge[:, gate_x1:]
    post_w = max(3, int(0.25 * proj.scale(HEDGE_Z_M)))
    post_top = int(proj.y(HEDGE_HEIGHT_M + 0.15, HEDGE_Z_M))
    for x in (gate_x0 - post_w, gate_x1):
        img[post_top:y_hedge_bottom, x:x + post_w] = _bricks(
            rng, y_hedge_bottom - post_top, post_w, max(3, h // 120)
        )

    # The lawn from the hedge to the step, with the paved path to the gate.
    y_step = int(proj.y(0.0, STEP_Z_M))
    lawn_tex = _noise_texture(rng, y_step - y_hedge_bottom, w, 1.2)
    _paint(img[y_hedge_bottom:y_step], (60, 140, 80), lawn_tex, 0.5)
    path = np.array([
        (proj.x(PATH_X_M - 0.55, HEDGE_Z_M), y_hedge_bottom),
        (proj.x(PATH_X_M + 0.55, HEDGE_Z_M), y_hedge_bottom),
        (proj.x(PATH_X_M + 0.55, STEP_Z_M), y_step),
        (proj.x(PATH_X_M - 0.55, STEP_Z_M), y_step),
    ], np.int32)
    path_mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(path_mask, path, 255)
    paving = np.empty_like(img)
    _paint(paving, (150, 160, 165), _noise_texture(rng, h, w, 1.0), 0.25)
    for z in np.arange(STEP_Z_M, HEDGE_Z_M, 0.6):  # joints between slabs
        y = int(proj.y(0.0, z))
        cv2.line(paving, (0, y), (w, y), (105, 110, 115), max(1, h // 400))
    img[path_mask > 0] = paving[path_mask > 0]

    # The doorstep along the bottom of the frame.
    step_tex = _noise_texture(rng, h - y_step, w, 0.8)
    _paint(img[y_step:], (175, 180, 182), step_tex, 0.15)
    cv2.line(img, (0, y_step), (w, y_step), (110, 112, 115), max(2, h // 240))

    # The porch wall on the left, with the side door.
    wall_x = int(0.16 * w)
    img[:, :wall_x] = _bricks(rng, h, wall_x, max(4, h // 45))
    door = (int(0.03 * w), int(0.12 * h), int(0.13 * w), int(0.86 * h))
    cv2.rectangle(img, door[:2], door[2:], (40, 65, 105), -1)  # wood
    dw, dh = door[2] - door[0], door[3] - door[1]
    for py in (0.06, 0.55):
        cv2.rectangle(
            img,
            (door[0] + int(0.15 * dw), door[1] + int(py * dh)),
            (door[2] - int(0.15 * dw), door[1] + int((py + 0.38) * dh)),
            (30, 50, 85), max(2, w // 400),
        )
    cv2.circle(img, (door[2] - int(0.12 * dw), door[1] + dh // 2), max(2, w // 250),
               (60, 170, 200), -1)  # the handle

    # The tree trunk and its static crown (the swaying branch is drawn per frame).
    trunk_x = int(0.87 * w)
    cv2.rectangle(img, (trunk_x - w // 70, int(0.12 * h)), (trunk_x + w // 70, int(proj.y(
        0.0, TREE_Z_M))), (40, 55, 75), -1)
    crown = np.zeros((h, w), np.uint8)
    for cx, cy, r in ((0.93, 0.08, 0.10), (0.83, 0.03, 0.09), (0.99, 0.22, 0.08)):
        cv2.circle(crown, (int(cx * w), int(cy * h)), int(r * w), 255, -1)
    leaves = np.empty_like(img)
    _paint(leaves, (35, 85, 40), _noise_texture(rng, h, w, 2.0), 0.6)
    img[crown > 0] = leaves[crown > 0]
    return img


# --------------------------------------------------------------------------------------------
# The visitor


@dataclass(frozen=True, slots=True)
class _Look:
    jacket: tuple[int, int, int]
    trousers: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]


# Clothes that stand out from the lawn, the path and the hedge in grey level as real ones usually
# (not always) do: the tests need every visit to be detectable.
_JACKETS = ((40, 40, 170), (90, 50, 30), (40, 190, 220), (215, 215, 215), (35, 35, 35),
            (150, 60, 120))
_TROUSERS = ((60, 40, 30), (30, 30, 30), (110, 150, 170))
_SKINS = ((140, 170, 215), (90, 120, 170), (60, 80, 120))
_HAIRS = ((20, 25, 30), (40, 70, 110), (150, 160, 170))


def _pick(rng: np.random.Generator, options: Sequence[tuple[int, int, int]]):
    return options[int(rng.integers(len(options)))]


@dataclass(frozen=True, slots=True)
class _Pose:
    x_m: float
    z_m: float
    walk_phase: float  # radians; legs and arms swing with it
    stride: float  # 0 standing .. 1 walking
    lateral: float  # -1..1: how much of the walk is sideways (legs swing sideways)
    reach: float  # 0..1: right arm raised towards the bell


class _Visit:
    """Where a visitor is at each moment of one scripted visit (a pure function of time)."""

    def __init__(self, event: ScriptedEvent, seed: int) -> None:
        self.event = event
        rng = _event_rng(seed, event)
        self.look = _Look(_pick(rng, _JACKETS), _pick(rng, _TROUSERS), _pick(rng, _SKINS),
                          _pick(rng, _HAIRS))
        if event.path == "straight":
            # Along the sidewalk behind the hedge, into the gate, then straight at the camera.
            self.waypoints = [(-1.3, SIDEWALK_Z_M), (PATH_X_M, SIDEWALK_Z_M), DOOR_SPOT]
            self.exit_waypoints = [DOOR_SPOT, (PATH_X_M, SIDEWALK_Z_M), (2.2, SIDEWALK_Z_M)]
        else:
            # In from the right edge of the frame, across the lawn, onto the path to the door.
            self.waypoints = [(5.8, 4.0), (PATH_X_M, 3.0), DOOR_SPOT]
            self.exit_waypoints = list(reversed(self.waypoints))
        walk_in_s = self._length(self.waypoints) / WALK_SPEED_M_S
        walk_out_s = self._length(self.exit_waypoints) / WALK_SPEED_M_S
        # A short event makes the visitor hurry; the rest of the time they linger at the door.
        hurry = max(1.0, (walk_in_s + walk_out_s + 1.0) / event.duration_s)
        self.walk_in_s = walk_in_s / hurry
        self.walk_out_s = walk_out_s / hurry
        self.linger_s = event.duration_s - self.walk_in_s - self.walk_out_s
        self.press_offset_s = self.walk_in_s + min(0.8, self.linger_s / 3)
        self.sway_phase = float(rng.uniform(0, 2 * math.pi))

    @staticmethod
    def _length(points: Sequence[tuple[float, float]]) -> float:
        return sum(math.dist(a, b) for a, b in zip(points, points[1:], strict=False))

    @staticmethod
    def _along(points, fraction: float) -> tuple[float, float, float, float]:
        """Point at `fraction` of a polyline's length, and the unit direction there."""
        segments = list(zip(points, points[1:], strict=False))
        lengths = [math.dist(a, b) for a, b in segments]
        target = fraction * sum(lengths)
        for i, ((a, b), seg) in enumerate(zip(segments, lengths, strict=True)):
            if target <= seg or i == len(segments) - 1:
                f = min(1.0, target / seg) if seg else 0.0
                dx, dz = ((b[0] - a[0]) / seg, (b[1] - a[1]) / seg) if seg else (0.0, 0.0)
                return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), dx, dz
            target -= seg
        raise AssertionError("unreachable")

    def pose(self, t_s: float) -> _Pose | None:
        """The visitor at t_s seconds into the event, or None outside it."""
        if not 0 <= t_s < self.event.duration_s:
            return None
        walk_phase = 2 * math.pi * 0.9 * t_s  # ~0.9 strides per second
        reach = 0.0
        if self.event.kind == "doorbell":
            reach = max(0.0, 1.0 - abs(t_s - self.press_offset_s) / 0.6)
        if t_s < self.walk_in_s:
            x, z, dx, _ = self._along(self.waypoints, t_s / self.walk_in_s)
            return _Pose(x, z, walk_phase, 1.0, dx, reach)
        linger_t = t_s - self.walk_in_s
        if linger_t < self.linger_s:
            # Standing, but not frozen: people shift their weight and look around.
            sway = 0.04 * math.sin(2 * math.pi * 0.35 * linger_t + self.sway_phase)
            return _Pose(DOOR_SPOT[0] + sway, DOOR_SPOT[1], walk_phase, 0.15, 0.0, reach)
        out_t = linger_t - self.linger_s
        x, z, dx, _ = self._along(self.exit_waypoints, min(1.0, out_t / self.walk_out_s))
        return _Pose(x, z, walk_phase, 1.0, dx, 0.0)


class _FigureDrawing:
    """The visitor as a handful of filled polygons and ellipses, at sub-pixel precision."""

    SHIFT = 4  # cv2 fixed-point bits: smooth motion even when the figure is far and small

    def __init__(self, pose: _Pose, look: _Look, proj: _Projection) -> None:
        self.polys: list[tuple[np.ndarray, tuple[int, int, int]]] = []
        self.ellipses: list[tuple[tuple[float, float], tuple[float, float],
                                  tuple[int, int, int]]] = []
        s = proj.scale(pose.z_m)
        cx = proj.x(pose.x_m, pose.z_m)
        feet_y = proj.y(0.0, pose.z_m)

        def pt(dx_m: float, h_m: float) -> tuple[float, float]:
            return cx + dx_m * s, feet_y - h_m * s

        swing = math.sin(pose.walk_phase) * pose.stride
        side = abs(pose.lateral)
        # Legs: sideways walking swings them apart; walking at the camera lifts them in turn.
        for sign in (-1, 1):
            foot_dx = sign * 0.1 + sign * swing * 0.22 * side
            lift = max(0.0, sign * swing) * 0.08 * (1 - side)
            self._quad(pt(sign * 0.1 - 0.08, 0.9), pt(sign * 0.1 + 0.08, 0.9),
                       pt(foot_dx + 0.08, lift), pt(foot_dx - 0.08, lift), look.trousers)
        # Torso, with a lighter zip and a dark belt so it has some texture.
        self._quad(pt(-0.25, 1.48), pt(0.25, 1.48), pt(0.21, 0.85), pt(-0.21, 0.85), look.jacket)
        zip_colour = tuple(min(255, c + 60) for c in look.jacket)
        self._quad(pt(-0.012, 1.46), pt(0.012, 1.46), pt(0.012, 0.9), pt(-0.012, 0.9), zip_colour)
        self._quad(pt(-0.21, 0.93), pt(0.21, 0.93), pt(0.21, 0.87), pt(-0.21, 0.87), (25, 25, 25))
        # Arms swing opposite to the legs; the right arm reaches up to the bell.
        for sign in (-1, 1):
            hand_dx = sign * 0.3 - sign * swing * 0.12 * side
            hand_h = 0.8 + 0.08 * abs(swing) * (1 - side)
            if sign == 1 and pose.reach > 0:
                hand_dx, hand_h = 0.3 + 0.15 * pose.reach, 0.8 + 0.6 * pose.reach
            shoulder = sign * 0.25
            self._quad(pt(shoulder - 0.06, 1.45), pt(shoulder + 0.06, 1.45),
                       pt(hand_dx + 0.05, hand_h), pt(hand_dx - 0.05, hand_h), look.jacket)
            self.ellipses.append((pt(hand_dx, hand_h - 0.04), (0.05 * s, 0.06 * s), look.skin))
        # Neck, head and hair.
        self._quad(pt(-0.05, 1.56), pt(0.05, 1.56), pt(0.05, 1.46), pt(-0.05, 1.46), look.skin)
        self.ellipses.append((pt(0.0, 1.63), (0.1 * s, 0.125 * s), look.skin))
        self.ellipses.append((pt(0.0, 1.70), (0.1 * s, 0.06 * s), look.hair))

    def _quad(self, a, b, c, d, colour) -> None:
        points = np.array([a, b, c, d], np.float64) * (1 << self.SHIFT)
        self.polys.append((np.rint(points).astype(np.int32), colour))

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in pixels around everything drawn."""
        points = np.concatenate([p for p, _ in self.polys]) / (1 << self.SHIFT)
        xs, ys = list(points[:, 0]), list(points[:, 1])
        for (ex, ey), (ax, ay), _ in self.ellipses:
            xs += [ex - ax, ex + ax]
            ys += [ey - ay, ey + ay]
        return min(xs) - 1, min(ys) - 1, max(xs) + 1, max(ys) + 1

    def draw(self, img: np.ndarray) -> None:
        for points, colour in self.polys:
            cv2.fillConvexPoly(img, points, colour, cv2.LINE_AA, self.SHIFT)
        for (ex, ey), (ax, ay), colour in self.ellipses:
            centre = (round(ex * (1 << self.SHIFT)), round(ey * (1 << self.SHIFT)))
            axes = (max(1, round(ax * (1 << self.SHIFT))), max(1, round(ay * (1 << self.SHIFT))))
            cv2.ellipse(img, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_AA, self.SHIFT)


# --------------------------------------------------------------------------------------------
# The scene


class SyntheticScene:
    """A FrameSource that generates the doorstep scene (see the module docstring).

    realtime=True paces frames at `fps` with time.sleep (the demo camera); False yields them as
    fast as they are made (tests). duration_s=None repeats the script forever; otherwise the source
    stops after duration_s seconds. script=None means `default_script()`; [] is an empty yard.
    """

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: float = 15,
        seed: int = 0,
        script: Sequence[ScriptedEvent] | None = None,
        realtime: bool = False,
        duration_s: float | None = None,
        noise_sigma: float = 3.0,
    ) -> None:
        if width < 64 or height < 48:
            raise ValueError(
                f"the synthetic scene needs at least 64x48 pixels, not {width}x{height}"
            )
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.width, self.height, self.fps, self.seed = width, height, float(fps), seed
        self.script = list(self.default_script() if script is None else script)
        self.realtime = realtime
        self.duration_s = duration_s
        self.noise_sigma = noise_sigma
        # The script repeats after a whole number of frames, so a loop replays exactly.
        script_end_s = max((e.end_s for e in self.script), default=0.0) + LOOP_TAIL_S
        self.period_frames = math.ceil(script_end_s * self.fps - 1e-9)
        self.period_s = self.period_frames / self.fps
        self._proj = _Projection(width, height)
        self._background = _render_background(width, height, seed)
        self._visits = [_Visit(e, seed) for e in self.script if e.kind in VISIT_KINDS]
        self._look_up_events()
        self._prepare_noise()
        self._prepare_headlights()
        self._prepare_branch()
        self._closed = False

    # -- the script --------------------------------------------------------------------------

    @staticmethod
    def default_script() -> list[ScriptedEvent]:
        """About three minutes of visits mixed with everything that must not count as one."""
        e = ScriptedEvent
        return [
            e("visit", 8.0, 16.0, "side"),
            e("cloud", 29.0, 6.0),
            e("visit", 38.0, 18.0, "straight"),
            e("exposure_step", 60.0, 5.0),
            e("rain", 68.0, 26.0),
            e("visit", 78.0, 13.0, "side"),
            e("headlights", 98.0, 3.0),
            e("doorbell", 104.0, 20.0, "side"),
            e("branch_gust", 128.0, 10.0),
            e("cloud", 140.0, 4.0),
            e("exposure_step", 146.0, 4.0),
            e("headlights", 152.0, 2.5),
            e("doorbell", 157.0, 18.0, "straight"),
        ]

    def _look_up_events(self) -> None:
        self._by_kind: dict[str, list[ScriptedEvent]] = {k: [] for k in EVENT_KINDS}
        for event in self.script:
            self._by_kind[event.kind].append(event)
        self._exposure_gain = {
            e: (1.3 if _event_rng(self.seed, e).random() < 0.5 else 0.75)
            for e in self._by_kind["exposure_step"]
        }

    def _active(self, kind: str, t_s: float) -> list[tuple[ScriptedEvent, float]]:
        """Events of a kind running at script time t_s, with the time since each started."""
        return [(e, t_s - e.start_s) for e in self._by_kind[kind] if e.start_s <= t_s < e.end_s]

    def script_time_s(self, index: int) -> float:
        """Script time of a frame: the script repeats when duration_s is None."""
        if self.duration_s is None:
            index %= self.period_frames
        return index / self.fps

    def pts_us(self, index: int) -> int:
        return round(index * 1_000_000 / self.fps)

    # -- ground truth ------------------------------------------------------------------------

    def ground_truth(self) -> list[GroundTruth]:
        """The visible interval of every visit and doorbell press, in one pass of the script."""
        truths = []
        for visit in self._visits:
            e = visit.event
            first = math.ceil(e.start_s * self.fps - 1e-9)
            last = math.floor(e.end_s * self.fps - 1e-9)
            seen = [i for i in range(first, last + 1) if self._visible_box(i, visit) is not None]
            if not seen:
                continue
            pressed_at_us = None
            if e.kind == "doorbell":
                pressed_at_us = self.pts_us(round((e.start_s + visit.press_offset_s) * self.fps))
            at_door_us = self.pts_us(round((e.start_s + visit.walk_in_s) * self.fps))
            truths.append(GroundTruth(e.kind, self.pts_us(seen[0]), self.pts_us(seen[-1]),
                                      pressed_at_us, e.path, at_door_us))
        return truths

    def doorbell_presses_us(self) -> list[int]:
        """When the bell is pressed, in one pass of the script."""
        return [t.pressed_at_us for t in self.ground_truth() if t.pressed_at_us is not None]

    def presses_between(self, start_us: int, end_us: int) -> list[int]:
        """Presses with start_us <= pts < end_us, following the loop when the script repeats."""
        presses = self.doorbell_presses_us()
        if not presses:
            return []
        period_us = round(self.period_s * 1_000_000) if self.duration_s is None else None
        if not period_us:
            return [p for p in presses if start_us <= p < end_us]
        found = []
        for loop in range(start_us // period_us, end_us // period_us + 1):
            found += [p + loop * period_us for p in presses
                      if start_us <= p + loop * period_us < end_us]
        return sorted(found)

    def figure_box(self, index: int) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) in pixels of the visible part of the visitor in frame `index`, or None."""
        for visit in self._visits:
            box = self._visible_box(index, visit)
            if box is not None:
                return box
        return None

    def _visible_box(self, index: int, visit: _Visit) -> tuple[int, int, int, int] | None:
        pose = visit.pose(self.script_time_s(index) - visit.event.start_s)
        if pose is None:
            return None
        x0, y0, x1, y1 = _FigureDrawing(pose, visit.look, self._proj).bounds()
        if pose.z_m > HEDGE_Z_M:  # behind the hedge: only the gate shows
            gate_x0, gate_x1 = (int(self._proj.x(x, HEDGE_Z_M)) for x in GATE_X_M)
            x0, x1 = max(x0, gate_x0), min(x1, gate_x1)
        x0, y0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        x1, y1 = min(self.width, math.ceil(x1)), min(self.height, math.ceil(y1))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        return x0, y0, x1 - x0, y1 - y0

    # -- rendering ---------------------------------------------------------------------------

    def _prepare_noise(self) -> None:
        # Fresh Gaussian noise for 2.7 M values per frame would cost tens of ms; instead two
        # pre-drawn pools (the positive and negative halves) are added at a random offset.
        rng = np.random.default_rng([self.seed, 2])
        pad = 64
        noise = rng.normal(0.0, self.noise_sigma, (self.height + pad, self.width + pad, 3))
        self._noise_up = np.clip(np.rint(noise), 0, 255).astype(np.uint8)
        self._noise_down = np.clip(np.rint(-noise), 0, 255).astype(np.uint8)
        self._noise_pad = pad

    def _prepare_headlights(self) -> None:
        # A soft warm-white ellipse centred in an image three frames wide, so that a frame-wide
        # window of it can slide from just left of the frame to just right of it.
        h, w = self.height, self.width
        ys = (np.arange(h, dtype=np.float32)[:, None] - 0.62 * h) / (0.16 * h)
        xs = (np.arange(3 * w, dtype=np.float32)[None, :] - 1.5 * w) / (0.2 * w)
        blob = np.exp(-0.5 * (xs * xs + ys * ys)) * 110.0
        self._headlight = np.dstack([blob * 0.85, blob * 0.95, blob]).astype(np.uint8)

    def _prepare_branch(self) -> None:
        # A branch from the trunk out over the sky, as polyline offsets (pixels) from its root.
        w, h = self.width, self.height
        self._branch_root = np.array([0.87 * w, 0.26 * h])
        tips = [(-0.26 * w, -0.10 * h), (-0.17 * w, -0.02 * h), (-0.12 * w, -0.19 * h)]
        self._branch_lines = [np.array([(0, 0), (tx * 0.5, ty * 0.4), (tx, ty)]) for tx, ty in tips]
        rng = np.random.default_rng([self.seed, 3])
        self._leaves = [  # (offset along a twig 0..1, twig index, radius px)
            (float(rng.uniform(0.35, 1.0)), int(rng.integers(len(tips))),
             float(rng.uniform(0.012, 0.024) * w))
            for _ in range(14)
        ]

    def _branch_angle(self, t_s: float) -> float:
        """Sway in radians: a gentle constant sway, plus a wide faster swing during a gust.

        Fixed frequencies, only the amplitudes follow the gust: changing a frequency on the fly
        (sin(2 pi f(t) t)) would make the branch jitter while the gust builds up.
        """
        gust = max((_ramp_envelope(dt, e.duration_s, 1.5) for e, dt in
                    self._active("branch_gust", t_s)), default=0.0)
        calm = math.radians(1.2) * (math.sin(2 * math.pi * 0.4 * t_s)
                                    + 0.3 * math.sin(2 * math.pi * 1.3 * t_s + 1.0))
        return calm + math.radians(7.0) * gust * math.sin(2 * math.pi * 0.8 * t_s + 0.5)

    def _draw_branch(self, img: np.ndarray, t_s: float) -> None:
        angle = self._branch_angle(t_s)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        twigs = [self._branch_root + line @ rot.T for line in self._branch_lines]
        thickness = max(2, self.width // 160)
        cv2.polylines(img, [np.rint(t).astype(np.int32) for t in twigs], False, (45, 60, 80),
                      thickness, cv2.LINE_AA)
        for along, twig, radius in self._leaves:
            line = twigs[twig]
            p = line[1] + (line[2] - line[1]) * along if along > 0.5 else line[0] + (
                line[1] - line[0]) * (along * 2)
            cv2.circle(img, (round(p[0]), round(p[1])), round(radius), (40, 105, 50), -1,
                       cv2.LINE_AA)

    def _draw_visitors(self, img: np.ndarray, t_s: float, far: bool) -> None:
        """Visitors beyond the tree (far=True) or nearer than it: the branch goes in between."""
        for visit in self._visits:
            pose = visit.pose(t_s - visit.event.start_s)
            if pose is None or (pose.z_m > TREE_Z_M) != far:
                continue
            figure = _FigureDrawing(pose, visit.look, self._proj)
            figure.draw(img)
            if pose.z_m > HEDGE_Z_M:
                self._hide_behind_hedge(img, figure)

    def _hide_behind_hedge(self, img: np.ndarray, figure: _FigureDrawing) -> None:
        # Someone beyond the hedge lies entirely within the hedge's rows (it is taller than a
        # person), so restoring the background there, except in the gate, hides them.
        proj = self._proj
        top = int(proj.y(HEDGE_HEIGHT_M, HEDGE_Z_M))
        bottom = int(proj.y(0.0, HEDGE_Z_M)) + 1
        gate_x0, gate_x1 = (int(proj.x(x, HEDGE_Z_M)) for x in GATE_X_M)
        x0, _, x1, _ = figure.bounds()
        x0, x1 = max(0, math.floor(x0)), min(self.width, math.ceil(x1) + 1)
        for a, b in ((x0, min(x1, gate_x0)), (max(x0, gate_x1), x1)):
            if b > a:
                img[top:bottom, a:b] = self._background[top:bottom, a:b]

    def _gain(self, t_s: float) -> float:
        """Global brightness factor from clouds, exposure steps and the dull light of rain."""
        gain = 1.0
        for e, dt in self._active("cloud", t_s):
            gain *= 1.0 - 0.3 * _ramp_envelope(dt, e.duration_s, 1.0)
        for e, _ in self._active("exposure_step", t_s):
            gain *= self._exposure_gain[e]
        for e, dt in self._active("rain", t_s):
            gain *= 1.0 - 0.15 * _ramp_envelope(dt, e.duration_s, 1.5)
        return gain

    def _draw_headlights(self, img: np.ndarray, t_s: float) -> None:
        for e, dt in self._active("headlights", t_s):
            progress = dt / e.duration_s  # the patch sweeps left to right
            strength = math.sin(math.pi * progress) ** 0.5
            centre = int((-0.2 + 1.4 * progress) * self.width)
            start = round(1.5 * self.width) - centre
            window = self._headlight[:, start:start + self.width]
            cv2.addWeighted(img, 1.0, window, strength, 0.0, dst=img)

    def _draw_rain(self, img: np.ndarray, t_s: float, rng: np.random.Generator) -> None:
        for e, dt in self._active("rain", t_s):
            count = int(300 * _ramp_envelope(dt, e.duration_s, 1.5) * self.width / 1280)
            if count == 0:
                continue
            starts = rng.uniform((0, 0), (self.width, self.height), (count, 2))
            lengths = rng.uniform(0.02, 0.05, (count, 1)) * self.height
            direction = np.array([0.25, 1.0]) / math.hypot(0.25, 1.0)  # wind-blown
            ends = starts + lengths * direction
            segments = np.rint(np.stack([starts, ends], axis=1)).astype(np.int32)
            cv2.polylines(img, list(segments), False, (185, 185, 180), 1)

    def _add_noise(self, img: np.ndarray, rng: np.random.Generator) -> None:
        if self.noise_sigma <= 0:
            return
        h, w = self.height, self.width
        oy, ox, oy2, ox2 = rng.integers(0, self._noise_pad, 4)
        cv2.add(img, self._noise_up[oy:oy + h, ox:ox + w], dst=img)
        cv2.subtract(img, self._noise_down[oy2:oy2 + h, ox2:ox2 + w], dst=img)

    def render(self, index: int) -> np.ndarray:
        """The BGR image of frame `index`."""
        t_s = self.script_time_s(index)
        rng = np.random.default_rng([self.seed, 5, index])
        img = self._background.copy()
        self._draw_visitors(img, t_s, far=True)
        self._draw_branch(img, t_s)
        self._draw_visitors(img, t_s, far=False)
        gain = self._gain(t_s)
        if gain != 1.0:
            cv2.convertScaleAbs(img, dst=img, alpha=gain)
        self._draw_headlights(img, t_s)
        self._draw_rain(img, t_s, rng)
        self._add_noise(img, rng)
        return img

    def frame_at(self, index: int) -> Frame:
        return Frame(self.render(index), self.pts_us(index))

    # -- FrameSource -------------------------------------------------------------------------

    def frame_count(self) -> int | None:
        """Frames frames() will yield, or None when it runs forever."""
        if self.duration_s is None:
            return None
        return max(0, round(self.duration_s * self.fps))

    def frames(self) -> Iterator[Frame]:
        count = self.frame_count()
        started = time.monotonic()
        index = 0
        while not self._closed and (count is None or index < count):
            frame = self.frame_at(index)
            if self.realtime:
                # Sleep to the frame's own deadline (not a fixed interval), so pacing never drifts.
                delay = started + index / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield frame
            index += 1

    def close(self) -> None:
        self._closed = True
