"""`doorbell clips list [--json] | export ID -o FILE | delete ID`."""

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from doorbell.storage.clipid import check_clip_id
from doorbell.storage.clipvideo import open_clip_video
from doorbell.storage.deletion import delete_clip
from doorbell.storage.home import Home
from doorbell.storage.index import ClipIndex

from ..audit_trail import cli_actor, intact_audit_log
from ..errors import CommandError
from .unlock import unlock_member


def _home(args) -> Home:
    home = Home.resolve(args.home)
    if not home.is_initialised():
        raise CommandError(f"{home.root} is not initialised: run 'doorbell init' first")
    return home


def _iso(start_us: int) -> str:
    return datetime.fromtimestamp(start_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_list(args) -> int:
    home = _home(args)
    with ClipIndex(home.index_file) as index:
        clips = index.clips()
    if args.json:
        rows = [
            {"id": c.id, "start": _iso(c.start_us), "start_us": c.start_us, "state": c.state,
             "size_bytes": c.size_bytes}
            for c in clips
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not clips:
        print("No clips.")
    for clip in clips:
        print(f"{clip.id}  {_iso(clip.start_us)}  {clip.state:<9}  {clip.size_bytes:>12,} bytes")
    return 0


def run_export(args) -> int:
    home = _home(args)
    clip_id = check_clip_id(args.clip_id)
    audit = intact_audit_log(home)
    identity = unlock_member(home, args.user, args.passphrase_file)
    output = Path(args.output)
    if output.exists():
        raise CommandError(f"{output} exists already: choose another file name")
    video = open_clip_video(home.clips_dir, clip_id, [identity])
    digest = hashlib.sha256()
    temporary = output.with_name(output.name + ".partial")
    try:
        with temporary.open("xb") as handle:
            for block in video.iter_range(0, video.size_bytes - 1, 1024 * 1024):
                digest.update(block)
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, output)
    finally:
        video.close()
        temporary.unlink(missing_ok=True)
    audit.append(
        cli_actor(args.user), "clip.export", clip=clip_id, sha256=digest.hexdigest(),
        truncated=video.truncated, output=str(output.absolute()),
    )
    note = " (recovered prefix of an interrupted clip)" if video.truncated else ""
    print(f"Exported {clip_id} to {output}{note}\nSHA-256 {digest.hexdigest()}")
    return 0


def run_delete(args) -> int:
    home = _home(args)
    clip_id = check_clip_id(args.clip_id)
    audit = intact_audit_log(home)
    with ClipIndex(home.index_file) as index:
        if not delete_clip(home.clips_dir, index, clip_id):
            raise CommandError(f"clip {clip_id} does not exist")
    audit.append(cli_actor(), "clip.delete", clip=clip_id)
    print(f"Deleted {clip_id}. On flash storage deletion is not secure erasure; see the README.")
    return 0
