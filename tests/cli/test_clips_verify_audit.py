"""`doorbell clips ...`, `doorbell verify` and `doorbell audit`, run as the owner runs them."""

import hashlib
import json
import random
import re

import pytest

from doorbell.storage.age import X25519Identity

from .conftest import START_US, assert_ok, assert_one_sentence, doorbell

CHUNK = 64 * 1024
ENCRYPTED_CHUNK = CHUNK + 16


def mp4_bytes(size: int, seed: int = 0) -> bytes:
    head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    return head + random.Random(seed).randbytes(size - len(head))


def export(home, clip_id: str, output, *extra: str):
    return home.run("clips", "export", clip_id, "-o", str(output),
                    "--passphrase-file", str(home.passphrase_file), *extra)


# -- list --------------------------------------------------------------------------------------


def test_clips_list_shows_every_clip_newest_first_with_state_and_size(home):
    older = home.write_clip(mp4_bytes(100_000), start_us=START_US)
    newer = home.write_clip(mp4_bytes(50_000, 1), start_us=START_US + 3_600_000_000)

    rows = json.loads(assert_ok(home.run("clips", "list", "--json")).stdout)
    text = assert_ok(home.run("clips", "list")).stdout

    assert [r["id"] for r in rows] == [newer, older]
    assert rows[1]["start"] == "2024-05-01T12:00:00Z" and rows[1]["start_us"] == START_US
    assert {r["state"] for r in rows} == {"complete"}
    for row in rows:
        size = sum(p.stat().st_size for p in home.video_path(row["id"]).parent.glob(
            row["id"] + ".*"))
        assert row["size_bytes"] == size
    assert text.index(newer) < text.index(older)
    assert "complete" in text


# -- export ------------------------------------------------------------------------------------


def test_export_writes_the_exact_plaintext_prints_its_sha256_and_is_audited(home, tmp_path):
    video = mp4_bytes(3 * CHUNK + 4321)
    clip_id = home.write_clip(video)
    output = tmp_path / "exported.mp4"

    result = assert_ok(export(home, clip_id, output))

    assert output.read_bytes() == video
    digest = hashlib.sha256(video).hexdigest()
    assert digest in result.stdout
    assert not list(tmp_path.glob("*.partial"))
    entry = home.audit_entries()[-1]
    assert entry.action == "clip.export"
    assert entry.details["clip"] == clip_id and entry.details["sha256"] == digest
    assert "intact" in assert_ok(home.run("audit", "--verify")).stdout


def test_export_with_the_passphrase_in_the_environment(home, tmp_path):
    from .conftest import PASSPHRASE

    video = mp4_bytes(10_000)
    clip_id = home.write_clip(video)
    output = tmp_path / "out.mp4"

    assert_ok(home.run("clips", "export", clip_id, "-o", str(output), "--user", "owner",
                       env={"DOORBELL_PASSPHRASE": PASSPHRASE}))
    assert output.read_bytes() == video


def test_export_with_a_wrong_passphrase_fails_and_writes_nothing(home, tmp_path):
    clip_id = home.write_clip(mp4_bytes(10_000))
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-passphrase-at-all\n")
    output = tmp_path / "out.mp4"
    entries = len(home.audit_entries())

    result = home.run("clips", "export", clip_id, "-o", str(output), "--passphrase-file",
                      str(wrong))

    assert "passphrase" in assert_one_sentence(result, 1)
    assert not output.exists() and not list(tmp_path.glob("out.mp4*"))
    assert len(home.audit_entries()) == entries


def test_export_never_overwrites_an_existing_file(home, tmp_path):
    clip_id = home.write_clip(mp4_bytes(10_000))
    output = tmp_path / "precious.mp4"
    output.write_bytes(b"keep me")

    assert_one_sentence(export(home, clip_id, output), 1)
    assert output.read_bytes() == b"keep me"


def test_export_of_a_clip_that_does_not_exist_fails_cleanly(home, tmp_path):
    result = export(home, "20240501T120000Z-abcdef", tmp_path / "x.mp4")
    assert_one_sentence(result, 1)
    assert not (tmp_path / "x.mp4").exists()


def test_export_of_an_interrupted_clip_gives_its_authenticated_prefix(home, tmp_path):
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients
    from doorbell.storage.reconcile import reconcile

    data = mp4_bytes(300 * 1024)
    with ClipIndex(home.root / "index.sqlite3") as index:
        store = ClipStore(home.root / "clips", index,
                          read_recipients(home.root / "recipients.txt"))
        writer = store.begin_clip(START_US)
        writer.video.write(data)
        writer.abandon()
        reconcile(store.clips_dir, index)
    output = tmp_path / "prefix.mp4"

    result = assert_ok(export(home, writer.clip_id, output))

    assert output.read_bytes() == data[: 4 * CHUNK]
    assert "interrupted" in result.stdout
    assert home.audit_entries()[-1].details["truncated"] is True
    rows = json.loads(assert_ok(home.run("clips", "list", "--json")).stdout)
    assert rows[0]["state"] == "truncated"


# -- delete ------------------------------------------------------------------------------------


def test_delete_removes_the_clip_and_is_audited(home):
    kept = home.write_clip(mp4_bytes(20_000, 1), start_us=START_US + 60_000_000)
    clip_id = home.write_clip(mp4_bytes(20_000))
    directory = home.video_path(clip_id).parent

    result = assert_ok(home.run("clips", "delete", clip_id))

    assert "not secure erasure" in result.stdout
    assert not list(directory.glob(clip_id + "*"))
    ids = [r["id"] for r in json.loads(assert_ok(home.run("clips", "list", "--json")).stdout)]
    assert ids == [kept]
    entry = home.audit_entries()[-1]
    assert (entry.action, entry.details["clip"]) == ("clip.delete", clip_id)
    assert "does not exist" in assert_one_sentence(home.run("clips", "delete", clip_id), 1)
    assert "OK" in assert_ok(home.run("verify")).stdout


def test_a_deletion_that_cannot_be_audited_is_not_made(home):
    clip_id = home.write_clip(mp4_bytes(20_000))
    log = home.root / "audit.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"member":"owner"', b'"member":"0wner"', 1))

    assert_one_sentence(home.run("clips", "delete", clip_id), 1)
    assert home.video_path(clip_id).exists()


# -- malformed ids -----------------------------------------------------------------------------


BAD_IDS = ["../../etc/passwd", "x", "20240501T120000Z-ABCDEF", "20241301T120000Z-abcdef",
           "20240501T120000Z-abcdef/../../x"]


def test_malformed_clip_ids_fail_with_one_sentence_and_touch_nothing(home, tmp_path):
    clip_id = home.write_clip(mp4_bytes(20_000))
    before = {p: p.read_bytes() for p in home.files() if "index.sqlite3" not in p.name}

    for bad_id in BAD_IDS:
        message = assert_one_sentence(home.run("clips", "delete", bad_id), 1)
        assert "clip id" in message or "does not exist" in message
    for bad_id in BAD_IDS[:2]:
        assert "clip id" in assert_one_sentence(export(home, bad_id, tmp_path / "out.mp4"), 1)

    assert {p: p.read_bytes() for p in before} == before
    assert home.video_path(clip_id).exists()
    assert not (tmp_path / "out.mp4").exists()
    assert [e.action for e in home.audit_entries()] == ["init"]


# -- verify ------------------------------------------------------------------------------------


def test_verify_with_a_key_authenticates_every_file_of_a_healthy_store(home):
    home.write_clip(mp4_bytes(2 * CHUNK + 5))
    home.write_clip(mp4_bytes(CHUNK, 1), start_us=START_US + 1_000_000)

    result = assert_ok(home.run("verify", "--user", "owner", "--passphrase-file",
                                str(home.passphrase_file), "--json"))

    report = json.loads(result.stdout)
    assert report == {"ok": True, "files_checked": 6, "authenticated": True,
                      "truncated_clips": [], "problems": []}


def test_a_flipped_byte_in_a_clip_fails_verify_with_a_key_naming_the_file(home):
    clip_id = home.write_clip(mp4_bytes(3 * CHUNK + 100))
    path = home.video_path(clip_id)
    data = bytearray(path.read_bytes())
    data[len(data) - 2 * CHUNK] ^= 0x01  # inside the payload, one chunk before the end
    path.write_bytes(bytes(data))

    text = home.run("verify", "--user", "owner", "--passphrase-file", str(home.passphrase_file))
    as_json = home.run("verify", "--user", "owner", "--passphrase-file",
                       str(home.passphrase_file), "--json")

    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert f"{clip_id}.mp4.age" in text.stdout
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and report["ok"] is False
    assert [p["file"].rsplit("/", 1)[-1] for p in report["problems"]] == [f"{clip_id}.mp4.age"]


@pytest.mark.parametrize("where", ["header", "nonce", "tag"])
def test_a_cut_file_fails_plain_verify_naming_the_file(home, where):
    clip_id = home.write_clip(mp4_bytes(3 * CHUNK + 100))
    path = home.video_path(clip_id)
    data = path.read_bytes()
    header_end = data.index(b"\n", data.index(b"\n---") + 1) + 1  # after the MAC line
    cut = {
        "header": header_end - 10,  # inside the header MAC line
        "nonce": header_end + 8,  # inside the payload nonce
        "tag": header_end + 16 + 2 * ENCRYPTED_CHUNK + 7,  # a third chunk shorter than its tag
    }[where]
    path.write_bytes(data[:cut])

    result = home.run("verify")

    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert f"{clip_id}.mp4.age" in result.stdout


@pytest.mark.parametrize("cut_from_end", [1000, 70_000], ids=["mid-chunk", "mid-earlier-chunk"])
def test_a_file_cut_inside_a_chunk_fails_plain_verify(home, cut_from_end):
    clip_id = home.write_clip(mp4_bytes(3 * CHUNK + 5000))
    path = home.video_path(clip_id)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut_from_end])

    result = home.run("verify")

    assert result.returncode == 1, result.stdout
    assert f"{clip_id}.mp4.age" in result.stdout


def interrupt_clip(home, size: int, start_us: int) -> str:
    """A clip whose recording was cut off (the last chunk unsealed), recovered as at start."""
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients
    from doorbell.storage.reconcile import reconcile

    with ClipIndex(home.root / "index.sqlite3") as index:
        store = ClipStore(home.root / "clips", index,
                          read_recipients(home.root / "recipients.txt"))
        writer = store.begin_clip(start_us)
        writer.video.write(mp4_bytes(size, seed=size))
        writer.abandon()
        reconcile(store.clips_dir, index)
        assert index.get(writer.clip_id).state == "truncated"
    return writer.clip_id


def verify_json(home, *extra: str):
    result = home.run("verify", "--json", *extra)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def test_interrupted_clips_pass_verify_with_and_without_a_key(home):
    home.write_clip(mp4_bytes(2 * CHUNK + 5))
    interrupted = sorted([
        interrupt_clip(home, 5 * CHUNK + 100, START_US + 60_000_000),  # five whole chunks
        interrupt_clip(home, 30_000, START_US + 120_000_000),  # not one whole chunk
    ])

    for extra in ([], ["--user", "owner", "--passphrase-file", str(home.passphrase_file)]):
        code, report = verify_json(home, *extra)
        assert (code, report["problems"]) == (0, []), extra
        assert report["ok"] is True and report["truncated_clips"] == interrupted


def test_an_interrupted_clip_damaged_inside_its_prefix_fails_verify_with_a_key(home):
    clip_id = interrupt_clip(home, 5 * CHUNK + 100, START_US)
    path = home.video_path(clip_id)
    data = bytearray(path.read_bytes())
    data[len(data) - 3 * ENCRYPTED_CHUNK] ^= 0x01  # two whole chunks authenticate after it
    path.write_bytes(bytes(data))

    assert verify_json(home)[0] == 0  # without a key a flipped bit cannot be seen
    code, report = verify_json(home, "--user", "owner", "--passphrase-file",
                               str(home.passphrase_file))
    assert code == 1 and report["ok"] is False
    assert [p["file"].rsplit("/", 1)[-1] for p in report["problems"]] == [f"{clip_id}.mp4.age"]
    assert "damaged, not cut short" in report["problems"][0]["problem"]


def test_an_interrupted_clip_cut_further_after_recovery_fails_plain_verify(home):
    clip_id = interrupt_clip(home, 5 * CHUNK + 100, START_US)
    path = home.video_path(clip_id)
    path.write_bytes(path.read_bytes()[:-ENCRYPTED_CHUNK])

    code, report = verify_json(home)
    assert code == 1 and "were recorded" in report["problems"][0]["problem"]


def test_verify_flags_a_partial_file_and_a_stray_file(home):
    clip_id = home.write_clip(mp4_bytes(20_000))
    directory = home.video_path(clip_id).parent
    (directory / "stray.txt").write_text("hello")

    result = home.run("verify", "--json")

    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["ok"] is False
    assert [p["file"] for p in report["problems"]] == [
        (directory / "stray.txt").relative_to(home.root / "clips").as_posix()
    ]


def test_verify_flags_a_clip_whose_video_went_missing(home):
    clip_id = home.write_clip(mp4_bytes(20_000))
    home.video_path(clip_id).unlink()

    result = home.run("verify")

    assert result.returncode == 1
    assert clip_id in result.stdout and "missing" in result.stdout


def test_verify_with_another_members_key_that_cannot_decrypt_fails_cleanly(home):
    from .conftest import PASSPHRASE

    bob = X25519Identity.generate()
    assert_ok(home.run("keys", "add", "bob", str(bob.recipient)))
    result = home.run("verify", "--user", "bob", env={"DOORBELL_PASSPHRASE": PASSPHRASE})
    assert "bob" in assert_one_sentence(result, 1)


# -- audit -------------------------------------------------------------------------------------


def test_audit_lists_every_entry(home, tmp_path):
    clip_id = home.write_clip(mp4_bytes(20_000))
    assert_ok(export(home, clip_id, tmp_path / "out.mp4"))
    assert_ok(home.run("clips", "delete", clip_id))

    out = assert_ok(home.run("audit")).stdout.strip().splitlines()

    assert len(out) == 3  # one line per entry
    assert " init " in out[0] and " clip.export " in out[1] and " clip.delete " in out[2]


@pytest.mark.parametrize("edit", ["field", "remove", "reorder"])
def test_audit_verify_fails_after_the_log_is_edited(home, tmp_path, edit):
    clip_id = home.write_clip(mp4_bytes(20_000))
    assert_ok(export(home, clip_id, tmp_path / "a.mp4"))
    assert_ok(export(home, clip_id, tmp_path / "b.mp4"))
    assert_ok(home.run("clips", "delete", clip_id))
    log = home.root / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4
    if edit == "field":
        lines[1] = lines[1].replace(b'"clip.export"', b'"clip.exp0rt"')
    elif edit == "remove":
        del lines[2]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    log.write_bytes(b"".join(lines))

    result = home.run("audit", "--verify")

    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert re.search(r"\blines? [23]\b", result.stdout), result.stdout  # says where


def test_audit_verify_fails_when_the_last_entry_is_cut_off(home, tmp_path):
    clip_id = home.write_clip(mp4_bytes(20_000))
    assert_ok(home.run("clips", "delete", clip_id))
    log = home.root / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))

    assert home.run("audit", "--verify").returncode == 1


# -- errors are sentences, never tracebacks ----------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["clips", "list"],
        ["clips", "delete", "20240501T120000Z-abcdef"],
        ["verify"],
        ["audit"],
        ["audit", "--verify"],
        ["keys", "list"],
        ["keys", "remove", "bob"],
    ],
    ids=lambda a: " ".join(a),
)
def test_commands_on_an_uninitialised_home_fail_with_one_sentence(fresh_home, args):
    result = doorbell(*args, home=fresh_home)
    assert "init" in assert_one_sentence(result, 1)


def test_failures_on_an_initialised_home_are_one_sentence_each(home, tmp_path):
    from .conftest import PASSPHRASE

    clip_id = home.write_clip(mp4_bytes(20_000))
    env = {"DOORBELL_PASSPHRASE": PASSPHRASE}
    failing = [
        ["clips", "export", clip_id, "-o", str(tmp_path / "no" / "such" / "dir.mp4")],
        ["clips", "export", clip_id, "-o", str(tmp_path / "x.mp4"), "--user", "nobody"],
        ["verify", "--user", "nobody"],
        ["keys", "remove", "nobody"],
        ["keys", "add", "dave", "age1qqqq"],
        ["clips", "export", "20240501T120000Z-000000", "-o", str(tmp_path / "y.mp4")],
    ]
    for args in failing:
        assert_one_sentence(home.run(*args, env=env), 1)


def test_init_on_a_path_that_is_a_file_fails_with_one_sentence(tmp_path, passphrase_file):
    not_a_directory = tmp_path / "home"
    not_a_directory.write_text("I am a file")

    result = doorbell("init", "--home", str(not_a_directory), "--passphrase-file",
                      str(passphrase_file), "--work-factor", "15")

    assert_one_sentence(result, 1)
