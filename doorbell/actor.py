"""Who is acting, for the audit log, when a command runs from a shell."""

import getpass


def cli_actor(member: str | None = None) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{member} (cli:{user})" if member else f"cli:{user}"
