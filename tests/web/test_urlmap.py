"""Every route needs an unlocked session except login and static files: walk the URL map.

The set-up pages are open only while the device has no household member (tests/web/test_setup.py);
on a set-up device they redirect to the login page (GET) or refuse (POST), like any other route.
Each view declares its access rule next to itself (web/access.py); one that does not is refused.
"""

import pytest

from doorbell.web import access

from .conftest import ORIGIN, new_client

PUBLIC = {"auth.login", "auth.login_submit", "static"}
# Every endpoint the viewer has: a new route must be added here, so that it is seen to be walked.
KNOWN_ENDPOINTS = {
    "auth.login", "auth.login_submit", "auth.lock", "timeline.index", "clips.player",
    "clips.video", "clips.thumbnail", "clips.export", "clips.confirm_delete", "clips.delete",
    "live.page", "live.frame", "live.stream", "audit.page", "status.page", "status.data",
    "events.stream", "static",
    "setup.page", "setup.submit", "setup.recovery", "setup.recovery_confirm",
    "settings.index", "settings.areas", "settings.areas_save", "settings.motion",
    "settings.motion_save", "settings.motion_trial", "settings.motion_overlay",
    "settings.motion_mask", "settings.recording", "settings.recording_save",
    "settings.recording_estimate", "settings.applied",
    "members.page", "members.add", "members.remove", "members.passphrase",
}
# Answer 401 when locked (scripts and media fetch them); pages redirect to the login page.
DATA_ENDPOINTS = {"clips.video", "clips.thumbnail", "live.stream", "live.frame", "status.data",
                  "events.stream", "settings.motion_overlay", "settings.motion_mask",
                  "settings.applied", "settings.recording_estimate"}
SAFE = {"GET", "HEAD", "OPTIONS"}


def _url(rule, clip_id: str) -> str:
    values = {}
    for name in rule.arguments:
        values[name] = clip_id if name == "clip_id" else "style.css"
    return rule.build(values)[1]


def _is_login_redirect(response) -> bool:
    return response.status_code in (302, 303) and \
        response.headers["Location"].rstrip("/").endswith("/login")


def undeclared_endpoints(app) -> list[str]:
    return sorted(rule.endpoint for rule in app.url_map.iter_rules()
                  if access.declared_rule(app.view_functions.get(rule.endpoint)) is None)


def test_the_url_map_has_no_route_that_this_walk_does_not_know(app):
    assert {rule.endpoint for rule in app.url_map.iter_rules()} == KNOWN_ENDPOINTS


def test_every_endpoint_declares_its_access_rule(app):
    missing = undeclared_endpoints(app)
    assert missing == [], "declare an access rule (web/access.py) on: " + ", ".join(missing)


def test_a_route_without_an_access_rule_is_refused_when_locked(app, caplog):
    ran = []

    def forgotten():
        ran.append(True)
        return "served"

    app.add_url_rule("/forgotten", "forgotten", forgotten, methods=["GET", "POST"])
    assert undeclared_endpoints(app) == ["forgotten"]  # the test above would name it
    client = new_client(app)
    assert client.get("/forgotten").status_code == 401  # not a login page: scripts see it
    posted = client.post("/forgotten", headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
    assert posted.status_code == 401
    assert ran == []
    assert "forgotten declares no access rule" in caplog.text


def test_a_view_cannot_declare_two_rules():
    def view():
        return ""

    access.page(view)
    access.page(view)  # the same rule twice is still one rule
    with pytest.raises(TypeError, match="two access rules"):
        access.data(view)
    with pytest.raises(TypeError):
        access.page.form_before_session  # noqa: B018 (a page's forms carry the CSRF token)


def test_before_setup_the_static_files_are_served(fresh_app):
    client = new_client(fresh_app)
    assert client.get("/login").status_code == 302  # everything else leads to set-up
    for path in ("/static/style.css", "/static/app.js", "/static/icon.svg"):
        assert client.get(path).status_code == 200, path


def test_every_route_but_login_and_static_refuses_a_locked_client(app, client, home):
    clip_id = home.clips["motion"].id
    walked = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        url = _url(rule, clip_id)
        for method in sorted(rule.methods):
            if method == "OPTIONS" and rule.endpoint in {"setup.page", "setup.submit"}:
                continue  # Flask's automatic OPTIONS answer: no body, no state
            response = client.open(url, method=method)
            walked.add(rule.endpoint)
            where = f"{method} {url} -> {response.status_code}"
            assert response.status_code != 200, where
            if method == "GET":
                if rule.endpoint in DATA_ENDPOINTS:
                    assert response.status_code == 401, where
                else:
                    assert _is_login_redirect(response), where
            elif method in SAFE:
                assert response.status_code == 401 or _is_login_redirect(response), where
            else:
                # A state change without a session cannot carry a valid CSRF token: it is
                # refused by the CSRF check (403) before the auth check would say 401.
                assert response.status_code in (401, 403), where
            body = response.get_data()
            assert home.clips["motion"].video[:64] not in body
    assert walked == KNOWN_ENDPOINTS - PUBLIC
    # Nothing was changed or read on the way.
    assert home.paths(clip_id)["video"].exists()
    assert not home.actions("clip.delete") and not home.actions("clip.export")
    assert not home.actions("clip.view") and not home.actions("live.view")
    assert not home.actions("setup") and not home.actions("settings.change")


def test_locked_with_a_forged_cookie_is_the_same_as_no_cookie(app, client, home):
    client.set_cookie("__Host-doorbell-session", "forged-session-id", domain="localhost")
    clip_id = home.clips["motion"].id
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or "GET" not in rule.methods:
            continue
        response = client.get(_url(rule, clip_id))
        assert response.status_code == 401 or _is_login_redirect(response), rule.endpoint


@pytest.mark.parametrize("path", ["/login", "/static/style.css", "/static/app.js",
                                  "/static/icon.svg"])
def test_login_and_static_are_reachable_locked(client, path):
    assert client.get(path).status_code == 200


def test_unlocked_every_get_route_answers(app, unlocked, home, runtime_dir):
    (runtime_dir / "live.jpg").write_bytes(b"\xff\xd8\xff\xe0frame")
    (runtime_dir / "motion-mask.png").write_bytes(b"\x89PNG\r\n\x1a\nmask")
    clip_id = home.clips["doorbell"].id
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in {"live.stream", "auth.login"}:
            continue
        response = unlocked.get(_url(rule, clip_id))
        if rule.endpoint.startswith("setup."):  # a set-up device: back to where one belongs
            assert response.status_code == 302, (rule.endpoint, response.status_code)
            continue
        assert response.status_code == 200, (rule.endpoint, response.status_code)
        response.close()


# -- hostile input: every route, every method, an unlocked session, never a 5xx ------------------

# Streams never end by themselves under the test client; static files take no input.
SWEEP_SKIPS = {"auth.lock", "static", "live.stream", "events.stream"}
HUGE = "9" * 5000  # beyond Python's 4,300-digit limit for int()
HOSTILE_VALUES = ["9223372036854775807", "-9223372036854775809", HUGE, "-1", "abc", "1e309",
                  "nan", "\x00", "[" * 9000]
DEEP_ARRAY = "[" * 9000 + "]" * 9000
DEEP_OBJECT = '{"a":' * 9000 + "1" + "}" * 9000
HOSTILE_JSON = [DEEP_ARRAY, DEEP_OBJECT, "not json", '"a string"', "[1, 2]", "null",
                '{"sensitivity": "x", "min_area": [], "trigger_frames": {"a": 1}}',
                '{"sensitivity": ' + DEEP_ARRAY + "}", '{"trigger_frames": ' + HUGE + "}"]
QUERY_NAMES = ["page", "day", "trigger", "download", "t", "note", "pre_roll_s", "post_roll_s",
               "max_clip_s", "max_age_days", "max_total_gb", "min_free_gb"]
FORM_NAMES = ["member", "name", "public_key", "key_type", "new_passphrase", "code", "masks",
              "zones", "sensitivity", "min_area", "trigger_frames", "saved", "referrer",
              "viewport", "layer", "day", "trigger", *QUERY_NAMES]
HOSTILE_RANGES = [f"bytes={HUGE}-", f"bytes=0-{HUGE}", f"bytes=-{HUGE}", f"bytes={HUGE}-{HUGE}",
                  "bytes=9223372036854775807-", "bytes=-0", "bytes=a-b", "bytes=5-1"]


def _unlocked_client(app, identity):
    from .conftest import unlock_directly

    client = new_client(app)
    unlock_directly(app, client, identity)
    token = client.get("/settings").get_data(as_text=True)
    from .conftest import CSRF_FIELD, PASSPHRASE

    return client, CSRF_FIELD.search(token).group(1), PASSPHRASE


def test_hostile_input_to_every_route_never_gets_a_5xx(app, identity, home):
    clip_id = home.clips["motion"].id
    client, token, passphrase = _unlocked_client(app, identity)
    same_origin = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", "X-CSRF-Token": token}
    answered = []

    def send(method, url, **kwargs):
        response = client.open(url, method=method, **kwargs)
        where = f"{method} {url[:80]} {str(kwargs)[:120]} -> {response.status_code}"
        assert response.status_code < 500, where
        if response.status_code in (400, 416):  # a sentence, not just a number
            assert len(response.data) > 20, where
        answered.append(response.status_code)
        response.close()

    walked = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SWEEP_SKIPS:
            continue  # locking ends the session the sweep needs; the others take no input
        walked.add(rule.endpoint)
        url = _url(rule, clip_id)
        for method in sorted(rule.methods - {"OPTIONS", "HEAD"}):
            for value in HOSTILE_VALUES:
                query = "&".join(f"{name}={value}" for name in QUERY_NAMES)
                if method == "GET":
                    send(method, f"{url}?{query}", headers=same_origin, buffered=False)
                    continue
                form = {name: value for name in FORM_NAMES}
                form.update(csrf_token=token, passphrase=passphrase, new_passphrase_confirm="")
                send(method, f"{url}?{query}", data=form, headers=same_origin)
            if method == "POST":
                for body in HOSTILE_JSON:
                    send(method, url, data=body, content_type="application/json",
                         headers=same_origin)
    for range_header in HOSTILE_RANGES:
        for url in (f"/clips/{clip_id}/video", f"/clips/{clip_id}/video?download=1"):
            send("GET", url, headers={"Range": range_header})
    assert walked == KNOWN_ENDPOINTS - SWEEP_SKIPS
    assert 200 in answered and 400 in answered  # it reached the views, not only the guards
    # No hostile value was saved as a setting (the delete form is real, and deletes the clip).
    assert client.get("/").status_code == 200
    assert not home.actions("settings.change")


def test_a_range_with_thousands_of_digits_is_answered_with_a_sentence(unlocked, home):
    clip_id = home.clips["motion"].id
    size = len(home.clips["motion"].video)
    beyond = unlocked.get(f"/clips/{clip_id}/video", headers={"Range": f"bytes={HUGE}-"})
    assert beyond.status_code == 416
    assert f"bytes */{size}" == beyond.headers["Content-Range"]
    assert b"beyond the end" in beyond.data
    to_the_end = unlocked.get(f"/clips/{clip_id}/video", headers={"Range": f"bytes=100-{HUGE}"})
    assert to_the_end.status_code == 206  # an end past the file means "to the end" (RFC 9110)
    assert to_the_end.headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"
    whole = unlocked.get(f"/clips/{clip_id}/video", headers={"Range": f"bytes=-{HUGE}"})
    assert whole.status_code == 206 and len(whole.data) == size


def test_a_huge_page_number_shows_an_empty_page(unlocked):
    for path in ("/", "/audit"):
        for page in ("9223372036854775807", "-5", "x", HUGE):
            response = unlocked.get(f"{path}?page={page}")
            assert response.status_code == 200, (path, page, response.status_code)


def test_json_nested_9000_deep_to_the_tuner_is_refused_with_a_sentence(unlocked):
    from .conftest import csrf_token

    headers = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin",
               "X-CSRF-Token": csrf_token(unlocked)}
    for body in (DEEP_ARRAY, DEEP_OBJECT, "{not json"):
        response = unlocked.post("/settings/motion/trial", data=body,
                                 content_type="application/json", headers=headers)
        assert response.status_code == 400
        assert "JSON" in response.get_data(as_text=True)
