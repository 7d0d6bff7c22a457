"""`doorbell serve [--home DIR] [--bind HOST:PORT]`: the local-only viewer.

With `[hub] cameras` in the home's config.toml it is a hub over those replica folders
(web/hub.py): the home then holds only the hub's own state, and the folders are only read.
"""

import logging

from doorbell.config import load_settings
from doorbell.storage.home import Home
from doorbell.web import create_app
from doorbell.web.server import is_loopback, serve
from doorbell.web.tls import certificate_paths, create_certificate, fingerprint, missing_names

from ..log_output import configure_logging

log = logging.getLogger("doorbell.viewer")


def ensure_certificate(home: Home, hostnames=()) -> tuple[str, tuple]:
    cert, key = certificate_paths(home.tls_dir)
    if not (cert.exists() and key.exists()):
        return create_certificate(home.tls_dir, hostnames), (cert, key)
    missing = missing_names(cert, hostnames)
    if missing:  # a new DHCP lease or a name added since: renewing changes the fingerprint
        log.warning("the TLS certificate does not name %s: a browser that trusts it will warn "
                    "there; for a new one (with a new fingerprint) delete %s and %s and restart "
                    "the viewer", ", ".join(missing), cert, key)
    return fingerprint(cert), (cert, key)


def run(args) -> int:
    handler = configure_logging()  # journal priorities under systemd, timestamps on a terminal
    home = Home.resolve(args.home)
    if not home.is_initialised():
        # A new device: set-up happens in the browser, guarded by a code printed below.
        home.root.mkdir(mode=0o750, parents=True, exist_ok=True)
    settings = load_settings(home.root)
    if args.bind:
        settings = settings.with_overrides({"viewer.bind": args.bind}, source="--bind")
    host, port = settings.viewer.bind_host, settings.viewer.bind_port
    tls = None
    scheme = "http"
    if not is_loopback(host):
        digest, tls = ensure_certificate(home, settings.viewer.hostnames)
        scheme = "https"
        print(f"TLS certificate SHA-256 fingerprint: {digest}")
        print("Check that your browser shows the same fingerprint before unlocking.")
    shown_host = f"[{host}]" if ":" in host else host
    print(f"Viewer on {scheme}://{shown_host}:{port}/ (home network only)", flush=True)
    app = create_app(settings, home)  # a hub's missing folder is refused here, in one sentence
    if settings.hub.cameras:
        shown = ", ".join(f"{name} ({folder})" for name, folder in settings.hub.cameras)
        print(f"A hub over the replicas of {shown}, read-only.", flush=True)
    setup = app.extensions["doorbell"].setup
    if setup is not None:
        print(f"\n{home.root} has no household member yet. Open the viewer and enter the set-up "
              f"code\n\n    {setup.display}\n\nIt works once, for {setup.minutes_left} minutes; "
              "restart the viewer for a new one.\n", flush=True)
    serve(app, host, port, tls, log_handler=handler)  # gunicorn's error log in the same form
    return 0
