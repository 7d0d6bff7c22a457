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
