"""`doorbell serve [--home DIR] [--bind HOST:PORT]`: the local-only viewer."""

import logging

from config import load_settings
from storage.home import Home
from web import create_app
from web.server import is_loopback, serve
from web.tls import certificate_paths, create_certificate, fingerprint

from ..errors import CommandError

log = logging.getLogger("doorbell.viewer")


def ensure_certificate(home: Home) -> tuple[str, tuple]:
    cert, key = certificate_paths(home.tls_dir)
    if not (cert.exists() and key.exists()):
        return create_certificate(home.tls_dir), (cert, key)
    return fingerprint(cert), (cert, key)


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    home = Home.resolve(args.home)
    if not home.is_initialised():
        raise CommandError(f"{home.root} is not initialised: run 'doorbell init' first")
    settings = load_settings(home.root)
    if args.bind:
        settings = settings.with_overrides({"viewer.bind": args.bind}, source="--bind")
    host, port = settings.viewer.bind_host, settings.viewer.bind_port
    tls = None
    scheme = "http"
    if not is_loopback(host):
        digest, tls = ensure_certificate(home)
        scheme = "https"
        print(f"TLS certificate SHA-256 fingerprint: {digest}")
        print("Check that your browser shows the same fingerprint before unlocking.")
    shown_host = f"[{host}]" if ":" in host else host
    print(f"Viewer on {scheme}://{shown_host}:{port}/ (home network only)", flush=True)
    serve(create_app(settings, home), host, port, tls)
    return 0
