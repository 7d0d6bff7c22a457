"""`doorbell export-all --to DIR`, run as an owner backing up to a USB stick would run it.

The backup is the home's ciphertext byte for byte (nothing decrypted, no private key copied),
checks out with `doorbell verify` and `doorbell audit --verify` pointed at it, decrypts with the
stock age CLI and the recovery key, and a second run copies only what is new or grew.
"""

import errno
import hashlib
import io
import os
import subprocess
from pathlib import Path

import pytest

from doorbell import cli
from doorbell.commands.export_all import TEMPORARY_SUFFIX
from tests.age_cli import hybrid_age_dir
from tests.small_disk import mount_tmpfs

from .conftest import START_US, assert_ok, assert_one_sentence

MINUTE_US = 60_000_000


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): digest(p) for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def two_clips(home):
    ids = [home.write_clip(os.urandom(150_000), START_US),
           home.write_clip(os.urandom(90_000), START_US + MINUTE_US)]
    return ids


def test_the_backup_is_the_stored_ciphertext_and_checks_out(home, two_clips, tmp_path):
    target = tmp_path / "usb" / "doorbell-backup"

    result = assert_ok(home.run("export-all", "--to", str(target)))

    stored = files_under(home.root)
    backup = files_under(target)
    clip_files = {k for k in stored if k.startswith("clips/")}
    assert len(clip_files) == 6  # video, thumbnail and metadata of each clip
    for name in clip_files | {"recipients.txt", "audit.jsonl", "audit.jsonl.head"}:
        assert backup[name] == stored[name], name  # byte for byte: never decrypted
    assert "index.sqlite3" in backup
    # No private key, no TLS key, no config (a camera URL may carry a password).
    assert not any(k.startswith(("identities/", "tls/")) or k == "config.toml" for k in backup)
    assert not any(k.endswith(".export-tmp") for k in backup)
    assert "file(s) copied" in result.stdout
    # The backup is a home the checking commands understand.
    listed = assert_ok(home.run("clips", "list", "--json", "--home", str(target))).stdout
    assert all(clip_id in listed for clip_id in two_clips)
    assert "OK" in assert_ok(home.run("verify", "--home", str(target))).stdout
    assert "intact" in assert_ok(home.run("audit", "--verify", "--home", str(target))).stdout
    # The export is on the record, in the device's log and the backup's.
    assert home.audit_entries()[-1].action == "export_all"
    assert "export_all" in (target / "audit.jsonl").read_text()


def test_the_recovery_key_and_stock_age_decrypt_the_backup(home, tmp_path):
    age_dir = hybrid_age_dir()
    if age_dir is None:
        pytest.skip("no age 1.3.0 or later (post-quantum keys): run deploy/dev-setup.sh")
    video = os.urandom(200_000)
    clip_id = home.write_clip(video)
    target = tmp_path / "backup"
    assert_ok(home.run("export-all", "--to", str(target)))
    identity = tmp_path / "recovery.txt"
    identity.write_text(home.recovery_key + "\n")
    copy = target / home.video_path(clip_id).relative_to(home.root)
    result = subprocess.run([str(age_dir / "age"), "-d", "-i", str(identity), str(copy)],
                            capture_output=True, timeout=60, check=False,
                            env={**os.environ, "PATH": f"{age_dir}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == video


def test_a_second_run_copies_only_what_is_new_or_grew(home, two_clips, tmp_path):
    target = tmp_path / "backup"
    assert_ok(home.run("export-all", "--to", str(target)))
    first = {k: (target / k).stat().st_ino for k in files_under(target)}
    # One clip more, and a copy cut short (as by a USB stick pulled out before this tool was
    # atomic): both are fixed; nothing else is rewritten.
    new_id = home.write_clip(os.urandom(70_000), START_US + 2 * MINUTE_US)
    cut = target / home.video_path(two_clips[0]).relative_to(home.root)
    cut.write_bytes(cut.read_bytes()[:40_000])
    cut_inode = cut.stat().st_ino

    result = assert_ok(home.run("export-all", "--to", str(target)))

    stored, backup = files_under(home.root), files_under(target)
    for name in (k for k in stored if k.startswith("clips/")):
        assert backup[name] == stored[name], name
    assert cut.stat().st_ino != cut_inode  # replaced whole, by rename
    new_files = {k for k in backup if new_id in k}
    assert len(new_files) == 3
    unchanged_clip_files = {k for k in first if k.startswith("clips/")} - \
        {cut.relative_to(target).as_posix()}
    for name in unchanged_clip_files:
        assert (target / name).stat().st_ino == first[name], f"{name} was copied again"
    # 3 new clip files, the cut video, the grown audit log and its head, the index.
    assert "7 file(s) copied" in result.stdout, result.stdout


def test_a_backup_file_that_differs_is_left_alone_and_reported(home, two_clips, tmp_path):
    target = tmp_path / "backup"
    assert_ok(home.run("export-all", "--to", str(target)))
    changed = target / home.video_path(two_clips[1]).relative_to(home.root)
    other = bytearray(changed.read_bytes())
    other[5000] ^= 0xFF  # same size, other bytes: which copy is the damaged one?
    changed.write_bytes(bytes(other))

    line = assert_one_sentence(home.run("export-all", "--to", str(target)))

    assert "1 file(s)" in line and changed.name in line and "left alone" in line
    assert changed.read_bytes() == bytes(other)


def test_the_clip_being_recorded_is_left_for_the_next_run(home, tmp_path):
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.home import Home
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients

    layout = Home(home.root)
    with ClipIndex(layout.index_file) as index:
        store = ClipStore(layout.clips_dir, index, read_recipients(layout.recipients_file))
        writer = store.begin_clip(START_US)
        writer.video.write(os.urandom(100_000))
        result = assert_ok(home.run("export-all", "--to", str(tmp_path / "backup")))
        writer.finish(None, {})
    assert "1 clip being recorded is left for the next run" in result.stdout
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "backup").rglob("*"))


@pytest.mark.parametrize("inside", ["", "backups", "clips/2024"])
def test_a_target_inside_the_data_directory_is_refused(home, inside):
    target = home.root / inside if inside else home.root
    before = files_under(home.root)

    line = assert_one_sentence(home.run("export-all", "--to", str(target)))

    assert "inside the data directory" in line
    assert files_under(home.root) == before


def test_a_symlink_into_the_data_directory_is_refused(home, tmp_path):
    link = tmp_path / "looks-elsewhere"
    link.symlink_to(home.root / "clips")
    line = assert_one_sentence(home.run("export-all", "--to", str(link / "backup")))
    assert "inside the data directory" in line


def test_a_full_target_is_one_sentence_and_the_next_run_resumes(home, small_disk):
    for minute in range(3):  # about 6 MB of video for a 4 MiB disk
        home.write_clip(os.urandom(2_000_000), START_US + minute * MINUTE_US)
    target = small_disk / "backup"

    line = assert_one_sentence(home.run("export-all", "--to", str(target)))

    assert "free" in line and "nothing was copied" in line
    assert not any(p.is_file() for p in target.rglob("*"))
    # Freed (here: a clip deleted on the device, as retention would), it goes through.
    clip_ids = [c.split()[0] for c in assert_ok(home.run("clips", "list")).stdout.splitlines()]
    assert_ok(home.run("clips", "delete", clip_ids[0]))
    assert_ok(home.run("clips", "delete", clip_ids[1]))
    assert_ok(home.run("export-all", "--to", str(target)))
    assert "OK" in assert_ok(home.run("verify", "--home", str(target))).stdout


def test_a_read_only_target_is_one_sentence(home, two_clips, tmp_path):
    target = tmp_path / "read-only"
    mount_tmpfs(target, "1m")
    try:
        remount = subprocess.run(["mount", "-o", "remount,ro", str(target)],
                                 capture_output=True, text=True, check=False)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        line = assert_one_sentence(home.run("export-all", "--to", str(target)))
        assert "cannot write the backup" in line and "Read-only file system" in line
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


class _BadSector(io.FileIO):
    """What a failing SD card gives for a file on a bad sector: it opens, every read is EIO."""

    def read(self, *_args):
        raise OSError(errno.EIO, "Input/output error")

    readinto = None


def _card_fails_on(monkeypatch, bad: Path) -> None:
    real_open = Path.open

    def open_on_a_failing_card(self, mode="r", *args, **kwargs):
        if self == bad and "r" in mode:
            return _BadSector(str(self), "r")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_on_a_failing_card)


def _export_in_process(home, target, capsys) -> tuple[int, str, str]:
    # In this process, so the failing card (a patched Path.open) is the one the command reads.
    code = cli.main(["export-all", "--home", str(home.root), "--to", str(target)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_bad_sector_on_the_card_skips_that_clip_names_it_and_copies_the_rest(
        home, tmp_path, monkeypatch, capsys):
    for minute in range(3):
        home.write_clip(os.urandom(200_000), START_US + minute * MINUTE_US)
    videos = sorted((home.root / "clips").rglob("*.mp4.age"))
    bad = videos[0]
    bad_relative = bad.relative_to(home.root).as_posix()
    stored = files_under(home.root)
    _card_fails_on(monkeypatch, bad)
    target = tmp_path / "usb"

    code, out, err = _export_in_process(home, target, capsys)

    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doorbell: ") and lines[0].endswith("."), err
    assert bad_relative in lines[0] and "Input/output error" in lines[0], lines[0]
    assert "could not be read on the device" in lines[0] and "cannot write" not in lines[0]
    assert f"Could not read {bad_relative}" in out
    # Everything after the bad clip was still copied, byte for byte.
    backup = files_under(target)
    for name in (k for k in stored if k.startswith("clips/") and k != bad_relative):
        assert backup[name] == stored[name], name
    assert bad_relative not in backup
    assert {"audit.jsonl", "recipients.txt", "index.sqlite3"} <= set(backup)
    assert not any(k.endswith(TEMPORARY_SUFFIX) for k in backup)


def test_a_clip_backed_up_before_the_card_failed_keeps_its_good_copy(
        home, two_clips, tmp_path, monkeypatch, capsys):
    target = tmp_path / "usb"
    assert_ok(home.run("export-all", "--to", str(target)))
    bad = home.video_path(two_clips[1])
    good_copy = target / bad.relative_to(home.root)
    before = good_copy.read_bytes()
    _card_fails_on(monkeypatch, bad)  # now the card cannot read it (comparing needs a read)

    code, _out, err = _export_in_process(home, target, capsys)

    assert code == 1 and good_copy.name in err and "1 file(s) could not be read" in err, err
    assert good_copy.read_bytes() == before


def test_a_destination_read_error_keeps_its_sentence(home, two_clips, tmp_path, monkeypatch,
                                                     capsys):
    # The failing medium is the backup's, not the card: the run stops, saying so.
    target = tmp_path / "usb"
    assert_ok(home.run("export-all", "--to", str(target)))
    _card_fails_on(monkeypatch, target / home.video_path(two_clips[0]).relative_to(home.root))

    code, _out, err = _export_in_process(home, target, capsys)

    assert code == 1
    assert f"cannot write the backup to {target} (Input/output error)" in err, err
