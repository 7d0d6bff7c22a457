"""Who is acting, for the audit log, and the rule that nothing changes unaudited."""

import getpass

from doorbell.storage.audit import AuditLog
from doorbell.storage.home import Home


def cli_actor(member: str | None = None) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{member} (cli:{user})" if member else f"cli:{user}"


def intact_audit_log(home: Home) -> AuditLog:
    """The audit log, if it can record the change about to be made; else AuditLogCorrupt (one
    sentence on stderr): see AuditLog.require_intact."""
    log = AuditLog(home.audit_file)
    log.require_intact()
    return log
