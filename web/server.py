"""Serve the app with gunicorn: one worker process (sessions live in its memory), threads.

The Flask development server is for tests only. Plain HTTP is allowed on loopback alone; any
other address is served over TLS with the certificate made at init.

No proxy is trusted: browsers talk to gunicorn directly, so no X-Forwarded-* (or PROXY protocol)
header may change the scheme, the path or the client address the allowed-network check and the
audit log see. gunicorn would otherwise trust them from loopback by default, or from whatever
FORWARDED_ALLOW_IPS says in its environment.

Streams (live events, the live view) each hold a thread while open: web/stream_budget.py keeps
HEADROOM_THREADS of the WORKER_THREADS for everything else, and the worker below ends every
stream as soon as gunicorn tells it to stop, so it exits within graceful_timeout instead of
being SIGKILLed with open tabs.
"""

import ipaddress
import logging
import os
import signal
import threading
from pathlib import Path

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from .stream_budget import WORKER_THREADS, stream_budget

log = logging.getLogger("doorbell.viewer")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StreamEndingWorker(ThreadWorker):
    """gunicorn's threaded worker that also ends the app's open streams when told to stop:
    SIGTERM (graceful: the streams end, then the worker waits for the other requests) and
    SIGINT/SIGQUIT (quick: gunicorn gives the worker 2 s)."""

    def _end_streams(self) -> None:
        app = getattr(self, "wsgi", None)  # None: a signal before the app was loaded
        if app is not None:
            stream_budget(app).stop()
        self._exit_before_the_kill()

    def _exit_before_the_kill(self) -> None:
        """If something still holds the worker (a client that stopped reading keeps a write
        blocked; a badly loaded machine), it exits by itself a second before gunicorn would
        SIGKILL it: the same end for the requests, without "Perhaps out of memory?"."""
        after_s = max(0.5, self.cfg.graceful_timeout - 1)

        def exit_now() -> None:
            # Straight to stderr: whatever holds the worker may hold a lock logging needs.
            os.write(2, (f"doorbell.viewer: the viewer did not stop within {after_s:.0f} s of "
                         "being told to: it exits now, ending the requests still open\n").encode())
            os._exit(0)

        timer = threading.Timer(after_s, exit_now)
        timer.daemon = True
        timer.start()

    def init_signals(self) -> None:
        super().init_signals()
        # Ctrl-C signals the whole process group. A worker that quit on it at once could be
        # reaped and replaced by gunicorn before gunicorn saw the same Ctrl-C, and the new
        # worker, still booting, would then be SIGKILLed. gunicorn tells its workers to stop
        # (SIGQUIT, SIGTERM) after its own SIGINT: that is the one the worker follows.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def handle_exit(self, sig, frame):
        self._end_streams()
        super().handle_exit(sig, frame)

    def handle_quit(self, sig, frame):
        self._end_streams()
        super().handle_quit(sig, frame)


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


def gunicorn_options(host: str, port: int, tls: tuple[Path, Path] | None) -> dict:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": [bind],
        "workers": 1,  # unlocked keys live in this one process's memory, nowhere else
        "worker_class": StreamEndingWorker,  # gthread
        "threads": WORKER_THREADS,
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
        "forwarded_allow_ips": "",  # no front end may set the scheme or forwarder headers
        "secure_scheme_headers": {},
        "forwarder_headers": "",
        "proxy_protocol": "off",
        "proxy_allow_ips": "",
    }
    if tls is not None:
        options["certfile"], options["keyfile"] = str(tls[0]), str(tls[1])
    return options


def gunicorn_app(app: Flask, host: str, port: int, tls: tuple[Path, Path] | None):
    """The gunicorn application serve() runs (its `cfg` is the configuration in force)."""
    return _Gunicorn(app, gunicorn_options(host, port, tls))


def log_through(handler: logging.Handler) -> dict:
    """gunicorn's logconfig_dict: its error log goes to `handler` (the command's own, e.g. the
    journal's format) instead of a handler of its own with a second timestamp."""
    return {
        "root": {"level": "INFO", "handlers": ["doorbell"]},
        "loggers": {
            "gunicorn.error": {"level": "WARNING", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
        },
        "handlers": {"doorbell": {"()": lambda: handler}},
    }


def serve(app: Flask, host: str, port: int, tls: tuple[Path, Path] | None,
          log_handler: logging.Handler | None = None) -> None:
    application = gunicorn_app(app, host, port, tls)
    if log_handler is not None:
        application.cfg.set("logconfig_dict", log_through(log_handler))
    application.run()
