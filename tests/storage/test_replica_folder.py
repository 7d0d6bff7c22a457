"""Reading a replica folder for the hub (storage.replica_folder): clip states from the files
alone, a growing clip seen as it grows, settled day folders not listed again, and nothing
written into the folder."""

import os
import time

from doorbell.storage.age import X25519Identity
from doorbell.storage.clipid import clip_paths
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex
from doorbell.storage.replica_folder import ReplicaFolder, refresh_index

START_US = 1_714_564_800_000_000


def _replica(tmp_path):
    """A home written by the real ClipStore, used as the replica folder it would be copied to."""
    root = tmp_path / "replica"
    index = ClipIndex(tmp_path / "device.sqlite3")
    store = ClipStore(root / "clips", index, [X25519Identity.generate().recipient])
    return root, store, index


def _age_folders(root, seconds_ago: float) -> None:
    then = time.time() - seconds_ago
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            os.utime(path, (then, then))


def test_states_sizes_and_a_growing_clip_from_the_files_alone(tmp_path):
    root, store, device_index = _replica(tmp_path)
    sealed = store.begin_clip(START_US)
    sealed.video.write(b"a" * 100_000)
    sealed = sealed.finish(b"jpeg", {"trigger": "motion"})
    growing = store.begin_clip(START_US + 60_000_000)
    growing.video.write(b"b" * 150_000)
    growing.sync()
    broken = clip_paths(root / "clips", "20240501T120500Z-abcdef")["video"]
    broken.write_bytes(b"not an age file")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    folder = ReplicaFolder(root)
    with ClipIndex(tmp_path / "hub.sqlite3") as index:
        first = folder.scan()
        assert refresh_index(first, index) == 3
        rows = {row.id: row for row in index.clips()}
        assert rows[sealed.id].state == "complete"
        assert rows[sealed.id].size_bytes == sum(
            p.stat().st_size for p in clip_paths(root / "clips", sealed.id).values())
        assert rows[growing.clip_id].state == "truncated"
        assert rows["20240501T120500Z-abcdef"].state == "damaged"

        growing.video.write(b"c" * 200_000)
        growing.sync()
        second = folder.scan(first)
        assert refresh_index(second, index) == 1  # the growing clip, grown
        assert index.get(growing.clip_id).size_bytes == second.clips[growing.clip_id].size_bytes
        assert refresh_index(folder.scan(second), index) == 0
    # the scans changed nothing (the growing partial aside: the test itself wrote to it)
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert {p: t for p, t in after.items() if not p.name.endswith(".partial")} == \
        {p: t for p, t in before.items() if not p.name.endswith(".partial")}
    device_index.close()


def test_a_settled_day_folder_is_reused_until_a_file_appears_in_it(tmp_path):
    root, store, device_index = _replica(tmp_path)
    first_clip = store.begin_clip(START_US)
    first_clip.video.write(b"a" * 10_000)
    first_clip = first_clip.finish(None, {"trigger": "motion"})
    _age_folders(root, 3600)
    folder = ReplicaFolder(root)
    first = folder.scan()
    day = clip_paths(root / "clips", first_clip.id)["video"].parent
    assert first.listings[day].settled
    again = folder.scan(first)
    assert again.listings[day] is first.listings[day]  # not listed again

    later = store.begin_clip(START_US + 120_000_000)  # a new file: the folder's time changes
    later.video.write(b"b" * 10_000)
    later.sync()
    seen = folder.scan(again)
    assert set(seen.clips) == {first_clip.id, later.clip_id}
    assert not seen.listings[day].settled  # a partial in it: listed every time
    device_index.close()


def test_a_missing_folder_is_one_sentence(tmp_path):
    missing = tmp_path / "nowhere"
    assert ReplicaFolder(missing).problem() == f"{missing} is not a folder"
    assert ReplicaFolder(tmp_path).problem() is None
