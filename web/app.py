"""The viewer's app factory. One process, several threads: sessions live in its memory."""

import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, render_template

from doorbell.config import Settings
from doorbell.storage.audit import AuditLog
from doorbell.storage.home import Home

from .changes import SettingsWriter
from .coalesced_audit import CoalescedAudit
from .guards import install_guards
from .hub import Hub, HubUnlocker
from .onboarding import SetupCode
from .ratelimit import LoginRateLimiter
from .refusals import RefusalAudit
from .sessions import SessionStore
from .unlock import Unlocker


@dataclass
class Viewer:
    """Everything the request handlers share, held by the app (no module-level state)."""

    home: Home
    settings: Settings
    sessions: SessionStore
    limiter: LoginRateLimiter
    unlocker: Unlocker
    audit: AuditLog
    refusals: RefusalAudit  # refused unlocks: written, or counted when there are many
    access_audit: CoalescedAudit  # footage views, one entry per view
    allowed_networks: list = field(default_factory=list)
    live_viewers: int = 0
    day_counts_cache: dict = field(default_factory=dict)  # index version -> days with clips
    live_lock: threading.Lock = field(default_factory=threading.Lock)
    setup: SetupCode | None = None  # only while the home has no household keys
    settings_writer: "SettingsWriter | None" = None  # config.toml changes, one at a time
    work_factor: int | None = None  # scrypt log2 N for new identities; calibrated on first use
    hub: Hub | None = None  # `[hub] cameras`: this viewer shows replica folders (web/hub.py)

    def scrypt_work_factor(self) -> int:
        if self.work_factor is None:
            from doorbell.storage.keyring import calibrate_work_factor

            self.work_factor = calibrate_work_factor()
        return self.work_factor


def create_app(settings: Settings, home: Home, testing: bool = False) -> Flask:
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(
        TESTING=testing,
        MAX_CONTENT_LENGTH=64 * 1024,  # forms only: nothing large is ever uploaded
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    audit = AuditLog(home.audit_file)
    hub = Hub.from_settings(settings, home) if settings.hub.cameras else None
    viewer = Viewer(
        home=home,
        settings=settings,
        sessions=SessionStore(settings.viewer.idle_timeout_s),
        limiter=LoginRateLimiter(home.viewer_db_file, settings.viewer.login_attempts_per_15min),
        unlocker=HubUnlocker(hub) if hub else Unlocker(home.identities_dir),
        audit=audit,
        refusals=RefusalAudit(audit, home.viewer_db_file),
        access_audit=CoalescedAudit(audit),
        allowed_networks=[ipaddress.ip_network(n) for n in settings.viewer.allowed_networks],
        hub=hub,
    )
    viewer.settings_writer = SettingsWriter(viewer)
    if hub is None and not home.is_initialised():
        # Wrong codes per address: as many as logins; a restart prints a new code, a new budget.
        viewer.setup = SetupCode(wrong_per_address=settings.viewer.login_attempts_per_15min)
    app.extensions["doorbell"] = viewer
    install_guards(app)

    from .views import (
        audit,
        auth,
        clips,
        events,
        hub_views,
        live,
        members,
        settings,
        setup,
        status,
        timeline,
    )

    for module in (auth, setup, timeline, clips, live, audit, status, events, settings, members):
        app.register_blueprint(module.blueprint)
    if hub is not None:
        app.register_blueprint(hub_views.blueprint)
        hub_views.install_hub_rules(app)

    @app.errorhandler(400)
    @app.errorhandler(401)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(410)
    @app.errorhandler(413)
    @app.errorhandler(416)
    @app.errorhandler(422)
    @app.errorhandler(429)
    @app.errorhandler(503)
    def error_page(error):
        return render_template("error.html", error=error), error.code

    return app


def static_dir() -> Path:
    return Path(__file__).parent / "static"
