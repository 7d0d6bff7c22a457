"""`doorbell record` as a user runs it: a subprocess over the synthetic scene and real footage.

Clips cover every scripted visit; real footage decrypts with the stock `age` CLI; no plaintext
footage ever appears under the home while recording; the recorder process cannot open an
identity file; kill -9 and SIGTERM mid-clip. The home is tests/recorder_home.py's
`recorder_home` (a 640x360 camera), not tests/cli's freshly initialised `home`.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

from doorbell.camera.synthetic import SyntheticScene
from tests.age_cli import NO_HYBRID_AGE, age_for
from tests.recorder_home import FPS, HEIGHT, WIDTH

pytestmark = pytest.mark.slow

AGE_MAGIC = b"age-encryption.org/v1"
VTEST_FPS = 10  # vtest.avi: 768x576 at 10 fps, about 80 s of people walking
NOT_FOOTAGE = ("config.toml", "recipients.txt")  # plus audit.jsonl* and index.sqlite3*


def wait_until(condition, timeout_s: float, interval_s: float = 0.1, process=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            return condition()
        time.sleep(interval_s)
    return condition()


def partial_clip(home, min_bytes: int = 0) -> Path | None:
    for path in home.clips_dir.rglob("*.mp4.age.partial"):
        try:
            if path.stat().st_size >= min_bytes:
                return path
        except FileNotFoundError:
            pass
    return None


def clips_list(home) -> list[dict]:
    result = home.doorbell("clips", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def log_text(log: Path) -> str:
    return log.read_text(errors="replace")


# -- plaintext: what is on disk while recording ---------------------------------------------------


def is_exempt(path: Path, home_root: Path) -> bool:
    """Files that are not footage: settings, public keys, the audit log, the key-less index."""
    name = path.name
    return path.parent == home_root and (
        name in NOT_FOOTAGE or name.startswith("audit.jsonl") or name.startswith("index.sqlite3"))


def scan_for_plaintext(home_root: Path) -> tuple[list[str], int]:
    """([problems], how many in-progress clip files were seen) for every file under the home.

    No file may start like a plaintext MP4 (`ftyp` at bytes 4..8), JPEG or JSON document, except
    the ones that are not footage; everything under clips/ (and identities/) is an age file.
    """
    problems, partials = [], 0
    for path in home_root.rglob("*"):
        try:
            if not path.is_file():
                continue
            with path.open("rb") as handle:
                head = handle.read(len(AGE_MAGIC))
        except (FileNotFoundError, IsADirectoryError):
            continue  # renamed or deleted while we looked
        relative = path.relative_to(home_root)
        if path.name.endswith(".partial"):
            partials += 1
        if is_exempt(path, home_root):
            continue
        if head[4:8] == b"ftyp":
            problems.append(f"{relative} is a plaintext MP4")
        if head[:3] == b"\xff\xd8\xff":
            problems.append(f"{relative} is a plaintext JPEG")
        if head[:1] in (b"{", b"["):
            problems.append(f"{relative} is plaintext JSON")
        # footage and keys are age files; one still being written may hold only the start of
        # its header so far
        in_store = relative.parts[0] in ("clips", "identities")
        if in_store and not (head.startswith(AGE_MAGIC) or AGE_MAGIC.startswith(head)):
            problems.append(f"{relative} is not an age file: starts {head[:12]!r}")
    return problems, partials


def iso_us(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e6)


def wall_clock_origin_us(clips, presses_us: list[int], logged_us: int) -> int:
    """The recorder's wall-clock origin: wall time = origin + source pts.

    The origin is the wall time of the first frame, just after the recorder logs "camera open".
    Clips start at keyframes, a whole number of seconds of source time after the first frame
    (15 fps, a keyframe every 15 frames), so every clip's start_us lies on the origin's
    whole-second grid. A recorded press pins the origin exactly (wall = origin + press pts, to
    the ms): the right scripted press is the one that lands on that grid. Without a press, the
    grid point just after the log line is taken.
    """
    grid = clips[0].start_us % 1_000_000
    assert {c.start_us % 1_000_000 for c in clips} == {grid}, "clip starts are off the grid"

    def snap(value: int) -> int:
        return value - ((value - grid + 500_000) % 1_000_000 - 500_000)

    walls = [iso_us(p) for c in clips for p in c.meta["doorbell_presses"]]
    candidates = {snap(w - p) for w in walls for p in presses_us
                  if abs(snap(w - p) - (w - p)) <= 2_000}
    if candidates:
        assert len(candidates) == 1, candidates
        origin = candidates.pop()
    else:
        origin = snap(logged_us + 300_000)
    assert -500_000 <= origin - logged_us <= 10_000_000, (origin, logged_us)
    return origin


def camera_open_time_us(log: str) -> int:
    """Wall time of the recorder's 'camera open' log line (local time, ms precision)."""
    match = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+: camera open", log, re.M)
    assert match, log
    return round(datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1e6)


def test_plaintext_scanner_flags_what_it_must(tmp_path):
    """The scanner below can fail: each kind of plaintext footage is reported."""
    (tmp_path / "clips" / "2024" / "05" / "01").mkdir(parents=True)
    day = tmp_path / "clips" / "2024" / "05" / "01"
    (day / "a.mp4.age").write_bytes(b"\x00\x00\x00\x1cftypisom" + bytes(20))
    (day / "b.jpg.age.partial").write_bytes(b"\xff\xd8\xff\xe0" + bytes(20))
    (day / "c.json.age").write_bytes(b'{"start": 1}')
    (day / "d.mp4.age.partial").write_bytes(b"age-encryption.org/")  # header being written
    (day / "e.mp4.age").write_bytes(AGE_MAGIC + b"\n-> X25519 abc")
    (tmp_path / "stray.jpg").write_bytes(b"\xff\xd8\xff\xdb")
    (tmp_path / "config.toml").write_text("[camera]\n")
    (tmp_path / "audit.jsonl").write_text('{"seq": 1}\n')
    problems, partials = scan_for_plaintext(tmp_path)
    assert partials == 2
    assert sorted(p.split(" ")[0].rsplit("/", 1)[-1] for p in problems) == [
        "a.mp4.age", "a.mp4.age", "b.jpg.age.partial", "b.jpg.age.partial", "c.json.age",
        "c.json.age", "stray.jpg"]


def test_cli_synthetic_run_covers_every_visit_and_never_writes_plaintext(recorder_home, capsys):
    scene = SyntheticScene(64, 48, FPS)  # the script and its ground truth (any size)
    truths = SyntheticScene(WIDTH, HEIGHT, FPS).ground_truth()
    process, log = recorder_home.start("record", "--source", "synthetic", "--until-eof")
    scans = partial_scans = 0
    problems: list[str] = []
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        found, partials = scan_for_plaintext(recorder_home.root)
        problems += found
        scans += 1
        partial_scans += partials > 0
        time.sleep(0.1)
    found, _ = scan_for_plaintext(recorder_home.root)
    problems += found
    assert process.wait(timeout=30) == 0, log_text(log)
    text = log_text(log)
    assert "Traceback" not in text
    assert problems == [], problems[:10]
    assert scans > 20 and partial_scans > 5, (scans, partial_scans)  # we looked mid-clip

    # the live frame went to the runtime directory, never under the home
    assert (recorder_home.run_dir / "live.jpg").is_file()
    assert not [p for p in recorder_home.root.rglob("*") if p.suffix in (".jpg", ".mp4", ".json")]

    # Map clips to the script: see wall_clock_origin_us.
    clips = recorder_home.clips()
    assert clips, text
    origin = wall_clock_origin_us(clips, scene.doorbell_presses_us(), camera_open_time_us(text))
    # every press the metadata records is a scripted press, to the millisecond
    for clip in clips:
        for wall in map(iso_us, clip.meta["doorbell_presses"]):
            assert any(abs(wall - origin - p) <= 2_000 for p in scene.doorbell_presses_us())

    uncovered = [t for t in truths
                 if not any(c.start_us - origin <= t.start_us and c.end_us - origin >= t.end_us
                            for c in clips)]
    false = [c for c in clips
             if not any(c.start_us - origin <= t.end_us and c.end_us - origin >= t.start_us
                        for t in truths)]
    recall = 1 - len(uncovered) / len(truths)
    with capsys.disabled():
        print(f"\n[doorbell record --source synthetic --until-eof] event recall {recall:.3f}, "
              f"false clips {len(false)} ({len(false) / (scene.period_s / 3600):.1f} per hour), "
              f"{scans} plaintext scans during the run")
    assert uncovered == [], uncovered
    assert false == []
    for truth in (t for t in truths if t.kind == "doorbell"):
        clip = next(c for c in clips if c.start_us - origin <= truth.pressed_at_us
                    <= c.end_us - origin)
        assert clip.trigger == "doorbell"
    assert [c["state"] for c in clips_list(recorder_home)] == ["complete"] * len(clips)


# -- the write-only recorder ----------------------------------------------------------------------


GUARD_PROBE = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path

    import doorbell.camera.recorder

    home = Path(sys.argv[1])
    target = home / "identities" / "owner.age"
    link = Path(sys.argv[2])

    def attempt(action):
        try:
            action()
            return "opened"
        except PermissionError:
            return "denied"

    results = {"before the guard": attempt(lambda: target.read_bytes())}

    def probe(self, open_source, stop, until_eof=False):
        os.chdir(home)
        results.update({
            "open": attempt(lambda: open(target, "rb").close()),
            "read_bytes": attempt(target.read_bytes),
            "os.open": attempt(lambda: os.close(os.open(target, os.O_RDONLY))),
            "relative path": attempt(lambda: open("identities/owner.age", "rb").close()),
            "symlink": attempt(lambda: open(link, "rb").close()),
            "new file in identities": attempt(
                lambda: open(home / "identities" / "x.age", "wb").close()),
            "recipients.txt": attempt((home / "recipients.txt").read_bytes),
        })
        print("PROBE " + json.dumps(results), flush=True)

    doorbell.camera.recorder.Recorder.run = probe
    from doorbell.cli import main

    sys.exit(main(["record", "--home", str(home), "--source", "synthetic", "--until-eof"]))
""")


def test_recorder_process_cannot_open_identity_files(recorder_home):
    script = recorder_home.scratch / "guard_probe.py"
    script.write_text(GUARD_PROBE)
    link = recorder_home.scratch / "innocent.age"
    link.symlink_to(recorder_home.identities_dir / "owner.age")
    env = recorder_home.env(PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    result = subprocess.run([sys.executable, str(script), str(recorder_home.root), str(link)],
                            capture_output=True, text=True, timeout=120, env=env,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("PROBE "))
    results = json.loads(line.removeprefix("PROBE "))
    assert results.pop("before the guard") == "opened"  # the file itself is readable here
    assert results.pop("recipients.txt") == "opened"  # the public keys are what it needs
    assert results == dict.fromkeys(results, "denied"), results
    assert not (recorder_home.identities_dir / "x.age").exists()


# -- real footage -------------------------------------------------------------------------------


def age_decrypt(identity_file: Path, encrypted: Path, output: Path) -> None:
    age = age_for(identity_file.read_text()) or pytest.skip(NO_HYBRID_AGE)
    result = subprocess.run([age, "-d", "-i", str(identity_file), "-o", str(output),
                             str(encrypted)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_vtest_clips_decrypt_with_the_stock_age_cli_and_play(vtest_recording, mp4):
    if not Path("/usr/bin/age").exists() and shutil.which("age") is None:
        pytest.skip("the age CLI is not installed (Debian package age)")
    home, result = vtest_recording
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = home.index_rows()
    assert rows, f"vtest.avi produced no clip\n{result.stderr}"
    identity = home.identity_file()
    assert identity.stat().st_mode & 0o777 == 0o600
    covered_s = 0.0
    from doorbell.storage.clipid import clip_paths

    for row in rows:
        assert row.state == "complete"
        paths = clip_paths(home.clips_dir, row.id)
        out = home.scratch / f"{row.id}.mp4"
        age_decrypt(identity, paths["video"], out)
        data = out.read_bytes()
        assert data[4:8] == b"ftyp"
        frames, error = mp4.decode(data)
        assert error is None and len(frames) > 0
        assert data == home.video(row.id)[0]  # the stock tool and ours agree
        meta_out = home.scratch / f"{row.id}.json"
        age_decrypt(identity, paths["metadata"], meta_out)
        meta = json.loads(meta_out.read_text())
        assert meta["trigger"] == "motion"
        assert (frames[0].width, frames[0].height) == (768, 576)  # the file's own size
        assert len(frames) == round(meta["duration_s"] * VTEST_FPS)
        covered_s += meta["duration_s"]
        thumb_out = home.scratch / f"{row.id}.jpg"
        age_decrypt(identity, paths["thumbnail"], thumb_out)
        assert thumb_out.read_bytes()[:3] == b"\xff\xd8\xff"
    # people walk through vtest.avi (about 80 s at 10 fps) nearly all the time
    assert covered_s >= 40, f"clips cover only {covered_s:.1f} s of vtest.avi"


def test_clips_of_a_10_fps_file_keep_its_frame_rate(vtest_recording, mp4):
    home, result = vtest_recording
    assert result.returncode == 0, result.stderr
    clip = home.clips()[0]
    frames, _ = mp4.decode(home.video(clip.id)[0])
    keyframes = [i for i, f in enumerate(frames) if f.key_frame]
    assert {b - a for a, b in zip(keyframes, keyframes[1:], strict=False)} == {VTEST_FPS}
    assert clip.meta["fps"] == VTEST_FPS


@pytest.mark.parametrize("name", ["tree.avi", "bikes.mp4"])
def test_other_footage_runs_clean(recorder_home, footage, name):
    source = footage(name)
    result = recorder_home.doorbell("record", "--source", str(source), "--until-eof", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "stopped:" in result.stderr
    for clip in clips_list(recorder_home):
        assert clip["state"] == "complete"
    assert not list(recorder_home.clips_dir.rglob("*.partial"))


# -- interrupted recording ----------------------------------------------------------------------


def test_kill_9_mid_clip_keeps_the_prefix_and_restart_lists_it_truncated(recorder_home, mp4):
    # real time, like a camera
    process, log = recorder_home.start("record", "--source", "synthetic")
    partial = wait_until(lambda: partial_clip(recorder_home, 200_000), 60, process=process)
    assert partial, f"no clip grew past 200 KB\n{log_text(log)}"
    clip_id = partial.name.removesuffix(".mp4.age.partial")
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert partial.exists()

    # restart: the recorder reconciles before it records
    restarted, restart_log = recorder_home.start("record", "--source", "synthetic",
                                                 log_name="again.log")
    assert wait_until(lambda: "camera open" in log_text(restart_log), 30, process=restarted), \
        log_text(restart_log)
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=30) == 0, log_text(restart_log)
    assert f"clip {clip_id} was interrupted" in log_text(restart_log)

    listed = {c["id"]: c for c in clips_list(recorder_home)}
    assert listed[clip_id]["state"] == "truncated"
    assert not partial.exists()

    video, truncated = recorder_home.video(clip_id)
    assert truncated
    assert video[4:8] == b"ftyp"
    frames, error = mp4.decode(video)
    complete = mp4.complete_frames(video)
    assert complete >= FPS, "the recovered prefix holds no complete fragment"
    present = sum(n for _, _, n in mp4.fragments(video))
    assert complete <= len(frames) <= present, (len(frames), complete, present, error)
    assert frames[0].key_frame and (frames[0].width, frames[0].height) == (WIDTH, HEIGHT)

    exported = recorder_home.scratch / "recovered.mp4"
    result = recorder_home.doorbell("clips", "export", clip_id, "-o", str(exported),
                                    "--passphrase-file", str(recorder_home.passphrase_file))
    assert result.returncode == 0, result.stderr
    assert "recovered prefix" in result.stdout
    assert exported.read_bytes() == video


def test_sigterm_mid_clip_seals_the_clip(recorder_home, mp4):
    from doorbell.storage.age.reader import decrypt
    from doorbell.storage.clipid import clip_paths

    process, log = recorder_home.start("record", "--source", "synthetic")
    partial = wait_until(lambda: partial_clip(recorder_home, 70_000), 60, process=process)
    assert partial, log_text(log)
    clip_id = partial.name.removesuffix(".mp4.age.partial")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_text(log)
    assert "Traceback" not in log_text(log)

    listed = {c["id"]: c for c in clips_list(recorder_home)}
    assert listed[clip_id]["state"] == "complete"
    assert not list(recorder_home.clips_dir.rglob("*.partial"))
    with clip_paths(recorder_home.clips_dir, clip_id)["video"].open("rb") as handle:
        # strict: the final chunk is there
        video = decrypt(handle, [recorder_home.identity()]).read()
    frames, error = mp4.decode(video)
    assert error is None
    meta = recorder_home.clips()[0].meta
    assert len(frames) == round(meta["duration_s"] * FPS)
    assert recorder_home.thumbnail(clip_id)[:3] == b"\xff\xd8\xff"
    assert os.stat(clip_paths(recorder_home.clips_dir, clip_id)["video"]).st_size == \
        listed[clip_id]["size_bytes"] - sum(
            os.stat(p).st_size for k, p in clip_paths(recorder_home.clips_dir, clip_id).items()
            if k != "video")
