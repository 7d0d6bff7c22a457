"""Plain helpers the test packages share (fixtures live in the conftest.py files).

These are functions, not fixtures, because module-level helpers and session-scoped fixtures call
them too, outside any one test.
"""

import os
import socket


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without DOORBELL_* (the developer's own settings), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
