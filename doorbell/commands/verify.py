"""`doorbell verify [--json] [--user NAME]`: the integrity of every stored file.

Without a key: every file's header parses and its chunk layout fits its size, partial files
are flagged, and the index agrees with the files (each clip's files hold the bytes recorded
for it). With --user, every chunk is authenticated.

A clip the index says is truncated (an interrupted recording, recovered at start) is expected
to be cut short: it passes when its files are what was recorded and its header is valid, and
with a key when everything after its authenticated prefix is only the cut (no later chunk
authenticates again). Damage anywhere else fails, as it does for a complete clip.
"""

import json

from doorbell.storage.clipid import SUFFIXES, VIDEO_SUFFIX, clip_paths
from doorbell.storage.clipreader import authenticate_file
from doorbell.storage.durable import PARTIAL_SUFFIX
from doorbell.storage.home import Home
from doorbell.storage.index import ClipIndex
from doorbell.storage.inspect import inspect_file

from ..errors import CommandError
from .unlock import unlock_member


def run(args) -> int:
    home = Home.resolve(args.home)
    if not home.is_initialised():
        raise CommandError(f"{home.root} is not initialised: run 'doorbell init' first")
    identities = [unlock_member(home, args.user, args.passphrase_file)] if args.user else []
    files = sorted(p for p in home.clips_dir.rglob("*") if p.is_file())
    with ClipIndex(home.index_file) as index:
        rows = {clip.id: clip for clip in index.clips()}
    problems: list[dict] = []
    checked = 0
    video_ids = set()
    for path in files:
        name = path.relative_to(home.clips_dir).as_posix()
        if name.endswith(PARTIAL_SUFFIX):
            problems.append({"file": name, "problem": "partial file (a clip still being written, "
                             "or interrupted: the recorder recovers it at start)"})
            continue
        if not name.endswith(SUFFIXES):
            problems.append({"file": name, "problem": "not a clip file"})
            continue
        checked += 1
        interrupted = False
        if name.endswith(VIDEO_SUFFIX):
            clip_id = path.name.removesuffix(VIDEO_SUFFIX)
            video_ids.add(clip_id)
            interrupted = clip_id in rows and rows[clip_id].state == "truncated"
        shape = inspect_file(path)
        # A cut file's layout (no whole chunk, a short last chunk) is expected of an interrupted
        # clip; a header that does not parse is not.
        if not shape.ok and not (interrupted and shape.recipients):
            problems.append({"file": name, "problem": shape.problem})
        elif identities:
            ok, problem = authenticate_file(path, identities, truncated=interrupted)
            if not ok:
                problems.append({"file": name, "problem": problem})
    for clip_id in sorted(set(rows) - video_ids):
        problems.append({"file": clip_id, "problem": "in the index but its video file is missing"})
    for clip_id in sorted(video_ids - set(rows)):
        problems.append({"file": clip_id, "problem": "video file not in the index"})
    for clip_id in sorted(video_ids & set(rows)):
        paths = clip_paths(home.clips_dir, clip_id)
        on_disk = sum(p.stat().st_size for p in paths.values() if p.exists())
        if on_disk != rows[clip_id].size_bytes:
            problems.append({
                "file": paths["video"].relative_to(home.clips_dir).as_posix(),
                "problem": f"the clip's files hold {on_disk} bytes but {rows[clip_id].size_bytes} "
                "were recorded when it was saved: cut or changed",
            })
    truncated = sorted(cid for cid, row in rows.items() if row.state != "complete")
    result = {
        "ok": not problems,
        "files_checked": checked,
        "authenticated": bool(identities),
        "truncated_clips": truncated,
        "problems": problems,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        depth = "authenticated every chunk" if identities else "checked structure (no key)"
        print(f"{checked} file(s) {depth}; {len(truncated)} truncated clip(s) recorded as such.")
        for problem in problems:
            print(f"PROBLEM {problem['file']}: {problem['problem']}")
        print("OK" if not problems else f"{len(problems)} problem(s) found.")
    return 0 if not problems else 1
