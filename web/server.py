"""Serve the app with gunicorn: one worker process (sessions live in its memory), threads.

The Flask development server is for tests only. Plain HTTP is allowed on loopback alone; any
other address is served over TLS with the certificate made at init.
"""

import ipaddress
import logging
from pathlib import Path

from flask import Flask
from gunicorn.app.base import BaseApplication

log = logging.getLogger("doorbell.viewer")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict):
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._app


def serve(app: Flask, host: str, port: int, tls: tuple[Path, Path] | None) -> None:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": [bind],
        "workers": 1,  # unlocked keys live in this one process's memory, nowhere else
        "worker_class": "gthread",
        "threads": 8,
        "timeout": 60,
        "graceful_timeout": 5,
        "keepalive": 5,
        "accesslog": None,  # what was viewed is in the audit log; no second, plaintext trail
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "doorbell-viewer",
        "control_socket_disable": True,  # gunicorn 23+ would open a management socket
        "limit_request_line": 4096,
        "limit_request_fields": 50,
    }
    if tls is not None:
        options["certfile"], options["keyfile"] = str(tls[0]), str(tls[1])
    _Gunicorn(app, options).run()
