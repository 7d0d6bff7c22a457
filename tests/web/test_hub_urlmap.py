"""The hub gets the device's URL-map sweep (tests/web/test_urlmap.py): every route of a hub over
two replica folders (filled by the real replicator over a real sshd), locked and unlocked, with
hostile query, form, JSON, Range and camera values. Never a 5xx, and nothing in either replica
folder changes: every file's SHA-256, size, mode and modification time are the same after."""

import pytest

from tests.web import hub_replicas
from tests.web.conftest import ORIGIN, PASSPHRASE, login, new_client
from tests.web.hub_replicas import digests, every_entry
from tests.web.test_urlmap import (
    DATA_ENDPOINTS,
    FORM_NAMES,
    HOSTILE_JSON,
    HOSTILE_RANGES,
    HOSTILE_VALUES,
    HUGE,
    KNOWN_ENDPOINTS,
    QUERY_NAMES,
    SAFE,
)

replicas = hub_replicas.replicas  # module-scoped: two doorbells replicated once per module
hub_home = hub_replicas.hub_home
hub_app = hub_replicas.hub_app

HUB_ENDPOINTS = KNOWN_ENDPOINTS | {"hub.recovery_page", "hub.recovery_unlock"}
HUB_PUBLIC = {"auth.login", "auth.login_submit", "static", "hub.recovery_page",
              "hub.recovery_unlock"}
# Locking ends the session the sweep needs; static files take no input. The live and event
# streams are walked: a hub refuses them (404) before they could start streaming.
SWEEP_SKIPS = {"auth.lock", "static"}
HOSTILE_CAMERAS = ["", "garage", "FRONT", "../front", "front/../back", "front\x00", "\x00",
                   "front\n", "/etc", "..", "x" * 5000, HUGE, "[" * 9000, "front%00"]


def _url(rule, clip_id: str) -> str:
    values = {name: clip_id if name == "clip_id" else "style.css" for name in rule.arguments}
    return rule.build(values)[1]


def _replica_state(replicas) -> dict:
    """What a write into either replica would change: contents, sizes, modes, times."""
    return {name: (digests(root), every_entry(root))
            for name, root in (("front", replicas.front), ("back", replicas.back))}


def _clip_ids(replicas) -> list[str]:
    """A sealed front clip, the front clip still being written, and the back camera's clip."""
    return [replicas.front_clips["doorbell"].id, replicas.growing_id, replicas.back_clip.id]


def test_the_hubs_url_map_is_the_devices_plus_the_recovery_key_page(hub_app):
    assert {rule.endpoint for rule in hub_app.url_map.iter_rules()} == HUB_ENDPOINTS


def test_every_hub_route_but_login_recovery_and_static_refuses_a_locked_client(replicas,
                                                                              hub_app):
    before = _replica_state(replicas)
    client = new_client(hub_app)
    walked = set()
    for rule in hub_app.url_map.iter_rules():
        if rule.endpoint in HUB_PUBLIC:
            continue
        for camera in ("front", "back"):
            url = _url(rule, replicas.front_clips["doorbell"].id) + f"?camera={camera}"
            for method in sorted(rule.methods):
                response = client.open(url, method=method)
                walked.add(rule.endpoint)
                where = f"{method} {url} -> {response.status_code}"
                to_login = response.status_code in (302, 303) and \
                    response.headers["Location"].rstrip("/").endswith("/login")
                if rule.endpoint in ("setup.page", "setup.submit"):  # a hub has no set-up
                    assert response.status_code == 404, where
                elif method == "GET" and rule.endpoint in DATA_ENDPOINTS:
                    assert response.status_code == 401, where
                elif method in SAFE:
                    assert to_login or (method != "GET" and response.status_code == 401), where
                else:
                    assert response.status_code in (401, 403), where
                assert replicas.front_clips["doorbell"].video[:64] not in response.get_data()
    assert walked == HUB_ENDPOINTS - HUB_PUBLIC
    assert _replica_state(replicas) == before


@pytest.mark.slow
def test_hostile_input_to_every_hub_route_never_gets_a_5xx_nor_writes_a_replica(
        replicas, hub_app, hub_home):
    before = _replica_state(replicas)
    client = new_client(hub_app)
    assert login(client).status_code == 303  # alice, a member of both households
    page = client.get("/settings").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    same_origin = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", "X-CSRF-Token": token}
    answered: dict[int, int] = {}

    def send(method, url, **kwargs):
        response = client.open(url, method=method, **kwargs)
        where = f"{method} {url[:80]!r} {str(kwargs)[:120]} -> {response.status_code}"
        assert response.status_code < 500, where
        if response.status_code in (400, 403, 404, 416, 422):  # a sentence, not just a number
            assert len(response.data) > 20, where
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        response.close()

    walked = set()
    query_names = [*QUERY_NAMES, "camera"]
    form_names = [*FORM_NAMES, "camera", "recovery_key"]
    for rule in hub_app.url_map.iter_rules():
        if rule.endpoint in SWEEP_SKIPS:
            continue
        walked.add(rule.endpoint)
        clip_ids = _clip_ids(replicas) if "clip_id" in rule.arguments else [""]
        for clip_id in clip_ids:
            url = _url(rule, clip_id)
            for method in sorted(rule.methods - {"OPTIONS", "HEAD"}):
                # every name hostile (the camera too), then a real camera with the rest hostile
                cases = [dict.fromkeys(query_names, value) for value in HOSTILE_VALUES]
                cases += [dict.fromkeys(query_names, value) | {"camera": camera}
                          for value in HOSTILE_VALUES for camera in ("front", "back")]
                cases += [{"camera": camera} for camera in HOSTILE_CAMERAS]
                for query in cases:
                    if method == "GET":
                        send(method, url, query_string=query, headers=same_origin,
                             buffered=False)
                        continue
                    form = {name: query.get(name, "") for name in form_names}
                    form.update(camera=query["camera"], csrf_token=token, passphrase=PASSPHRASE,
                                new_passphrase_confirm="")
                    send(method, url, query_string=query, data=form, headers=same_origin)
                if method == "POST":
                    for body in HOSTILE_JSON:
                        for camera in ("front", "../back", HUGE):
                            send(method, url, query_string={"camera": camera}, data=body,
                                 content_type="application/json", headers=same_origin)
    for clip_id in _clip_ids(replicas):
        for camera in ("front", "back"):  # each clip id is one camera's: the other's is a 404
            for range_header in [*HOSTILE_RANGES, "bytes=0-", "bytes=0-0,5-9", "bytes=-1"]:
                for download in ("", "1"):
                    send("GET", f"/clips/{clip_id}/video", headers={"Range": range_header},
                         query_string={"camera": camera, "download": download})
        for camera in HOSTILE_CAMERAS:
            send("GET", f"/clips/{clip_id}/video", headers={"Range": "bytes=0-"},
                 query_string={"camera": camera})
    assert walked == HUB_ENDPOINTS - SWEEP_SKIPS
    # It reached the views (200, 206), the hub's refusals (403 delete, 404 device-only pages
    # and unknown cameras) and the range checks (416), not only the guards.
    assert {200, 206, 403, 404, 416} <= set(answered), answered
    # The session survived the sweep, and nothing in either replica changed; what the hub
    # wrote is in its own data directory.
    assert client.get("/").status_code == 200
    assert _replica_state(replicas) == before
    assert (hub_home / "audit.jsonl").is_file()
