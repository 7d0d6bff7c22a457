"""Settings in the browser: re-authentication, validation, atomic audited writes, the motion
tuner's trial values, the days-that-fit estimate and whether the recorder applied a change.

The guard rules that every settings and household POST follows (CSRF token, passphrase again,
rate limit) are checked here for all six forms; what each household form does is in
test_members.py.
"""

import dataclasses
import errno
import hashlib
import html
import json
import os
import re
import time
from collections import namedtuple
from pathlib import Path

import pytest

from doorbell.config import Settings, load_settings
from doorbell.config.editor import setting_value
from doorbell.storage.age.identities import X25519Identity
from doorbell.storage.exchange import MotionOverlay, RecorderStatus
from doorbell.storage.household import add_member

from .conftest import MEMBER, ORIGIN, PASSPHRASE, csrf_token, new_client, unlock_directly

SAME_ORIGIN = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
ALERT = re.compile(r'role="alert"[^>]*>(.*?)</p>', re.S)
WRONG_PASSPHRASE = "amber-kettle-under-snow-32"
NEW_PASSPHRASE = "violet-harbour-lamp-quiet-88"
BOB_KEY = str(X25519Identity.generate().recipient)
CAROL_KEY = str(X25519Identity.generate().recipient)
MASK = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.2], [0.0, 0.2]]
ZONE = [[0.2, 0.5], [0.9, 0.5], [0.9, 1.0], [0.2, 1.0]]

CONFIG = """\
# Our doorbell. Notes like this one must survive a save from the browser.

[camera]
name = "Porch"  # the camera over the porch

[motion]
# Tuned in spring: the hedge moves a lot.
sensitivity = 0.5
trigger_frames = 3

[recording]
pre_roll_s = 3.0  # seconds kept from before the motion
"""

MOTION_FORM = {"sensitivity": "0.5", "min_area": "0.004", "trigger_frames": "3"}
RECORDING_FORM = {"pre_roll_s": "3", "post_roll_s": "5", "max_clip_s": "120",
                  "max_age_days": "30", "max_total_gb": "0", "min_free_gb": "1"}

# Every form that changes something, with values that would change something.
POSTS = {
    "areas": ("/settings/areas", {"masks": json.dumps([MASK]), "zones": "[]"}),
    "motion": ("/settings/motion", {**MOTION_FORM, "sensitivity": "0.7"}),
    "recording": ("/settings/recording", {**RECORDING_FORM, "pre_roll_s": "4"}),
    "members.add": ("/members/add", {"name": "carol", "public_key": CAROL_KEY}),
    "members.remove": ("/members/remove", {"name": "bob"}),
    "members.passphrase": ("/members/passphrase", {"new_passphrase": NEW_PASSPHRASE,
                                                   "new_passphrase_confirm": NEW_PASSPHRASE}),
}


def _alert(response) -> str:
    match = ALERT.search(response.get_data(as_text=True))
    return html.unescape(match.group(1)).strip() if match else ""


def stored(home) -> dict[str, bytes]:
    """What a settings or household change could change on disk."""
    root = home.root
    paths = [root / "config.toml", root / "recipients.txt", root / "motion-tuning.json",
             *sorted((root / "identities").iterdir())]
    return {p.name: p.read_bytes() for p in paths if p.exists()}


def config_bytes(home) -> bytes:
    return (home.root / "config.toml").read_bytes()


def changes(home) -> list[dict]:
    return [e.details["changes"] for e in home.actions("settings.change")]


def open_viewer(make_app, identity, overrides: dict | None = None):
    """A viewer started on the home as it is now, and alice's browser, unlocked."""
    app = make_app(overrides)
    client = new_client(app)
    unlock_directly(app, client, identity)
    return app, client


def post(client, path: str, data: dict, token: str | None = None, **kwargs):
    """A same-origin form POST; `token` None takes the one in the page."""
    form = {"csrf_token": csrf_token(client) if token is None else token, **data}
    return client.post(path, data=form, headers={**SAME_ORIGIN, **kwargs.pop("headers", {})},
                       **kwargs)


def save(client, path: str, data: dict, passphrase: str = PASSPHRASE):
    return post(client, path, {**data, "passphrase": passphrase})


@pytest.fixture
def household(home):
    """The fixture home with a config.toml full of comments and a second member, bob."""
    home.write_config(CONFIG)
    add_member(home.home, "bob", recipient=BOB_KEY)
    return home


@pytest.fixture
def viewer(household, make_app, identity):
    return open_viewer(make_app, identity)


@pytest.fixture
def browser(viewer):
    return viewer[1]


# -- the rules every change follows -----------------------------------------------------------

@pytest.mark.parametrize("form", list(POSTS))
def test_each_form_changes_something_with_the_right_passphrase(household, browser, form):
    before = stored(household)
    path, data = POSTS[form]
    response = save(browser, path, data)
    assert response.status_code == 303, _alert(response)
    assert stored(household) != before


@pytest.mark.parametrize("refusal", ["no token", "wrong token", "cross-site", "other origin"])
@pytest.mark.parametrize("form", list(POSTS))
def test_without_the_forms_token_nothing_changes(household, browser, form, refusal):
    before = stored(household)
    entries = len(household.audit())
    path, data = POSTS[form]
    form_data = {**data, "passphrase": PASSPHRASE}
    token = csrf_token(browser)
    if refusal == "no token":
        response = browser.post(path, data=form_data, headers=SAME_ORIGIN)
    elif refusal == "wrong token":
        response = post(browser, path, form_data, token="not-the-token")
    elif refusal == "cross-site":
        response = post(browser, path, form_data, token=token,
                        headers={"Sec-Fetch-Site": "cross-site"})
    else:
        response = post(browser, path, form_data, token=token,
                        headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert stored(household) == before
    assert len(household.audit()) == entries  # not even a failed re-authentication


@pytest.mark.parametrize("form", list(POSTS))
def test_without_the_passphrase_nothing_changes(household, browser, form):
    before = stored(household)
    path, data = POSTS[form]
    response = post(browser, path, data)
    assert response.status_code == 401
    assert _alert(response) == "Type your passphrase to confirm the change."
    assert 'aria-invalid="true"' in response.get_data(as_text=True)
    assert stored(household) == before
    assert not household.actions("settings.change")


@pytest.mark.parametrize("form", list(POSTS))
def test_a_wrong_passphrase_changes_nothing_and_is_audited(household, browser, form):
    before = stored(household)
    path, data = POSTS[form]
    response = save(browser, path, data, passphrase=WRONG_PASSPHRASE)
    assert response.status_code == 401
    assert _alert(response) == "Wrong passphrase: nothing was changed."
    assert stored(household) == before
    failed = household.actions("reauth.failed")
    assert [(e.actor, e.details["address"]) for e in failed] == [(MEMBER, "127.0.0.1")]
    for action in ("settings.change", "keys.add", "keys.remove", "keys.passwd"):
        assert not household.actions(action)
    assert browser.get("/").status_code == 200  # a wrong passphrase does not lock the viewer


def test_repeated_wrong_passphrases_are_rate_limited(household, make_app, identity):
    _app, browser = open_viewer(make_app, identity, {"viewer.login_attempts_per_15min": 3})
    before = config_bytes(household)
    path, data = POSTS["motion"]
    for _ in range(3):
        assert save(browser, path, data, passphrase=WRONG_PASSPHRASE).status_code == 401
    response = save(browser, path, data)  # even the right one, now
    assert response.status_code == 429
    assert _alert(response).startswith("Too many attempts. Try again in ")
    assert config_bytes(household) == before
    assert len(household.actions("reauth.failed")) == 3
    assert [e.actor for e in household.actions("reauth.rate_limited")] == [MEMBER]
    # The other forms share the limit: it is the member's passphrase being guessed.
    path, data = POSTS["members.add"]
    assert save(browser, path, data).status_code == 429
    assert not household.actions("keys.add")


# -- saving -------------------------------------------------------------------------------------

def test_saving_motion_settings_keeps_the_files_comments(household, browser):
    response = save(browser, "/settings/motion",
                    {**MOTION_FORM, "sensitivity": "0.7", "trigger_frames": "5"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/settings/motion?note=saved"
    text = config_bytes(household).decode()
    assert text == CONFIG.replace("sensitivity = 0.5", "sensitivity = 0.7") \
        .replace("trigger_frames = 3", "trigger_frames = 5")
    settings = load_settings(household.root)
    assert settings.motion.sensitivity == 0.7
    assert settings.motion.trigger_frames == 5
    assert settings.camera.name == "Porch"
    [entry] = household.actions("settings.change")
    assert entry.actor == MEMBER
    assert entry.details["address"] == "127.0.0.1"
    assert entry.details["changes"] == {
        "motion.sensitivity": {"before": 0.5, "after": 0.7},
        "motion.trigger_frames": {"before": 3, "after": 5},
    }
    page = browser.get("/settings/motion?note=saved").get_data(as_text=True)
    assert "Saved." in page
    assert 'name="sensitivity" id="sensitivity" min="0" max="1" step="0.05" value="0.7"' in page


def test_saving_the_same_values_again_writes_nothing(household, browser):
    values = {**MOTION_FORM, "sensitivity": "0.7"}
    assert save(browser, "/settings/motion", values).status_code == 303
    saved = config_bytes(household)
    mtime = (household.root / "config.toml").stat().st_mtime_ns
    response = save(browser, "/settings/motion", values)
    assert response.status_code == 303
    assert response.headers["Location"] == "/settings/motion?note=unchanged"
    assert config_bytes(household) == saved
    assert (household.root / "config.toml").stat().st_mtime_ns == mtime
    assert len(household.actions("settings.change")) == 1
    page = browser.get("/settings/motion?note=unchanged").get_data(as_text=True)
    assert "Nothing changed." in page
    # The recording form as shown, saved untouched, changes nothing either.
    assert save(browser, "/settings/recording", RECORDING_FORM).headers["Location"] == \
        "/settings/recording?note=unchanged"
    assert config_bytes(household) == saved


def test_the_tuner_sliders_can_show_every_value_the_file_may_hold(household, browser):
    """A slider clamps a value beyond its range, and saving the form would then change a setting
    the owner never touched: the range must take in what the file says."""
    (household.root / "config.toml").write_text(CONFIG.replace("[motion]",
                                                               "[motion]\nmin_area = 0.1234"))
    page = browser.get("/settings/motion").get_data(as_text=True)
    slider = re.search(r'<input type="range" name="min_area"[^>]*>', page).group(0)
    assert 'value="0.1234"' in slider
    assert float(re.search(r'max="([^"]+)"', slider).group(1)) >= 0.1234
    assert 'step="any"' in slider  # no snapping of 0.1234 to a coarser step either


def test_a_hand_edit_made_while_the_viewer_runs_is_shown_and_kept(household, browser):
    config = household.root / "config.toml"
    config.write_text(config.read_text().replace("sensitivity = 0.5", "sensitivity = 0.8"))
    page = browser.get("/settings/motion").get_data(as_text=True)
    assert 'id="sensitivity" min="0" max="1" step="0.05" value="0.8"' in page
    form = {key: re.search(rf'name="{key}"[^>]*value="([^"]+)"', page).group(1)
            for key in ("sensitivity", "min_area", "trigger_frames")}
    assert save(browser, "/settings/motion", {**form, "trigger_frames": "4"}).status_code == 303
    settings = load_settings(household.root)
    assert (settings.motion.sensitivity, settings.motion.trigger_frames) == (0.8, 4)


def test_saving_privacy_masks_and_motion_zones(household, browser):
    response = save(browser, "/settings/areas",
                    {"masks": json.dumps([MASK]), "zones": json.dumps([ZONE])})
    assert response.status_code == 303
    assert response.headers["Location"] == "/settings/areas?note=saved"
    text = config_bytes(household).decode()
    # The zone joins its [motion] section, the mask gets a [privacy] one; nothing else moves.
    assert text == CONFIG.replace(
        "trigger_frames = 3\n", f"trigger_frames = 3\nzones = {json.dumps([ZONE])}\n") + \
        f"\n[privacy]\nmasks = {json.dumps([MASK])}\n"
    settings = load_settings(household.root)
    assert setting_value(settings, "privacy.masks") == [MASK]
    assert setting_value(settings, "motion.zones") == [ZONE]
    [entry] = household.actions("settings.change")
    assert entry.details["changes"] == {
        "privacy.masks": {"before": [], "after": [MASK]},
        "motion.zones": {"before": [], "after": [ZONE]},
    }
    page = browser.get("/settings/areas").get_data(as_text=True)
    assert html.escape(json.dumps([MASK])) in page
    # Removing the mask again (the zone stays).
    assert save(browser, "/settings/areas", {"masks": "[]", "zones": json.dumps([ZONE])}) \
        .status_code == 303
    settings = load_settings(household.root)
    assert setting_value(settings, "privacy.masks") == []
    assert setting_value(settings, "motion.zones") == [ZONE]
    assert changes(household)[-1] == {"privacy.masks": {"before": [MASK], "after": []}}


def test_polygon_corners_are_kept_to_a_sensible_precision(household, browser):
    drawn = [[0.123456789, 0.1], [0.5, 0.987654321], [0.9, 0.2]]
    assert save(browser, "/settings/areas", {"masks": json.dumps([drawn]), "zones": "[]"}) \
        .status_code == 303
    assert setting_value(load_settings(household.root), "privacy.masks") == \
        [[[0.1235, 0.1], [0.5, 0.9877], [0.9, 0.2]]]


def test_saving_recording_and_retention(household, browser):
    response = save(browser, "/settings/recording",
                    {**RECORDING_FORM, "pre_roll_s": "4.5", "max_age_days": "14",
                     "max_total_gb": "2.5"})
    assert response.status_code == 303
    settings = load_settings(household.root)
    assert settings.recording.pre_roll_s == 4.5
    assert settings.retention.max_age_days == 14
    assert settings.retention.max_total_bytes == 2_500_000_000
    text = config_bytes(household).decode()
    assert "pre_roll_s = 4.5  # seconds kept from before the motion" in text
    [entry] = household.actions("settings.change")
    assert entry.details["changes"] == {
        "recording.pre_roll_s": {"before": 3.0, "after": 4.5},
        "retention.max_age_days": {"before": 30, "after": 14},
        "retention.max_total_bytes": {"before": 0, "after": 2_500_000_000},
    }
    page = browser.get("/settings/recording").get_data(as_text=True)
    assert 'name="max_total_gb" id="max_total_gb" step="0.1" min="0" value="2.5"' in page
    assert 'name="max_age_days" id="max_age_days" step="1" min="0" value="14"' in page


INVALID = {
    "mask corner outside the picture": (
        "/settings/areas", {"masks": json.dumps([[[0, 0], [1.5, 0], [0, 1]]]), "zones": "[]"},
        "privacy.masks"),
    "mask of two points": (
        "/settings/areas", {"masks": json.dumps([[[0, 0], [1, 0]]]), "zones": "[]"},
        "privacy.masks"),
    "masks not JSON": ("/settings/areas", {"masks": "[[[0, 0], [1,", "zones": "[]"},
                       "privacy.masks"),
    "zone on one line": (
        "/settings/areas", {"masks": "[]", "zones": json.dumps([[[0, 0], [0.5, 0.5], [1, 1]]])},
        "motion.zones"),
    "zone of zero area": (
        "/settings/areas", {"masks": "[]", "zones": json.dumps([[[0.5, 0.5]] * 4])},
        "motion.zones"),
    "zones not a list": ("/settings/areas", {"masks": "[]", "zones": '{"a": 1}'},
                         "motion.zones"),
    "sensitivity 1.5": ("/settings/motion", {**MOTION_FORM, "sensitivity": "1.5"},
                        "motion.sensitivity"),
    "sensitivity not a number": ("/settings/motion", {**MOTION_FORM, "sensitivity": "high"},
                                 "motion.sensitivity"),
    "sensitivity nan": ("/settings/motion", {**MOTION_FORM, "sensitivity": "nan"},
                        "motion.sensitivity"),
    "trigger_frames 0": ("/settings/motion", {**MOTION_FORM, "trigger_frames": "0"},
                         "motion.trigger_frames"),
    "trigger_frames 2.5": ("/settings/motion", {**MOTION_FORM, "trigger_frames": "2.5"},
                           "motion.trigger_frames"),
    "pre_roll_s 99": ("/settings/recording", {**RECORDING_FORM, "pre_roll_s": "99"},
                      "recording.pre_roll_s"),
    "pre_roll_s empty": ("/settings/recording", {**RECORDING_FORM, "pre_roll_s": ""},
                         "recording.pre_roll_s"),
    "max_total_gb 0.001": ("/settings/recording", {**RECORDING_FORM, "max_total_gb": "0.001"},
                           "retention.max_total_bytes"),
    "max_total_gb infinite": ("/settings/recording", {**RECORDING_FORM, "max_total_gb": "1e400"},
                              "retention.max_total_bytes"),
    "max_age_days not a number": ("/settings/recording", {**RECORDING_FORM,
                                                          "max_age_days": "a month"},
                                  "retention.max_age_days"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_values_are_refused_naming_the_field(household, browser, case):
    path, data, key = INVALID[case]
    before = config_bytes(household)
    response = save(browser, path, data)
    assert response.status_code == 400
    alert = _alert(response)
    assert key in alert, alert
    assert config_bytes(household) == before
    assert not household.actions("settings.change")
    assert load_settings(household.root).motion.sensitivity == 0.5
    text = response.get_data(as_text=True)
    if path != "/settings/areas":  # the offending input is marked, and keeps what was typed
        field = next(name for name, value in data.items()
                     if value != {**MOTION_FORM, **RECORDING_FORM}.get(name))
        assert re.search(rf'name="{field}"[^>]*value="{re.escape(html.escape(data[field]))}"'
                         r'[^>]*aria-invalid="true"', text), field
    else:  # the drawing is kept, so the user can correct it
        for name in ("masks", "zones"):
            shown = re.search(rf'id="{name}-field" value="([^"]*)"', text).group(1)
            assert html.unescape(shown) == data[name]


# -- an interrupted save --------------------------------------------------------------------

@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_an_interrupted_save_keeps_the_old_config(household, browser, monkeypatch, failing):
    before = config_bytes(household)
    real = getattr(os, failing)

    def broken(*args, **kwargs):
        if failing == "fsync" or Path(args[1]).name == "config.toml":
            raise OSError(errno.EIO, "Input/output error")
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, failing, broken)
        response = save(browser, "/settings/motion", {**MOTION_FORM, "sensitivity": "0.9"})
    assert response.status_code == 500
    assert _alert(response) == ("The settings could not be saved (Input/output error); the old "
                                "settings are still in force.")
    assert config_bytes(household) == before
    assert load_settings(household.root).motion.sensitivity == 0.5
    assert not household.actions("settings.change")
    assert 'value="0.5"' in browser.get("/settings/motion").get_data(as_text=True)
    # The next save works, and leaves no half-written file behind.
    assert save(browser, "/settings/motion", {**MOTION_FORM, "sensitivity": "0.9"}) \
        .status_code == 303
    assert load_settings(household.root).motion.sensitivity == 0.9
    assert not (household.root / "config.toml.partial").exists()
    assert len(household.actions("settings.change")) == 1


def test_a_partial_file_left_by_a_crash_is_harmless(household, make_app, identity):
    (household.root / "config.toml.partial").write_bytes(b"[motion]\nsensitivity = [[[\x00")
    assert load_settings(household.root).motion.sensitivity == 0.5
    _app, browser = open_viewer(make_app, identity)
    assert browser.get("/settings/motion").status_code == 200
    response = save(browser, "/settings/motion", {**MOTION_FORM, "sensitivity": "0.6"})
    assert response.status_code == 303
    assert load_settings(household.root).motion.sensitivity == 0.6
    assert not (household.root / "config.toml.partial").exists()


# -- the motion tuner ---------------------------------------------------------------------------

def trial(client, values, token: str | None = None, **headers):
    token = csrf_token(client) if token is None else token
    return client.post("/settings/motion/trial", json=values,
                       headers={**SAME_ORIGIN, "X-CSRF-Token": token, **headers})


def test_trial_values_reach_the_recorder_for_a_short_while(household, browser):
    before = config_bytes(household)
    started = time.time()
    response = trial(browser, {"sensitivity": 0.8, "min_area": 0.01, "trigger_frames": 2})
    assert response.status_code == 200
    body = json.loads((household.root / "motion-tuning.json").read_text())
    assert body["motion"] == {"sensitivity": 0.8, "min_area": 0.01, "trigger_frames": 2}
    assert body["member"] == MEMBER
    assert started < body["expires_at"] <= time.time() + 60
    assert response.get_json()["expires_at"] == body["expires_at"]
    # Only a trial: no passphrase, nothing saved, nothing audited.
    assert config_bytes(household) == before
    assert not household.actions("settings.change")


def test_saving_ends_the_trial(household, browser):
    assert trial(browser, {"sensitivity": 0.8}).status_code == 200
    assert save(browser, "/settings/motion", {**MOTION_FORM, "sensitivity": "0.8"}) \
        .status_code == 303
    assert not (household.root / "motion-tuning.json").exists()
    assert load_settings(household.root).motion.sensitivity == 0.8


@pytest.mark.parametrize(("values", "key"), [
    ({"sensitivity": 1.5}, "motion.sensitivity"),
    ({"min_area": 0.9}, "motion.min_area"),
    ({"trigger_frames": 0}, "motion.trigger_frames"),
    ({"sensitivity": "very"}, "motion.sensitivity"),
])
def test_an_out_of_range_trial_is_refused_naming_the_field(household, browser, values, key):
    response = trial(browser, values)
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == key
    assert key in body["error"]
    assert not (household.root / "motion-tuning.json").exists()


def test_a_trial_that_is_not_a_json_object_is_refused(household, browser):
    for values in ([0.5], "0.5", None):
        assert trial(browser, values).status_code == 400
    assert not (household.root / "motion-tuning.json").exists()


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_a_trial_needs_the_pages_token(household, browser, token):
    headers = dict(SAME_ORIGIN)
    if token is not None:
        headers["X-CSRF-Token"] = token
    response = browser.post("/settings/motion/trial", json={"sensitivity": 0.8},
                            headers=headers)
    assert response.status_code == 403
    assert not (household.root / "motion-tuning.json").exists()


def test_a_locked_tuner_gets_401_so_the_page_goes_to_login(household, viewer):
    app, browser = viewer
    token = csrf_token(browser)
    assert post(browser, "/lock", {}, token=token).status_code == 303
    response = trial(browser, {"sensitivity": 0.8}, token=token)
    assert response.status_code == 401
    assert not (household.root / "motion-tuning.json").exists()
    stranger = new_client(app)
    assert trial(stranger, {"sensitivity": 0.8}, token="x").status_code == 401
    assert stranger.get("/settings/motion/overlay.json").status_code == 401
    assert not (household.root / "motion-tuning.json").exists()


def test_the_overlay_is_shown_only_while_the_recorder_publishes_it(household, browser,
                                                                   runtime_dir):
    assert browser.get("/settings/motion/overlay.json").get_json() == {"active": False}
    assert browser.get("/settings/motion/mask.png").status_code == 404
    trial = Settings().with_overrides({"motion.sensitivity": 0.8}).motion
    overlay = MotionOverlay(updated=time.time(), frame_width=320, frame_height=180,
                            boxes=((0.1, 0.2, 0.3, 0.4),), score=0.05, triggered=True,
                            light_change=False, motion=trial)
    overlay.write(runtime_dir / "motion-overlay.json")
    (runtime_dir / "motion-mask.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    shown = browser.get("/settings/motion/overlay.json").get_json()
    assert shown["active"] is True
    assert shown["boxes"] == [[0.1, 0.2, 0.3, 0.4]]
    assert shown["triggered"] is True and shown["motion"]["sensitivity"] == 0.8
    mask = browser.get("/settings/motion/mask.png")
    assert mask.status_code == 200
    assert mask.mimetype == "image/png"
    assert mask.get_data() == b"\x89PNG\r\n\x1a\nfake"
    # Written 8 s ago: at the slowest live rate (0.2 fps) the next write is just due.
    dataclasses.replace(overlay, updated=time.time() - 8).write(
        runtime_dir / "motion-overlay.json")
    assert browser.get("/settings/motion/overlay.json").get_json()["active"] is True
    dataclasses.replace(overlay, updated=time.time() - 30).write(  # the recorder stopped
        runtime_dir / "motion-overlay.json")
    assert browser.get("/settings/motion/overlay.json").get_json() == {"active": False}
    (runtime_dir / "motion-overlay.json").write_text('{"updated": 1, "boxes": "all"}')
    assert browser.get("/settings/motion/overlay.json").get_json() == {"active": False}


# -- days that fit --------------------------------------------------------------------------

DiskUsage = namedtuple("DiskUsage", "total used free")


@pytest.fixture
def big_disk(monkeypatch):
    monkeypatch.setattr("doorbell.web.capacity.shutil.disk_usage",
                        lambda _path: DiskUsage(64_000_000_000, 14_000_000_000, 50_000_000_000))


def estimate(client, **values):
    return client.get("/settings/recording/estimate.json", query_string=values)


def test_days_that_fit_follow_the_proposed_limit(household, browser, big_disk):
    small = estimate(browser, max_total_gb="0.01", max_age_days="0")
    large = estimate(browser, max_total_gb="0.02", max_age_days="0")
    assert small.status_code == large.status_code == 200
    small, large = small.get_json(), large.get_json()
    assert small["bytes_per_day"] > 0
    assert small["free_bytes"] == 50_000_000_000
    assert small["days"] == pytest.approx(10_000_000 / small["bytes_per_day"], abs=0.1)
    assert large["days"] == pytest.approx(2 * small["days"], abs=0.2)
    # Longer clips (more pre-roll) fill the same space sooner.
    longer = estimate(browser, max_total_gb="0.01", max_age_days="0", pre_roll_s="20")
    assert longer.get_json()["days"] < small["days"]
    # Without a size limit, the age limit decides.
    assert estimate(browser, max_total_gb="0", max_age_days="30").get_json()["days"] == 30
    # Nothing was saved by asking.
    assert config_bytes(household) == CONFIG.encode()


def test_the_recording_page_shows_the_days_that_fit(household, browser, big_disk):
    page = browser.get("/settings/recording").get_data(as_text=True)
    assert re.search(r'<strong id="days-fit">30</strong>', page)


@pytest.mark.parametrize(("values", "key"), [
    ({"max_total_gb": "lots"}, "retention.max_total_bytes"),
    ({"max_total_gb": "0.001"}, "retention.max_total_bytes"),
    ({"max_total_gb": "inf"}, "retention.max_total_bytes"),
    ({"pre_roll_s": "99"}, "recording.pre_roll_s"),
    ({"max_age_days": "-1"}, "retention.max_age_days"),
])
def test_estimates_for_invalid_values_name_the_field(household, browser, big_disk, values,
                                                     key):
    response = estimate(browser, **values)
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == key
    assert key in body["error"]


def test_the_estimate_needs_an_unlocked_viewer(household, viewer):
    assert estimate(new_client(viewer[0]), max_total_gb="1").status_code == 401


# -- did the recorder apply it? -------------------------------------------------------------

def recorder_status(runtime_dir, config: bytes, updated: float) -> None:
    RecorderStatus(state="idle", camera="ok", frames=100, fps=15.0, clips_saved=0,
                   last_frame_time=updated, recording=None, updated=updated,
                   config_sha256=hashlib.sha256(config).hexdigest()
                   ).write(runtime_dir / "recorder.json")


def applied(client) -> dict:
    response = client.get("/settings/applied.json")
    assert response.status_code == 200
    return response.get_json()


def test_applied_only_when_the_running_recorder_has_the_saved_config(household, browser,
                                                                     runtime_dir):
    assert applied(browser)["applied"] is False  # no recorder running
    assert applied(browser)["recorder_running"] is False
    recorder_status(runtime_dir, config_bytes(household), time.time())
    state = applied(browser)
    assert state["applied"] is True
    assert state["saved_sha256"] == state["recorder_sha256"] == \
        hashlib.sha256(config_bytes(household)).hexdigest()
    # A recorder that stopped updating its status has applied nothing new.
    recorder_status(runtime_dir, config_bytes(household), time.time() - 60)
    assert applied(browser) == {**state, "applied": False, "recorder_running": False}
    # After a save, the recorder still runs the old file until it notices.
    recorder_status(runtime_dir, config_bytes(household), time.time())
    assert save(browser, "/settings/motion", {**MOTION_FORM, "sensitivity": "0.7"}) \
        .status_code == 303
    state = applied(browser)
    assert state["applied"] is False and state["recorder_running"] is True
    recorder_status(runtime_dir, config_bytes(household), time.time())
    assert applied(browser)["applied"] is True


def test_applied_needs_an_unlocked_viewer(household, viewer):
    assert new_client(viewer[0]).get("/settings/applied.json").status_code == 401


# -- pages ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/settings", "/settings/areas", "/settings/motion",
                                  "/settings/recording"])
def test_settings_pages_need_an_unlocked_viewer(household, viewer, path):
    app, browser = viewer
    assert browser.get(path).status_code == 200
    locked = new_client(app).get(path)
    assert locked.status_code == 302
    assert locked.headers["Location"] == "/login"
